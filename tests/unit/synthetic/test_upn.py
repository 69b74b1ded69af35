"""UPN check letters: the DfE algorithm, scalar and vectorised, and the generated UPNs."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from synthetic import codes
from synthetic.upn import (
    CHECK_LETTERS,
    is_valid_upn,
    upn_check_letter,
    upn_digits,
    upn_strings,
)

digits12 = st.text(alphabet="0123456789", min_size=12, max_size=12)


def test_published_example():
    # the worked example used by python-stdnum's UPN module: B + 801 2000 05 001
    assert upn_check_letter("801200005001") == "B"
    assert is_valid_upn("B801200005001")
    assert not is_valid_upn("A801200005001")


def test_weights_by_hand():
    body = "000000000001"  # only character 13 counts, weight 13
    assert upn_check_letter(body) == CHECK_LETTERS[13]
    body = "100000000000"  # only character 2, weight 2
    assert upn_check_letter(body) == CHECK_LETTERS[2]


def test_temporary_upn_letter_counts_its_alphabet_position():
    # a temporary UPN ends in a letter, valued by its position in the check alphabet
    assert upn_check_letter("80120000500A") == CHECK_LETTERS[(93 - 13 + 0) % 23]
    assert upn_check_letter("80120000500B") == CHECK_LETTERS[(93 - 13 + 13) % 23]


@given(digits12)
def test_any_body_with_its_letter_is_valid(body):
    assert is_valid_upn(upn_check_letter(body) + body)


@given(digits12, st.integers(0, 11), st.integers(1, 9))
def test_a_single_changed_digit_is_detected(body, pos, delta):
    changed = body[:pos] + str((int(body[pos]) + delta) % 10) + body[pos + 1 :]
    assert not is_valid_upn(upn_check_letter(body) + changed)


@pytest.mark.parametrize("bad", ["", "B80120000500", "B8012000050011", "I801200005001",
                                 "B80120000X001", "B801200005001 "])  # fmt: skip
def test_malformed(bad):
    assert not is_valid_upn(bad)


def test_vectorised_matches_scalar():
    rng = np.random.default_rng(3)
    n = 2000
    digits = upn_digits(
        rng.integers(200, 1000, n), rng.integers(0, 10000, n), rng.integers(0, 100, n),
        rng.integers(0, 1000, n),
    )  # fmt: skip
    raw = upn_strings(digits)
    for row in raw:
        upn = bytes(row).decode()
        assert upn[0] == upn_check_letter(upn[1:])


def test_component_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        upn_digits(np.array([1000]), np.array([1]), np.array([1]), np.array([1]))


def test_generated_upns_are_valid_unique_and_name_a_real_la(npd_small):
    con = duckdb.connect(str(npd_small), read_only=True)
    upns = [r[0] for r in con.execute("SELECT upn FROM pupils").fetchall()]
    con.close()
    assert len(upns) == len(set(upns))
    assert all(is_valid_upn(u) for u in upns)
    assert {u[1:4] for u in upns} <= set(codes.LA_CODES)
