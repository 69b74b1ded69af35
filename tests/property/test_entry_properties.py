"""Hypothesis: forbidden content is refused wherever it hides; allowed entries round-trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import audit
from audit.entry import build_entry

T = "2026-01-01T00:00:00.000000Z"
allowed_keys = st.sampled_from(sorted(audit.ALLOWED_REQUEST_KEYS))
forbidden_keys = st.sampled_from(sorted(audit.FORBIDDEN_KEYS))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=20)
)


@given(allowed_keys, forbidden_keys, scalars, st.integers(0, 3))
def test_a_forbidden_key_is_refused_at_any_depth(top, bad, value, depth):
    inner: dict[str, object] = {bad: value}
    for _ in range(depth):
        inner = {"nested": inner}
    with pytest.raises(audit.ForbiddenContentError):
        build_entry(seq=1, time=T, actor="a", action="query.released", request={top: inner})


@given(allowed_keys, st.lists(st.lists(scalars, min_size=1), min_size=1, max_size=4))
def test_lists_of_rows_are_refused(key, rows):
    with pytest.raises(audit.ForbiddenContentError):
        build_entry(seq=1, time=T, actor="a", action="query.released", request={key: rows})


@given(st.dictionaries(allowed_keys, st.one_of(scalars, st.lists(scalars, max_size=4)), max_size=5))
def test_allowed_requests_round_trip_canonically(request_):
    try:
        entry = build_entry(seq=3, time=T, actor="a", action="query.released", request=request_)
    except audit.ForbiddenContentError:
        return  # random text can look like a UPN or postcode: refusing it is the point
    body = json.loads(entry.canonical)
    assert body["request"] == request_
    assert audit.canonical_json(body) == entry.canonical
    assert entry.leaf_hash == audit.leaf_hash(entry.canonical)
