"""Checks on admin input: one-line messages, raised before anything is written.

Identifiers are plain lower-case ASCII so that a look-alike (Cyrillic ``а`` for Latin ``a``)
can never register a second "ada"; dates are strict ISO ``YYYY-MM-DD``; ε is exact.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from policies.epsilon import format_epsilon, to_micro
from safesetting.errors import UsageError

_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UPN = re.compile(r"[A-Z][0-9]{11}[0-9A-Z]")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def check_id(kind: str, value: str) -> str:
    """A researcher or project id: 1-64 of ``a-z 0-9 . _ -``, starting with a letter or digit.

    >>> check_id("researcher", "ada.lovelace")
    'ada.lovelace'
    """
    if not _ID.fullmatch(value):
        raise UsageError(
            f"{kind} id {ascii(value)} must be 1-64 lower-case ASCII letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return value


def check_name(kind: str, value: str) -> str:
    """A snake_case name such as a purpose."""
    if not _NAME.fullmatch(value):
        raise UsageError(f"{kind} {ascii(value)} must be a snake_case name")
    return value


def check_text(kind: str, value: str, *, limit: int) -> str:
    """Free text (a title, an organisation): non-empty, printable, at most ``limit`` chars."""
    text = value.strip()
    if not text:
        raise UsageError(f"{kind} must not be empty")
    if len(text) > limit:
        raise UsageError(f"{kind} is longer than {limit} characters")
    if not text.isprintable():
        raise UsageError(f"{kind} contains control characters")
    return text


def parse_date(kind: str, value: str) -> date:
    """A strict ISO date.

    >>> parse_date("expiry", "2027-03-31")
    datetime.date(2027, 3, 31)
    """
    if not _DATE.fullmatch(value):
        raise UsageError(f"{kind} {ascii(value)} is not a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{kind} {value} is not a real date") from None


def future_date(kind: str, value: str, today: date) -> date:
    """A strict ISO date after ``today``."""
    parsed = parse_date(kind, value)
    if parsed <= today:
        raise UsageError(f"{kind} {value} is not after today ({today.isoformat()})")
    return parsed


def parse_epsilon(kind: str, value: str | Decimal, *, most: int) -> int:
    """A positive exact ε no larger than ``most`` micro-ε, as micro-ε."""
    try:
        micro = to_micro(value if isinstance(value, Decimal) else str(value))
    except ValueError as exc:
        raise UsageError(f"{kind}: {exc}") from None
    if micro <= 0:
        raise UsageError(f"{kind} must be greater than 0")
    if micro > most:
        raise UsageError(
            f"{kind} {value} is more than the dataset-wide cap of {format_epsilon(most)}"
        )
    return micro


def check_upn(value: str) -> str:
    """A Unique Pupil Number: a letter, eleven digits, a digit or letter (upper-case ASCII).

    >>> check_upn("A123456789012")
    'A123456789012'
    """
    if not _UPN.fullmatch(value):
        # The value itself is not echoed: it may be a real pupil's number mistyped.
        raise UsageError(
            "a UPN must be 13 characters: an upper-case letter, 11 digits, then a digit or "
            f"upper-case letter (argument of length {len(value)} refused)"
        )
    return value
