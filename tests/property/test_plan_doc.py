"""The plan document (``QueryPlan.to_doc``) is the plan: for every query shape the parser
accepts, the document rebuilds the same plan (``from_doc``), the same compiled SQL and the
same cache key; a document that is not exactly an accepted plan's (a wider clamp, an
identifier, another version) is refused, never read loosely."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlglot import parse_one

from safesetting.engine.compile import compile_plan
from safesetting.engine.plan import DOC_VERSION, QueryPlan, canonical_sql
from tests.property.neighbours import accepted_query, catalogue, plan_of


@given(st.data())
def test_every_accepted_plan_round_trips_through_its_document(data):
    plan = plan_of(data.draw(accepted_query(), label="query").sql)
    doc = json.loads(json.dumps(plan.to_doc()))  # as it is stored: plain JSON
    again = QueryPlan.from_doc(doc, catalogue())
    assert again.normalised() == plan.normalised()
    assert again.digest() == plan.digest()
    assert again.usage == plan.usage
    assert again.pinned_years == plan.pinned_years
    assert [k.domain for k in again.keys] == [k.domain for k in plan.keys]
    salt = plan.digest()
    ours, theirs = (compile_plan(p, min_year=2015, salt=salt).sql for p in (again, plan))
    # the same SQL, up to brackets around brackets
    assert canonical_sql(parse_one(ours, read="duckdb")) == canonical_sql(
        parse_one(theirs, read="duckdb")
    )


def _plan():
    return plan_of(
        "SELECT region, COUNT(*) AS n, AVG(ks2.read_score) FROM census "
        "JOIN ks2 USING (pupil_id, academic_year) WHERE census.academic_year = 2019 "
        "GROUP BY region"
    )


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(v=1),
        lambda d: d.pop("v"),
        lambda d: d["aggs"][1].update(lower=0.0),  # a wider clamp than the column allows
        lambda d: d["aggs"][1].update(func="median"),
        lambda d: d["aggs"][0].update(arg='"census"."upn"'),
        lambda d: d["from"][1].update(on=['"census"."academic_year=ks2.academic_year"']),
        lambda d: d["from"][1].update(on=["census.academic_year=ks2.academic_year"]),
        lambda d: d.update(keys=["pupils.upn"]),
        lambda d: d.update(out=["agg:0"]),
    ],
)
def test_an_edited_document_is_refused(edit):
    doc = json.loads(json.dumps(_plan().to_doc()))
    assert doc["v"] == DOC_VERSION
    edit(doc)
    with pytest.raises((ValueError, KeyError, TypeError)):
        QueryPlan.from_doc(doc, catalogue())
