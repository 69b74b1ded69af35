"""Query results as people and spreadsheets read them: numbers with the precision their error
allows, and CSV/TSV with each aggregate's error beside it.

Pure functions of a released ``QueryResult`` (noisy values only): nothing here sees data.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from safesetting.results import DRY_RUN, QueryResult

SUPPRESSED = "suppressed"


def shown(value: Any, error: float | None) -> str:
    """A released cell for people: a suppressed cell says so; a noisy number is rounded to
    the error's second significant figure (the digits beyond it are noise), with thousands
    separators and never in scientific notation; anything else as it is.

    >>> shown(50.7967, 3.09)
    '50.8 ± 3.1'
    >>> shown(7296890.0, 192000.0)
    '7,300,000 ± 200,000'
    >>> shown(1140, 18.5)
    '1,140 ± 19'
    >>> shown(0.6528, 0.027)
    '0.653 ± 0.027'
    >>> shown(None, None)
    'suppressed'
    >>> shown(46.5, None), shown("North East", None), shown(True, None)
    ('46.5', 'North East', 'True')
    """
    if value is None:
        return SUPPRESSED
    if error is None or isinstance(value, bool) or not isinstance(value, int | float):
        return _plain(value)
    if error <= 0 or not math.isfinite(error):
        return f"{_plain(value)} ± {_plain(error)}"
    step = 10 ** (math.floor(math.log10(error)) - 1)  # the error's second significant figure
    places = max(0, -math.floor(math.log10(step)))
    return f"{_fixed(value, step, places)} ± {_fixed(error, step, places, up=True)}"


def _fixed(x: float, step: float, places: int, *, up: bool = False) -> str:
    """``x`` to a multiple of ``step`` (an error rounds up: it must still cover 95 %)."""
    n = math.ceil(x / step - 1e-9) if up else round(x / step)
    return f"{n * step:,.{places}f}"


def _plain(value: Any) -> str:
    """A value without scientific notation (``1e-05`` → ``0.00001``)."""
    if isinstance(value, float) and not isinstance(value, bool):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.6f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def delimited(result: QueryResult, sep: str) -> str:
    """The result as CSV (``sep=","``) or TSV: a header, then one line per row — group keys,
    then each aggregate with ``<name>_error`` (its 95 % half-width) beside it. A suppressed
    cell and an error the mechanism does not give (a quantile's) are empty; numbers are the
    released values as they are. A dry run lists each aggregate's expected error instead.
    """
    out = io.StringIO()
    writer = csv.writer(out, delimiter=sep, lineterminator="\n")
    if result.status == DRY_RUN:
        writer.writerow(["label", "mechanism", "scale", "half_width"])
        for exp in result.expected or []:
            writer.writerow([_cell(exp.get(k)) for k in ("label", "mechanism", "scale",
                                                         "half_width")])  # fmt: skip
        return out.getvalue()
    kinds = result.column_kinds or _guessed_kinds(result)
    header: list[str] = []
    for name, kind in zip(result.columns, kinds, strict=True):
        header += [name] if kind == "key" else [name, f"{name}_error"]
    writer.writerow(header)
    for row, errors in zip(result.rows, result.error, strict=True):
        line: list[str] = []
        for value, error, kind in zip(row, errors, kinds, strict=True):
            line += [_cell(value)] if kind == "key" else [_cell(value), _cell(error)]
        writer.writerow(line)
    return out.getvalue()


def _guessed_kinds(result: QueryResult) -> list[str]:
    """For a result released before kinds were recorded: a column with an error anywhere
    is an aggregate."""
    return [
        "aggregate" if any(errors[j] is not None for errors in result.error) else "key"
        for j in range(len(result.columns))
    ]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if not value.is_integer() or abs(value) >= 1e15 else str(int(value))
    return str(value)
