"""``safesetting.workbench.frame``: released results as DataFrames (no data involved)."""

from __future__ import annotations

import math

import pytest

from safesetting.errors import BudgetExhaustedError, PolicyDeniedError, Reason
from safesetting.results import QueryResult
from safesetting.workbench import BudgetRefused, QueryRefused, Workbench, frame

RESULT = QueryResult(
    status="released", query_id="q1", columns=["region", "n", "med"],
    rows=[["North East", 120, 46.5], ["London", None, None]],
    error=[[None, 9.5, None], [None, None, None]],
    epsilon_spent=0.5, budget_remaining=1.5, audit_seq=7, contribution_bound=1,
    column_kinds=["key", "aggregate", "aggregate"],
)  # fmt: skip


def test_wide_has_each_aggregates_error_beside_it_and_the_metadata():
    table = frame(RESULT)
    assert list(table.columns) == ["region", "n", "n_error", "med", "med_error"]
    assert table.loc[0, "n"] == 120
    assert table.loc[0, "n_error"] == 9.5
    assert math.isnan(table.loc[1, "n"])  # suppressed: missing
    assert table.attrs["query_id"] == "q1"
    assert table.attrs["budget_remaining"] == 1.5
    assert table.attrs["audit_seq"] == 7


def test_tidy_is_one_row_per_cell():
    table = frame(RESULT, tidy=True)
    assert list(table.columns) == ["region", "measure", "value", "error"]
    assert len(table) == 4
    assert list(table.measure) == ["n", "med", "n", "med"]


def test_an_older_result_without_kinds_takes_columns_with_errors_as_aggregates():
    """(A quantile, which has no error, then reads as a key: kinds are recorded since.)"""
    old = QueryResult(**{**RESULT.__dict__, "column_kinds": None})
    assert list(frame(old).columns) == ["region", "med", "n", "n_error"]


class Refusing:
    def __init__(self, codes):
        self.codes = codes

    def query(self, sql, project, epsilon, dry_run):  # noqa: ARG002
        return QueryResult(status="denied", query_id="q2",
                           reasons=[Reason(c, c) for c in self.codes])  # fmt: skip


@pytest.mark.parametrize(
    ("codes", "kind"),
    [(["direct_identifier", "budget_exhausted"], QueryRefused),
     (["budget_exhausted"], BudgetRefused)],
)  # fmt: skip
def test_a_refusal_raises_with_every_reason(codes, kind):
    with pytest.raises(kind) as info:
        Workbench(Refusing(codes)).query("SELECT 1", "p")  # type: ignore[arg-type]
    assert [r.code for r in info.value.reasons] == codes
    assert isinstance(info.value, PolicyDeniedError)
    assert isinstance(info.value, BudgetExhaustedError) is (kind is BudgetRefused)
    assert info.value.result.query_id == "q2"
