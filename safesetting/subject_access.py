"""Subject access: which released answers could have included one pupil's record.

For a parent (through the operator, who verifies who they are), given the pupil's UPN: every
released query is re-evaluated for that pupil alone. The plan logged with the query (the
``query.accepted`` audit entry's ``normalised`` text: tables, joins, filters, group keys) is
rebuilt as a count, validated by the same parser as any researcher query, compiled with the
retention year the query ran under, and run on a locked in-memory copy holding *only that
pupil's rows*. The pupil could have been included when the compiled filters keep one of their
rows in a released group and they had not opted out before the query ran.

Nothing here reads another pupil's record or any released value; the output says only
whether each query could have used the record. The request is audited as
``subject.access`` with a count, never the UPN.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import sqlalchemy as sa

import audit
from safesetting.control import Control
from safesetting.engine.compile import OPTOUT_TABLE, compile_plan
from safesetting.engine.parse import Catalogue, parse_query
from safesetting.engine.plan import QueryPlan
from safesetting.errors import UsageError
from safesetting.service import data_info
from safesetting.store import queries as q
from safesetting.store import tables as t
from safesetting.store.registry import utc
from safesetting.validation import check_upn
from synthetic.schema import TABLES


@dataclass(frozen=True)
class QueryInclusion:
    """One released query and whether it could have used the pupil's record."""

    query_id: str
    project: str
    released_on: str
    tables: list[str]
    included: bool | None  # None: the logged plan could not be re-evaluated
    why: str
    data_changed: bool
    served_from_cache: int


@dataclass(frozen=True)
class SubjectAccess:
    """The answer to a subject-access request (no released value, no other pupil)."""

    found: bool
    data_version: str
    opted_out_on: str | None
    queries: list[QueryInclusion] = field(default_factory=list)
    audit_seq: int | None = None

    @property
    def included(self) -> list[QueryInclusion]:
        return [x for x in self.queries if x.included]

    def to_json(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "data_version": self.data_version,
            "opted_out_on": self.opted_out_on,
            "released_queries": len(self.queries),
            "could_have_included": len(self.included),
            "queries": [asdict(x) for x in self.queries],
            "audit_seq": self.audit_seq,
        }


def count_sql(normalised: str) -> str:
    """Rebuild a logged plan as ``SELECT keys, COUNT(*) …``: same tables, joins and filters.

    >>> doc = '{"from":["census"],"where":"\\\\"census\\\\".\\\\"nc_year\\\\" = 6",'
    >>> doc += '"keys":["census.region"],"aggs":[],"out":[]}'
    >>> count_sql(doc)
    'SELECT "census"."region", COUNT(*) FROM "census" WHERE "census"."nc_year" = 6 GROUP BY 1'
    """
    plan = json.loads(normalised)

    def col(qualified: str) -> str:
        table, column = qualified.split(".", 1)
        return f'"{table}"."{column}"'

    base, *joins = plan["from"]
    keys = [col(k) for k in plan.get("keys", [])]
    # Only text: parse_query validates it (tables, columns, node types) before it is compiled.
    sql = f'SELECT {", ".join([*keys, "COUNT(*)"])} FROM "{base}"'  # noqa: S608
    for name, on, *alias in joins:  # a third item: the node's alias (a table joined again)
        pairs = [pair.split("=", 1) for pair in on]
        named = f' AS "{alias[0]}"' if alias else ""
        sql += f' JOIN "{name}"{named} ON ' + " AND ".join(f"{col(a)} = {col(b)}" for a, b in pairs)
    if plan.get("where"):
        sql += f" WHERE {plan['where']}"
    if keys:
        sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(keys)))
    return sql


class PupilSandbox:
    """A locked in-memory DuckDB holding one pupil's rows and the public reference tables."""

    def __init__(self, db_path: str, upn: str) -> None:
        self.con = duckdb.connect(
            ":memory:",
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
                "python_enable_replacements": False,
            },
        )
        con = self.con
        con.execute("SET temp_directory = ''")
        con.execute("ATTACH ? AS src (READ_ONLY)", [db_path])
        found = con.execute("SELECT pupil_id FROM src.pupils WHERE upn = ?", [upn]).fetchall()
        self.found = bool(found)
        pid = found[0][0] if found else -1
        for name, table in TABLES.items():
            # Table names come from the schema declaration, never from a request.
            where = " WHERE pupil_id = ?" if table.private else ""
            params = [pid] if table.private else []
            con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM src."{name}"{where}', params)  # noqa: S608
        con.execute(f"CREATE TABLE {OPTOUT_TABLE} (pupil_id BIGINT)")
        con.execute("DETACH src")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")

    def matches(self, plan: QueryPlan, min_year: int) -> bool:
        """Whether the compiled filters keep a row of this pupil in a released group."""
        compiled = compile_plan(plan, min_year=min_year, salt=plan.digest())
        groups = set(plan.groups())
        k = compiled.key_count
        rows = self.con.execute(compiled.sql).fetchall()
        return any(tuple(r[:k]) in groups and r[k] for r in rows)

    def close(self) -> None:
        self.con.close()


def _accepted_plans(conn: sa.Connection) -> tuple[dict[str, str], Counter[str]]:
    """query_id → logged normalised plan; and how often each was served from the cache."""
    plans: dict[str, str] = {}
    cached: Counter[str] = Counter()
    for entry in audit.read_entries(conn, action="query.*"):
        req = entry.request or {}
        if entry.action == "query.accepted" and isinstance(req.get("normalised"), str):
            plans[str(req.get("query_id"))] = req["normalised"]
        elif entry.action == "query.cached" and req.get("cached_query_id"):
            cached[str(req["cached_query_id"])] += 1
    return plans, cached


def _replan(normalised: str | None, catalogue: Catalogue) -> QueryPlan | None:
    """The logged plan as a validated count plan, or None if it cannot be rebuilt (a log
    entry from an older plan format, say): that query is then reported as unknown."""
    if normalised is None:
        return None
    try:
        parsed = parse_query(count_sql(normalised), catalogue)
    except (UsageError, ValueError, KeyError, TypeError, IndexError):
        return None
    return parsed if isinstance(parsed, QueryPlan) else None


def subject_access(control: Control, upn: str) -> SubjectAccess:
    """Which released queries could have included the pupil with ``upn`` (audited)."""
    upn = check_upn(upn)
    info = data_info(control.home.database)
    catalogue = Catalogue(ref_domains=info.ref_domains)
    retention = control.policy.retention_years
    with control.engine.connect() as conn:
        plans, cached = _accepted_plans(conn)
        released = conn.execute(
            sa.select(t.queries)
            .where(t.queries.c.status == q.RELEASED)
            .order_by(t.queries.c.created_at)
        ).all()
        optout_at = utc(
            conn.execute(sa.select(t.optouts.c.added_at).where(t.optouts.c.upn == upn)).scalar()
        )
    box = PupilSandbox(str(control.home.database), upn)
    results: list[QueryInclusion] = []
    try:
        for row in released if box.found else []:
            created = utc(row.created_at)
            assert created is not None
            normalised = plans.get(row.id)
            parsed = _replan(normalised, catalogue)
            tables = list(parsed.tables) if parsed is not None else []
            if parsed is None:
                included, why = None, "the logged plan could not be re-checked"
            elif optout_at is not None and optout_at <= created:
                included, why = False, "opted out before the query ran"
            elif box.matches(parsed, created.year - retention):
                included, why = True, "the record meets the filters"
            else:
                included, why = False, "the record is outside the filters"
            results.append(
                QueryInclusion(
                    query_id=row.id,
                    project=row.project_id,
                    released_on=created.date().isoformat(),
                    tables=tables,
                    included=included,
                    why=why,
                    data_changed=row.data_version != info.version,
                    served_from_cache=cached.get(row.id, 0),
                )
            )
    finally:
        box.close()
    answer = SubjectAccess(
        found=box.found,
        data_version=info.version,
        opted_out_on=optout_at.date().isoformat() if optout_at else None,
        queries=results,
    )
    with control.transaction() as conn:
        entry = control.record(
            conn,
            "subject.access",
            decision="answered" if box.found else "not_found",
            request={"count": len(answer.included), "reason": "subject access request"},
            data_version=info.version,
        )
    return SubjectAccess(**{**answer.__dict__, "audit_seq": entry.seq})
