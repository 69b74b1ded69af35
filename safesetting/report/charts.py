"""Charts as hand-built inline SVG: no plotting library, no script, nothing fetched.

Each function returns :class:`~safesetting.report.markup.Markup`; every label is escaped.
Colours are chosen to stay distinct for the common forms of colour blindness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from safesetting.report.markup import Markup, esc

PALETTE = ("#1f5fa8", "#d1731b", "#2a9d8f", "#8e44ad")
TRUTH = "#111111"
FONT = 'font-family="system-ui, sans-serif"'


@dataclass(frozen=True)
class Series:
    """One series of points; ``errors`` are 95 % half-widths, ``truth`` the true values
    (only ever given in the demo, where the data are synthetic)."""

    name: str
    values: Sequence[float | None]
    errors: Sequence[float | None] = ()
    truth: Sequence[float | None] = ()


def _n(x: float) -> str:
    return f"{x:.1f}"


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick positions covering [lo, hi].

    >>> _ticks(0, 1)
    [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    """
    span = hi - lo if hi > lo else 1.0
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(t if abs(t) > step * 1e-9 else 0.0)
        t += step
    return ticks


def _fmt(t: float) -> str:
    return f"{t:.3g}" if abs(t) < 1000 else f"{t:,.0f}"


def _svg(width: int, height: int, label: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{esc(label)}">'
        f"<title>{esc(label)}</title>{''.join(body)}</svg>"
    )


def _legend(x: float, y: float, names: Sequence[str], truth: bool) -> list[str]:
    out = []
    for i, name in enumerate(names):
        yy = y + i * 18
        out.append(f'<circle cx="{_n(x)}" cy="{_n(yy)}" r="5" fill="{PALETTE[i % 4]}"/>')
        out.append(
            f'<text x="{_n(x + 10)}" y="{_n(yy + 4)}" font-size="12" {FONT}>'
            f"{esc(name)} (released, with 95 % error bar)</text>"
        )
    if truth:
        yy = y + len(names) * 18
        out.append(
            f'<path d="M{_n(x - 5)} {_n(yy)} l5 -5 l5 5 l-5 5 z" fill="none" '
            f'stroke="{TRUTH}" stroke-width="1.5"/>'
        )
        out.append(
            f'<text x="{_n(x + 10)}" y="{_n(yy + 4)}" font-size="12" {FONT}>'
            "true value (shown only because the data are synthetic)</text>"
        )
    return out


def dot_whisker_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    x_label: str,
    x_range: tuple[float, float] | None = None,
) -> Markup:
    """One row per category; each series a dot with its error bar; truth as an open diamond."""
    width, left, right, top = 640, 190, 24, 40
    row_h = 16 + 14 * len(series)
    has_truth = any(any(v is not None for v in s.truth) for s in series)
    legend_h = 18 * (len(series) + int(has_truth)) + 10
    plot_h = row_h * len(categories)
    height = top + plot_h + 40 + legend_h
    lows, highs = [], []
    for s in series:
        for i, v in enumerate(s.values):
            if v is None:
                continue
            e = (s.errors[i] if i < len(s.errors) else None) or 0.0
            lows.append(v - e)
            highs.append(v + e)
        lows += [t for t in s.truth if t is not None]
        highs += [t for t in s.truth if t is not None]
    lo, hi = x_range or (min(lows, default=0.0), max(highs, default=1.0))
    ticks = _ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])

    def x(v: float) -> float:
        v = min(max(v, lo), hi)
        return left + (v - lo) / ((hi - lo) or 1.0) * (width - left - right)

    body = [f'<text x="{left}" y="22" font-size="14" font-weight="600" {FONT}>{esc(title)}</text>']
    for t in ticks:
        body.append(
            f'<line x1="{_n(x(t))}" y1="{top}" x2="{_n(x(t))}" y2="{top + plot_h}" '
            'stroke="#e3e7eb"/>'
        )
        body.append(
            f'<text x="{_n(x(t))}" y="{top + plot_h + 16}" font-size="11" '
            f'text-anchor="middle" {FONT}>{esc(_fmt(t))}</text>'
        )
    body.append(
        f'<text x="{_n((left + width - right) / 2)}" y="{top + plot_h + 32}" '
        f'font-size="12" text-anchor="middle" {FONT}>{esc(x_label)}</text>'
    )
    for r, cat in enumerate(categories):
        y0 = top + r * row_h
        body.append(
            f'<text x="{left - 8}" y="{_n(y0 + row_h / 2 + 4)}" font-size="12" '
            f'text-anchor="end" {FONT}>{esc(cat)}</text>'
        )
        for k, s in enumerate(series):
            y = y0 + 8 + 14 * k + 4
            colour = PALETTE[k % 4]
            v = s.values[r] if r < len(s.values) else None
            if v is not None:
                e = (s.errors[r] if r < len(s.errors) else None) or 0.0
                label = f"{cat}, {s.name}: {_fmt(v)} ± {_fmt(e)}"
                body.append(
                    f"<g><title>{esc(label)}</title>"
                    f'<line x1="{_n(x(v - e))}" y1="{_n(y)}" x2="{_n(x(v + e))}" '
                    f'y2="{_n(y)}" stroke="{colour}" stroke-width="2"/>'
                    f'<circle cx="{_n(x(v))}" cy="{_n(y)}" r="4.5" fill="{colour}" '
                    'class="released-point"/></g>'
                )
            true = s.truth[r] if r < len(s.truth) else None
            if true is not None:
                body.append(
                    f'<path d="M{_n(x(true) - 5)} {_n(y)} l5 -5 l5 5 l-5 5 z" fill="none" '
                    f'stroke="{TRUTH}" stroke-width="1.5" class="true-point">'
                    f"<title>{esc(f'{cat}, {s.name}: true value {_fmt(true)}')}</title>"
                    "</path>"
                )
    body += _legend(left, top + plot_h + 52, [s.name for s in series], has_truth)
    return _svg(width, height, title, body)


def line_chart(
    title: str,
    xs: Sequence[float],
    series: Sequence[tuple[str, Sequence[float]]],
    x_label: str,
    y_label: str,
    log_y: bool = False,
) -> Markup:
    """Lines over a shared x axis (here: error against ε), with point markers; ``log_y``
    puts the y axis on a log scale (ticks at powers of ten) for series of different sizes."""
    width, height, left, right, top, bottom = 640, 380, 64, 20, 40, 92
    ys = [y for _, values in series for y in values if y > 0]
    if log_y:
        lo_exp = math.floor(math.log10(min(ys, default=1.0)))
        hi_exp = math.ceil(math.log10(max(ys, default=10.0)))
        y_ticks = [10.0**k for k in range(lo_exp, hi_exp + 1)]
    else:
        y_ticks = _ticks(0.0, max(ys, default=1.0))
    x_ticks = _ticks(min(xs), max(xs))
    x_lo, x_hi = min(xs), max(max(xs), x_ticks[-1])
    pw, ph = width - left - right, height - top - bottom

    def px(v: float) -> float:
        return left + (v - x_lo) / ((x_hi - x_lo) or 1.0) * pw

    def py(v: float) -> float:
        if log_y:
            a, b = math.log10(y_ticks[0]), math.log10(y_ticks[-1])
            share = (math.log10(max(v, y_ticks[0])) - a) / ((b - a) or 1.0)
        else:
            share = v / (y_ticks[-1] or 1.0)
        return top + ph - share * ph

    body = [f'<text x="{left}" y="22" font-size="14" font-weight="600" {FONT}>{esc(title)}</text>']
    for t in y_ticks:
        body.append(
            f'<line x1="{left}" y1="{_n(py(t))}" x2="{width - right}" y2="{_n(py(t))}" '
            'stroke="#e3e7eb"/>'
        )
        body.append(
            f'<text x="{left - 6}" y="{_n(py(t) + 4)}" font-size="11" text-anchor="end" '
            f"{FONT}>{esc(_fmt(t))}</text>"
        )
    for t in x_ticks:
        if t < x_lo - 1e-9:
            continue
        body.append(
            f'<text x="{_n(px(t))}" y="{top + ph + 16}" font-size="11" '
            f'text-anchor="middle" {FONT}>{esc(_fmt(t))}</text>'
        )
    body.append(
        f'<text x="{_n(left + pw / 2)}" y="{top + ph + 34}" font-size="12" '
        f'text-anchor="middle" {FONT}>{esc(x_label)}</text>'
    )
    body.append(
        f'<text transform="translate(14 {_n(top + ph / 2)}) rotate(-90)" font-size="12" '
        f'text-anchor="middle" {FONT}>{esc(y_label)}</text>'
    )
    for k, (name, values) in enumerate(series):
        colour = PALETTE[k % 4]
        pts = " ".join(f"{_n(px(a))},{_n(py(b))}" for a, b in zip(xs, values, strict=True))
        body.append(
            f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2" '
            'class="series-line"/>'
        )
        for a, b in zip(xs, values, strict=True):
            tip = esc(f"{name}: ε = {a:g} → ± {_fmt(b)}")
            body.append(
                f'<circle cx="{_n(px(a))}" cy="{_n(py(b))}" r="3" fill="{colour}">'
                f"<title>{tip}</title></circle>"
            )
        ly = top + ph + 54 + 18 * k
        body.append(
            f'<line x1="{left}" y1="{ly}" x2="{left + 18}" y2="{ly}" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        body.append(f'<text x="{left + 24}" y="{ly + 4}" font-size="12" {FONT}>{esc(name)}</text>')
    return _svg(width, height, title, body)


def budget_chart(title: str, items: Sequence[tuple[str, float, float]], unit: str = "ε") -> Markup:
    """Horizontal bars: how much of each budget (``total``) has been ``spent``."""
    width, left, right, top, row_h = 640, 210, 90, 40, 30
    height = top + row_h * len(items) + 20
    pw = width - left - right
    body = [f'<text x="{left}" y="22" font-size="14" font-weight="600" {FONT}>{esc(title)}</text>']
    for r, (label, spent, total) in enumerate(items):
        y = top + r * row_h
        share = min(spent / total, 1.0) if total > 0 else 0.0
        colour = "#b3261e" if share >= 0.999 else PALETTE[0]
        text = f"{label}: {unit} {spent:g} of {total:g} spent"
        body.append(
            f"<g><title>{esc(text)}</title>"
            f'<text x="{left - 8}" y="{y + 15}" font-size="12" text-anchor="end" '
            f"{FONT}>{esc(label)}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{pw}" height="16" fill="#eef1f4" '
            'stroke="#d5dbe1"/>'
            f'<rect x="{left}" y="{y + 3}" width="{_n(max(share * pw, 1.0))}" height="16" '
            f'fill="{colour}" class="spent-bar"/>'
            f'<text x="{left + pw + 6}" y="{y + 15}" font-size="12" {FONT}>'
            f"{esc(f'{spent:g} / {total:g}')}</text></g>"
        )
    return _svg(width, height, title, body)
