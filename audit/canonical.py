"""Canonical JSON (RFC 8785, JCS) for audit entries, and exact micro-ε arithmetic.

RFC 8785 serialises numbers as IEEE doubles, so ε is carried as an integer number of
micro-units (``500_000`` = ε 0.5): integers below 2**53 stay exact in every JSON reader.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import rfc8785

MICRO = 1_000_000


class CanonicalJSONError(ValueError):
    """A value cannot be written as canonical JSON (NaN, an integer ≥ 2**53, a set …)."""


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of ``value``.

    >>> canonical_json({"b": 1, "a": [True, None, "é"]})
    b'{"a":[true,null,"\\xc3\\xa9"],"b":1}'
    """
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalJSONError(f"not canonicalisable: {exc}") from exc


def epsilon_to_micro(epsilon: float | int | str | Decimal) -> int:
    """ε as an integer number of micro-units, exactly (refuses anything finer or negative).

    >>> epsilon_to_micro("0.5"), epsilon_to_micro(0.1), epsilon_to_micro(2)
    (500000, 100000, 2000000)
    """
    try:
        # str() of a float is its shortest round-tripping decimal: 0.1 -> "0.1", not 0.1000…0555.
        exact = Decimal(str(epsilon)) * MICRO
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {epsilon!r}") from exc
    if not exact.is_finite() or exact < 0 or exact != exact.to_integral_value():
        raise ValueError(f"ε must be a non-negative multiple of 1e-6, got {epsilon!r}")
    return int(exact)


def micro_to_epsilon(micro: int) -> Decimal:
    """Integer micro-ε back to an exact decimal ε.

    >>> micro_to_epsilon(1_500_000)
    Decimal('1.5')
    """
    return (Decimal(micro) / MICRO).normalize()
