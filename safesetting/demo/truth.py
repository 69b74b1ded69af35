"""TRUE values, for the demo only: possible only because the data are synthetic.

In the product the true aggregates never leave the engine's ``release()``. The demo puts
them beside the released ones so that a reader can see how close the noisy answers are;
this module is used by the demo and its report and by nothing on the query path.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import duckdb

from safesetting.control import Control
from safesetting.engine.compile import compile_plan, needed_columns
from safesetting.engine.execute import Sandbox
from safesetting.engine.parse import Catalogue, parse_query
from safesetting.engine.plan import QueryPlan
from safesetting.service import data_info
from safesetting.store.registry import optout_upns


@dataclass(frozen=True)
class Truth:
    """True values laid out like the released table: ``rows`` match its rows and columns;
    ``aggregates`` are the positions of the aggregate (non-key) columns."""

    rows: list[list[Any]]
    aggregates: list[int]

    def values(self, i: int) -> list[Any]:
        return [self.rows[i][j] for j in self.aggregates]


def true_rows(control: Control, sql: str) -> Truth:
    """The exact answer to ``sql`` as the service would compute it before adding noise
    (same bounded SQL, retention year and opt-outs), one row per group of the released
    table, in the same order and with the same columns."""
    info = data_info(control.home.database)
    plan = parse_query(sql, Catalogue(ref_domains=info.ref_domains))
    if not isinstance(plan, QueryPlan):
        raise ValueError("the demo asked for the true values of a refused query")
    min_year = control.today().year - control.policy.retention_years
    compiled = compile_plan(plan, min_year=min_year, salt=plan.digest())
    with control.engine.connect() as conn:
        optouts = optout_upns(conn)
    box = Sandbox(
        control.home.database, needed_columns(plan), optouts, row_filters=compiled.pushdown
    )
    try:
        found = box.run(compiled.sql)
    finally:
        box.close()
    k = compiled.key_count
    by_group = {tuple(r[:k]): r[k:] for r in found}
    rows = []
    for group in plan.groups():
        parts = dict(zip(compiled.agg_columns, by_group.get(group, ()), strict=False))
        values: list[Any] = []
        for a, agg in enumerate(plan.aggregates):
            value = parts.get((a, "value"))
            if agg.func in ("count", "count_distinct"):
                values.append(int(value or 0))
            elif agg.func == "sum":
                values.append((value or 0) * agg.resolution)
            elif agg.func == "avg":
                count = parts.get((a, "count")) or 0
                values.append((value or 0) * agg.resolution / count if count else None)
            else:
                got = parts.get((a, "values")) or []
                values.append(statistics.median(got) if got else None)
        rows.append([group[i] if kind == "key" else values[i] for kind, i in plan.output])
    aggregates = [j for j, (kind, _i) in enumerate(plan.output) if kind == "agg"]
    return Truth(rows, aggregates)


def pupil_with_exclusion(db_path: str, year: int) -> str:
    """A UPN of some pupil excluded in ``year`` (the demo's opt-out; never shown in full)."""
    con = duckdb.connect(db_path, read_only=True)
    try:
        row = con.execute(
            "SELECT p.upn FROM pupils p JOIN exclusions e USING (pupil_id) "
            "WHERE e.academic_year = ? ORDER BY p.pupil_id LIMIT 1",
            [year],
        ).fetchone()
    finally:
        con.close()
    if row is None:
        raise ValueError(f"no pupil was excluded in {year}: generate more pupils")
    return str(row[0])


def mask_upn(upn: str) -> str:
    """Show that a UPN was used without showing it.

    >>> mask_upn("B856200021000")
    'B············'
    """
    return upn[:1] + "·" * (len(upn) - 1)
