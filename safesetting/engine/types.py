"""Literal typing: every value a filter compares a column with is checked against the
column's declared type (and, for equality and ``IN``, its public domain) before anything is
spent.

Why it matters for privacy: DuckDB casts a column to a literal's type *row by row*, so
``sen_primary_need = 5`` raises only if some row reaches the comparison, and whether one
does depends on the data. A query whose failure depends on a pupil's record is a yes/no
oracle. With every literal of the column's own type, the engine's comparisons never cast a
column (``compile.py`` also writes each numeric literal as ``CAST(literal AS <column
type>)``, folded once when the SQL is bound), so they cannot raise on any data.
"""

from __future__ import annotations

import difflib
import re
from decimal import Decimal, InvalidOperation

from sqlglot import exp

from policies.reasons import Reason, reason
from synthetic.schema import Column

INTEGER_RANGES = {
    "TINYINT": (-(2**7), 2**7 - 1),
    "SMALLINT": (-(2**15), 2**15 - 1),
    "INTEGER": (-(2**31), 2**31 - 1),
    "BIGINT": (-(2**63), 2**63 - 1),
}
REAL_TYPES = frozenset({"DOUBLE"})
MAX_REAL_LITERAL = Decimal(10) ** 15  # a threshold beyond this is a typo, not a question
MAX_SHOWN = 40  # characters of a literal echoed back in a message
_UPN_ANYWHERE = re.compile(r"[A-Z]\d{11}[0-9A-Z]")
_POSTCODE_ANYWHERE = re.compile(r"[A-Z]{1,2}\d[A-Z\d]?\d[A-Z]{2}")


LITERAL_DIGITS = 18  # far beyond any column's range (±10^9) or resolution (0.01)


class LiteralError(Exception):
    """A literal that does not fit the column: its ``reason`` (from the registry) is
    ``type_mismatch``, ``value_not_in_domain`` or ``no_public_domain`` and names the column,
    never a value from the data."""

    def __init__(self, key: str, /, **params: object) -> None:
        self.reason: Reason = reason(key, **params)
        super().__init__(self.reason.message)

    @property
    def code(self) -> str:
        return self.reason.code

    @property
    def message(self) -> str:
        return self.reason.message


def kind_of(col: Column) -> str:
    """``text``, ``integer``, ``real``, ``boolean`` or ``date``: what literals fit ``col``."""
    if col.dtype in INTEGER_RANGES:
        return "integer"
    if col.dtype in REAL_TYPES:
        return "real"
    return {"VARCHAR": "text", "BOOLEAN": "boolean"}.get(col.dtype, "date")


def literal_value(node: exp.Expression) -> object:
    """The Python value of a plain literal (``'x'``, ``5``, ``-2.5``, ``TRUE``), or raise
    ``LiteralError``. Numbers come back as ``Decimal`` so nothing is rounded on the way.

    >>> literal_value(exp.Literal.number("-2.5")), literal_value(exp.Boolean(this=True))
    (Decimal('-2.5'), True)
    """
    negative = False
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Neg):
        negative, node = True, node.this
    if isinstance(node, exp.Literal):
        if node.is_string:
            if negative:
                raise LiteralError("type_mismatch.negated_text")
            return str(node.this)
        try:
            value = Decimal(str(node.this))
        except InvalidOperation:
            raise LiteralError("type_mismatch.number") from None
        if not value.is_finite():
            raise LiteralError("type_mismatch.finite")
        # Judged by exponent and length before any arithmetic or formatting: 1e99999999
        # would otherwise be expanded digit by digit (or overflow the decimal context).
        if value and (
            not -LITERAL_DIGITS <= value.adjusted() <= LITERAL_DIGITS
            or len(value.as_tuple().digits) > 2 * LITERAL_DIGITS
        ):
            raise LiteralError("type_mismatch.digits", digits=LITERAL_DIGITS)
        return -value if negative else value
    if isinstance(node, exp.Boolean) and not negative:
        return bool(node.this)
    if isinstance(node, exp.Null) and not negative:
        raise LiteralError("type_mismatch.null")
    raise LiteralError("type_mismatch.plain")


def typed_literal(
    qualified: str,
    col: Column,
    domain: tuple[object, ...] | None,
    node: exp.Expression,
    *,
    membership: bool,
) -> exp.Expression:
    """Rebuild ``node`` as a literal of ``col``'s declared type, or raise ``LiteralError``.

    Every value a query holds is public, so the audit log (which keeps the plan) never holds
    anything a researcher typed that is not: text must be one of the column's public values
    whatever the comparison; ``=``, ``<>`` and ``IN`` need a value of the public domain; a
    range comparison's threshold must lie within the domain's or the declared bounds' range;
    a column with neither (``pupil_id``) cannot be compared with a value at all.
    Refusals name the nearest valid values.

    >>> from synthetic.schema import table
    >>> nc = table("census").column("nc_year")
    >>> typed_literal("census.nc_year", nc, nc.domain, exp.Literal.number("6"), membership=True)
    Literal(this=6, is_string=False)
    >>> need = table("census").column("sen_primary_need")
    >>> try:
    ...     typed_literal("census.sen_primary_need", need, need.domain,
    ...                   exp.Literal.number("5"), membership=True)
    ... except LiteralError as e:
    ...     print(e.code)
    type_mismatch
    """
    value = literal_value(node)
    kind = kind_of(col)
    built = _build(qualified, col, kind, value)
    if kind == "boolean":
        return built
    plain = int(value) if isinstance(value, Decimal) and kind == "integer" else value
    if domain is None and (kind == "text" or col.bounds is None):
        # Neither a public list nor a declared range (names, pupil_id): no value typed
        # against it could be public, whatever the policy makes of the column.
        raise LiteralError("no_public_domain.compared", column=qualified)
    if (membership or kind == "text") and domain is not None:
        if plain not in domain:
            raise LiteralError(
                "value_not_in_domain.nearest",
                column=qualified,
                value=_show(value),
                nearest=", ".join(_show(v) for v in nearest(plain, domain)),
            )
        return built
    span = value_range(col, domain)
    if span is not None and isinstance(plain, int | Decimal):
        lo, hi = span
        if not lo <= plain <= hi:
            raise LiteralError(
                "value_not_in_domain.range",
                column=qualified,
                low=_show(lo),
                high=_show(hi),
                value=_show(value),
            )
    return built


def value_range(col: Column, domain: tuple[object, ...] | None) -> tuple[object, object] | None:
    """The public range of a numeric column: its declared bounds, else its domain's ends.

    >>> from synthetic.schema import table
    >>> value_range(table("ks4").column("attainment8"), None)
    (0, 90)
    >>> value_range(table("census").column("academic_year"), (2019, 2021, 2020))
    (2019, 2021)
    """
    if col.bounds is not None:
        return col.bounds
    numbers = [v for v in domain or () if isinstance(v, int)]
    return (min(numbers), max(numbers)) if numbers else None


def identifier_shaped(text: str) -> bool:
    """Whether text holds something shaped like a UPN or a postcode, however it is spaced,
    cased or joined to other characters (stricter than the log's own check, which it
    covers: every UPN or postcode the log would refuse is found here too).

    >>> identifier_shaped("x_V841200012003"), identifier_shaped("b5w  0ae"), identifier_shaped("K")
    (True, True, False)
    """
    squeezed = re.sub(r"[^A-Z0-9]", "", text.upper())
    return bool(_UPN_ANYWHERE.search(squeezed) or _POSTCODE_ANYWHERE.search(squeezed))


def _build(qualified: str, col: Column, kind: str, value: object) -> exp.Expression:
    wanted = {
        "text": "a quoted value such as 'X'",
        "integer": "a whole number",
        "real": "a number",
        "boolean": "TRUE or FALSE",
        "date": "nothing (it cannot be filtered)",
    }[kind]
    mismatch = LiteralError(
        "type_mismatch.wanted",
        column=qualified,
        dtype=col.dtype,
        wanted=wanted,
        value=_show(value),
    )
    if kind == "text":
        if not isinstance(value, str):
            raise mismatch
        return exp.Literal.string(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise mismatch
        return exp.Boolean(this=value)
    if kind in ("integer", "real") and isinstance(value, Decimal):
        if kind == "integer":
            lo, hi = INTEGER_RANGES[col.dtype]
            if value != value.to_integral_value() or not lo <= value <= hi:
                raise LiteralError(
                    "type_mismatch.whole_number",
                    column=qualified,
                    dtype=col.dtype,
                    low=lo,
                    high=hi,
                    value=_show(value),
                )
            return exp.Literal.number(int(value))
        if abs(value) > MAX_REAL_LITERAL:
            raise mismatch
        return exp.Literal.number(_plain(value))
    raise mismatch


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text not in ("-0", "") else "0"


def nearest(value: object, domain: tuple[object, ...], n: int = 3) -> list[object]:
    """The ``n`` domain values closest to ``value`` (numerically, or by spelling).

    >>> nearest(13, tuple(range(0, 12)))
    [11, 10, 9]
    >>> nearest("ASX", ("ASD", "HI", "VI"))
    ['ASD', 'VI', 'HI']
    """
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        target = float(value)
        return sorted(domain, key=lambda v: (abs(float(v) - target), v))[:n]  # type: ignore[arg-type]
    texts = {str(v): v for v in domain}
    return [texts[t] for t in difflib.get_close_matches(str(value), list(texts), n, 0.0)]


def _show(value: object) -> str:
    if isinstance(value, str) and identifier_shaped(value):
        return "(a value shaped like an identifier)"  # never echoed, not even to its author
    if isinstance(value, str):
        text = value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "…"
        return "'" + text.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, Decimal):
        return _plain(value)
    return str(value)
