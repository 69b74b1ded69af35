"""The reason registry, the exact-ε helpers and the doctests of the pure modules."""

from __future__ import annotations

import doctest
from decimal import Decimal
from fractions import Fraction

import pytest

import policies.decide
import policies.epsilon
import policies.load
import policies.model
import policies.reasons
from policies.epsilon import format_epsilon, to_float, to_micro
from policies.reasons import REASON_CODES, describe, reason

ISSUE_CODES = [
    "not_accredited",
    "accreditation_expired",
    "token_revoked",
    "not_a_member",
    "project_expired",
    "project_closed",
    "purpose_refused",
    "table_not_approved",
    "column_not_approved",
    "direct_identifier",
    "restricted_purpose",
    "epsilon_too_large",
    "budget_exhausted",
    "dataset_cap_reached",
    "org_type_limit",
    "select_star",
    "bare_column",
    "no_public_domain",
    "table_function",
    "multiple_statements",
    "subquery",
    "window_function",
    "unknown_table",
    "unknown_column",
    "unsupported_aggregate",
    "too_many_cells",
]


def test_registry_has_every_code_the_design_names():
    assert set(ISSUE_CODES) <= set(REASON_CODES)
    assert len(set(REASON_CODES)) == len(REASON_CODES)
    assert all(code.replace("_", "").isalpha() and code.islower() for code in REASON_CODES)


def test_reason_needs_known_code_and_its_parameters():
    with pytest.raises(KeyError):
        reason("made_up")
    with pytest.raises(KeyError):
        reason("project_closed")
    assert describe("table_not_approved") == "table <table> is not approved for project <project>"


def test_a_variant_is_one_wording_of_a_registered_code():
    """The engine's specific wordings (``code.variant``) cannot add a code by accident."""
    from policies.reasons import VARIANTS

    assert {key.partition(".")[0] for key in VARIANTS} <= set(REASON_CODES)
    found = reason("unknown_column.in_table", table="ks2", column="x")
    assert (found.code, found.message) == ("unknown_column", "table ks2 has no column x")
    assert describe("unknown_column.in_table") == "table <table> has no column <column>"
    with pytest.raises(KeyError):
        reason("unknown_column.made_up")
    with pytest.raises(KeyError):
        reason("made_up.in_table", table="ks2", column="x")


@pytest.mark.parametrize(
    ("value", "micro"),
    [(1, 1_000_000), ("0.1", 100_000), (Decimal("2.5"), 2_500_000), (Fraction(1, 8), 125_000)],
)
def test_to_micro_exact(value, micro):
    assert to_micro(value) == micro


@pytest.mark.parametrize("value", [0.1, True, None, "abc", "inf", Fraction(1, 3), 10**13])
def test_to_micro_refuses(value):
    with pytest.raises(ValueError, match="epsilon"):
        to_micro(value)


HOSTILE_EPSILONS = [
    "1e99999999",  # Fraction() of this would hold a 100-million-digit number
    "-1e99999999",
    "1e-99999999",  # ... and of this a 100-million-digit denominator
    "1" + "0" * 60,
    "0." + "0" * 60 + "1",
    "9" * 65,  # longer than any ε anyone types
    Decimal("1e999999"),
    Decimal("1e-999999"),
]


def test_hostile_epsilon_text_is_refused_at_once():
    """Decided from the exponent, before any exact arithmetic: a child process that has not
    refused all of them within 10 s fails (each takes microseconds; the old code hung)."""
    import subprocess
    import sys

    script = (
        "from decimal import Decimal\n"
        "from policies.epsilon import to_micro\n"
        f"for value in {HOSTILE_EPSILONS!r}:\n"
        "    try:\n"
        "        to_micro(value)\n"
        "    except ValueError as exc:\n"
        "        print(exc)\n"
        "    else:\n"
        "        print('ACCEPTED', value)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=10, check=True
    )
    lines = done.stdout.splitlines()
    assert len(lines) == len(HOSTILE_EPSILONS)
    assert not [line for line in lines if line.startswith("ACCEPTED")]
    assert "longer than 64 characters" in lines[5]


@pytest.mark.parametrize(
    ("value", "micro"),
    [("1e6", 10**12), ("1E+6", 10**12), ("0.5000000000", 500_000), ("1e-6", 1),
     ("1.000001", 1_000_001), ("0e-99999999", 0), (Decimal("5E-1"), 500_000)],
)  # fmt: skip
def test_exponents_and_trailing_zeros_still_mean_what_they_say(value, micro):
    assert to_micro(value) == micro


def test_tenths_add_up_exactly():
    assert sum(to_micro("0.1") for _ in range(10)) == to_micro(1)
    assert format_epsilon(to_micro("0.1") * 3) == "0.3"
    assert format_epsilon(0) == "0"
    assert format_epsilon(-1_500_000) == "-1.5"
    assert to_float(300_000) == 0.3


@pytest.mark.parametrize(
    "module", [policies.decide, policies.epsilon, policies.load, policies.model, policies.reasons]
)
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.failed == 0
    assert result.attempted > 0 or module is policies.model
