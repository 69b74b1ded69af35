"""Unique Pupil Numbers with valid DfE check letters.

A UPN is 13 characters: a check letter, the 3-digit LA number of the school that allocated
it, that school's 4-digit DfE establishment number, the 2-digit year of allocation and a
3-digit serial (DfE, "Unique pupil numbers (UPN)": a temporary UPN ends in a letter
instead). The check letter is the weighted sum of characters 2-13 (weights 2..13; a digit
counts its value, a letter its position in the check-letter alphabet) modulo 23, looked up
in that alphabet.
"""

from __future__ import annotations

import numpy as np

CHECK_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"  # no I, O, S
_WEIGHTS = np.arange(2, 14, dtype=np.int64)
_LETTER_BYTES = np.frombuffer(CHECK_LETTERS.encode("ascii"), dtype=np.uint8)


def _value(ch: str) -> int:
    if ch.isdigit():
        return int(ch)
    if ch in CHECK_LETTERS:
        return CHECK_LETTERS.index(ch)
    raise ValueError(f"character {ch!r} cannot appear in a UPN")


def upn_check_letter(body: str) -> str:
    """The check letter for the 12 characters that follow it.

    >>> upn_check_letter("801200005001")
    'B'
    """
    if len(body) != 12:
        raise ValueError("a UPN body has 12 characters")
    total = sum(w * _value(ch) for w, ch in zip(range(2, 14), body, strict=True))
    return CHECK_LETTERS[total % 23]


def is_valid_upn(upn: str) -> bool:
    """True if ``upn`` is 13 characters, digits 2-12, and its check letter is right.

    >>> is_valid_upn("B801200005001"), is_valid_upn("A801200005001")
    (True, False)
    """
    if len(upn) != 13 or not upn[1:12].isdigit():
        return False
    last = upn[12]
    if not (last.isdigit() or last in CHECK_LETTERS):
        return False
    return upn[0] == upn_check_letter(upn[1:])


def upn_digits(
    la: np.ndarray, estab: np.ndarray, year2: np.ndarray, serial: np.ndarray
) -> np.ndarray:
    """The 12 body digits of many permanent UPNs, as an ``(n, 12)`` uint8 array of 0-9."""
    out = np.empty((len(la), 12), dtype=np.uint8)
    for col, (values, width) in enumerate(((la, 3), (estab, 4), (year2, 2), (serial, 3))):
        start = sum((3, 4, 2, 3)[:col])
        v = np.asarray(values, dtype=np.int64)
        if (v < 0).any() or (v >= 10**width).any():
            raise ValueError(f"UPN component {col} does not fit in {width} digits")
        for k in range(width):
            out[:, start + width - 1 - k] = (v // 10**k) % 10
    return out


def upn_strings(digits: np.ndarray) -> np.ndarray:
    """Whole UPNs (check letter first) for an ``(n, 12)`` digit array: an ``(n, 13)`` uint8
    array of ASCII bytes, ready to become an Arrow string buffer."""
    check = (digits.astype(np.int64) @ _WEIGHTS) % 23
    out = np.empty((len(digits), 13), dtype=np.uint8)
    out[:, 0] = _LETTER_BYTES[check]
    out[:, 1:] = digits + ord("0")
    return out
