"""HTML building blocks: escaping, a page shell with inline CSS, tables, explanation boxes.

Every function that takes text escapes it; callers pass plain strings, never markup, except
through :class:`Markup` (built only here and in :mod:`safesetting.report.charts`).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

CSS = """
:root { --ink:#1d2733; --muted:#5b6775; --line:#d5dbe1; --ok:#1b7f3b; --bad:#b3261e;
        --warn:#8a5a00; --accent:#1f5fa8; --bg:#fbfcfd; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       background: var(--bg); margin: 0; }
main { max-width: 980px; margin: 0 auto; padding: 24px 20px 64px; }
h1 { font-size: 1.9rem; margin: 0.2em 0; } h2 { margin-top: 2.2em; border-bottom: 2px solid
     var(--line); padding-bottom: 4px; } h3 { margin-bottom: 0.3em; }
.lede { font-size: 1.1rem; color: var(--muted); }
.banner { background: #fff4d6; border: 1px solid #e7c66b; padding: 10px 14px; border-radius: 6px; }
.explain { background: #eef4fb; border-left: 4px solid var(--accent); padding: 10px 14px;
           margin: 12px 0; border-radius: 0 6px 6px 0; }
.figure { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 18px;
          align-items: start; margin: 14px 0; }
.figure svg { width: 100%; height: auto; background: #fff; border: 1px solid var(--line);
              border-radius: 6px; }
@media (max-width: 760px) { .figure { grid-template-columns: 1fr; } }
table { border-collapse: collapse; width: 100%; margin: 10px 0; font-size: 0.92rem; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left;
         vertical-align: top; }
th { background: #f1f4f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 0.88rem; }
pre { background: #f4f6f8; padding: 10px; border-radius: 6px; overflow-x: auto;
      white-space: pre-wrap; word-break: break-word; }
.step { border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; margin: 14px 0;
        background: #fff; }
.badge { display: inline-block; font-size: 0.8rem; font-weight: 600; padding: 1px 8px;
         border-radius: 10px; color: #fff; vertical-align: middle; }
.badge.refused, .badge.caught { background: var(--bad); } .badge.released,
.badge.approved, .badge.verified, .badge.recorded { background: var(--ok); }
.badge.cached { background: var(--accent); } .badge.answered { background: var(--warn); }
.mismatch { color: var(--bad); font-weight: 600; }
.muted { color: var(--muted); } .small { font-size: 0.85rem; }
footer { margin-top: 48px; color: var(--muted); font-size: 0.85rem; }
"""


class Markup(str):
    """Text that is already safe HTML (built by this package, from escaped parts)."""


def esc(value: object) -> Markup:
    """Escape anything for HTML text or attribute values.

    >>> esc("<script>alert('x')</script>")
    '&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;'
    """
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[object]) -> Markup:
    return Markup("".join(esc(p) for p in parts))


def tag(name: str, *children: object, cls: str | None = None, **attrs: object) -> Markup:
    """``<name class=… attr=…>children</name>``; children and attribute values are escaped."""
    attr_text = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
    if cls:
        attr_text = f' class="{esc(cls)}"' + attr_text
    return Markup(f"<{name}{attr_text}>{join(children)}</{name}>")


def para(*children: object, cls: str | None = None, **attrs: object) -> Markup:
    return tag("p", *children, cls=cls, **attrs)


def explain(*paragraphs: str) -> Markup:
    """The plain-English box beside every chart and table."""
    return tag("div", *[para(p) for p in paragraphs], cls="explain")


def table(
    header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()
) -> Markup:
    """A table; cells are escaped unless they are :class:`Markup`."""
    head = tag("tr", *[tag("th", h) for h in header])
    body = [
        tag("tr", *[tag("td", c, cls="num" if i in numeric else None) for i, c in enumerate(r)])
        for r in rows
    ]
    return tag("table", tag("thead", head), tag("tbody", *body))


def page(title: str, *sections: object, footer: str = "") -> str:
    """A whole document: no script, no external resource, a CSP that forbids fetching any."""
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en-GB"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{join(sections)}"
        f"<footer>{esc(footer)}</footer></main></body></html>\n"
    )
