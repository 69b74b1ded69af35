"""Entries: canonical form, and refusal of rows, true values and identifiers."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

import audit
from audit.entry import build_entry

T = "2026-01-01T00:00:00.000000Z"


def test_entry_is_canonical_json_with_every_field():
    e = build_entry(
        seq=7,
        time=T,
        actor="alice",
        action="query.denied",
        project="p1",
        request={"sql": "SELECT 1", "epsilon_micro": 500_000, "columns": ["la_code"]},
        decision="deny",
        reasons=["budget_exhausted", "select_star"],
        epsilon_micro=0,
        policy_digest="ab" * 32,
    )
    assert e.canonical == audit.canonical_json(json.loads(e.canonical))
    assert json.loads(e.canonical) == {
        "v": 1,
        "seq": 7,
        "time": T,
        "actor": "alice",
        "action": "query.denied",
        "project": "p1",
        "request": {"sql": "SELECT 1", "epsilon_micro": 500_000, "columns": ["la_code"]},
        "decision": "deny",
        "reasons": ["budget_exhausted", "select_star"],
        "epsilon_micro": 0,
        "result_digest": None,
        "data_version": None,
        "policy_digest": "ab" * 32,
    }
    assert e.leaf_hash == audit.leaf_hash(e.canonical)
    assert e.reasons == ("budget_exhausted", "select_star")


@pytest.mark.parametrize(
    "request_",
    [
        {"rows": [[1, 2]]},
        {"true_value": 42},
        {"upn": "A123456789012"},
        {"forename": "Amelia"},
        {"surname": "Smith"},
        {"postcode": "SW1A 1AA"},
        {"date_of_birth": "2012-03-04"},
        {"values": [1, 2, 3]},
        {"columns": [["E09000001", 17], ["E09000002", 4]]},  # a list of rows
        {"columns": [{"la_code": "E09000001", "n": 17}]},
        {"sql": "SELECT COUNT(*) FROM pupils WHERE upn = 'A123456789012'"},
        {"sql": "SELECT COUNT(*) FROM pupils WHERE postcode = 'SW1A 1AA'"},
        {"unknown_key": 1},
        {"query_id": "q1", "result": {"n": 17}},
    ],
)
def test_forbidden_request_content_is_refused(request_):
    with pytest.raises(audit.ForbiddenContentError):
        build_entry(seq=1, time=T, actor="a", action="query.released", request=request_)


def test_forbidden_content_in_scalar_fields_is_refused():
    with pytest.raises(audit.ForbiddenContentError):
        build_entry(seq=1, time=T, actor="A123456789012", action="auth.failed")
    with pytest.raises(audit.ForbiddenContentError):
        build_entry(seq=1, time=T, actor="a", action="query.released", project="SW1A 1AA")


def test_forbidden_content_is_a_value_error():
    assert issubclass(audit.ForbiddenContentError, ValueError)


@pytest.mark.parametrize(
    "fields",
    [
        {"actor": ""},
        {"action": "Query Released"},
        {"action": "query"},
        {"reasons": ["Not Snake"]},
        {"reasons": "budget_exhausted"},
        {"epsilon_micro": -1},
        {"epsilon_micro": 0.5},
        {"epsilon_micro": True},
        {"epsilon_micro": 2**53},  # RFC 8785 numbers must be exact doubles
        {"project": 17},
    ],
)
def test_malformed_entries_are_refused(fields):
    base = {"seq": 1, "time": T, "actor": "a", "action": "query.released"}
    with pytest.raises(audit.EntryError):
        build_entry(**{**base, **fields})


def test_allowed_request_is_accepted():
    e = build_entry(
        seq=1,
        time=T,
        actor="alice",
        action="query.released",
        request={
            "sql": "SELECT la_code, COUNT(*) FROM census WHERE la_code = 'E09000001' GROUP BY 1",
            "epsilon": 0.5,
            "plan_digest": "cd" * 32,
            "query_id": "q-123",
            "columns": ["la_code", "count"],
            "dry_run": False,
        },
    )
    assert json.loads(e.canonical)["request"]["epsilon"] == 0.5


def test_epsilon_micro_units_are_exact():
    assert audit.epsilon_to_micro(0.1) + audit.epsilon_to_micro(0.2) == 300_000
    assert audit.epsilon_to_micro(Decimal("1.000001")) == 1_000_001
    assert audit.micro_to_epsilon(300_000) == Decimal("0.3")
    for bad in (-0.1, "1e-7", float("nan"), "x"):
        with pytest.raises(ValueError):  # noqa: PT011 - ValueError is the documented contract
            audit.epsilon_to_micro(bad)


def test_canonical_json_refuses_unrepresentable_values():
    for bad in (float("nan"), 2**60, {1, 2}):
        with pytest.raises(audit.CanonicalJSONError):
            audit.canonical_json(bad)
