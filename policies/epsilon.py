"""Exact privacy-budget arithmetic: ε is kept as an integer number of micro-ε.

Floats never enter the ledger: ``0.1 + 0.2`` must spend exactly 0.3, and ten queries of
0.5 must exhaust a budget of 5 exactly. Values with more precision than one micro-ε are
refused rather than rounded, so what is charged is what was asked.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Final

MICRO_PER_EPSILON: Final = 1_000_000
MAX_EPSILON_MICRO: Final = 1_000_000 * MICRO_PER_EPSILON  # anything above is absurd
MAX_EPSILON_TEXT: Final = 64  # characters of ε text read at all
_LARGEST_DIGIT: Final = 6  # 10^6 ε: the leading digit of an ε that is not absurd
_MICRO_DIGITS: Final = 6  # decimals in one micro-ε
# ASCII decimal text only: Decimal() would also take "1_0", spaces and non-ASCII digits.
_EPSILON_TEXT: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def to_micro(value: int | str | Decimal | Fraction) -> int:
    """Convert an ε given as int, decimal text, Decimal or Fraction to integer micro-ε.

    >>> to_micro("0.5"), to_micro(5), to_micro(Fraction(1, 4))
    (500000, 5000000, 250000)
    >>> to_micro("0.0000001")
    Traceback (most recent call last):
    ...
    ValueError: epsilon 0.0000001 is more precise than one micro-epsilon (0.000001)
    """
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal | Fraction):
        raise ValueError(f"epsilon must be a number, not {type(value).__name__}")
    parsed: Decimal | Fraction
    if isinstance(value, str):
        if len(value) > MAX_EPSILON_TEXT:
            raise ValueError(f"epsilon text is longer than {MAX_EPSILON_TEXT} characters")
        if not _EPSILON_TEXT.fullmatch(value):
            raise ValueError(f"epsilon {value!r} is not a number")
        try:
            parsed = Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            raise ValueError(f"epsilon {value!r} is not a number") from None
    else:
        parsed = value if isinstance(value, Decimal | Fraction) else Decimal(value)
    if isinstance(parsed, Decimal) and not parsed.is_finite():
        raise ValueError(f"epsilon {value} is not a finite number")
    if isinstance(parsed, Decimal) and parsed:
        # Decide by the exponent before any exact arithmetic: Fraction(Decimal("1e99999999"))
        # would build a number with a hundred million digits (one request, one dead worker).
        if parsed.adjusted() > _LARGEST_DIGIT:
            raise ValueError(f"epsilon {value} is absurdly large")
        _sign, digits, exponent = parsed.as_tuple()
        trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        if int(exponent) + trailing_zeros < -_MICRO_DIGITS:
            raise ValueError(f"epsilon {value} is more precise than one micro-epsilon (0.000001)")
    micro = Fraction(parsed) * MICRO_PER_EPSILON
    if micro.denominator != 1:
        raise ValueError(f"epsilon {value} is more precise than one micro-epsilon (0.000001)")
    if abs(micro.numerator) > MAX_EPSILON_MICRO:
        raise ValueError(f"epsilon {value} is absurdly large")
    return micro.numerator


def format_epsilon(micro: int) -> str:
    """Render micro-ε as the shortest exact decimal.

    >>> format_epsilon(500000), format_epsilon(5000000), format_epsilon(1)
    ('0.5', '5', '0.000001')
    """
    text = format(Decimal(micro) / MICRO_PER_EPSILON, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def to_float(micro: int) -> float:
    """The nearest float to ``micro`` micro-ε, for display and JSON only.

    >>> to_float(100000)
    0.1
    """
    return float(Fraction(micro, MICRO_PER_EPSILON))
