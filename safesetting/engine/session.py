"""The engine session: one per process, the only way into the engine.

Like Tumult Analytics' ``Session`` or OpenDP's ``Context``, it holds what every query is
answered against: the catalogue (the declared schema, the data version and the public
domains), the output rules (minimum cell count, retention, truncation cap) and the data
plane over the published snapshot. It offers three calls, one per step of the privacy
story, and nothing above it knows an aggregate kind, a bound or a SQL string:

* ``prepare(sql) -> Prepared | Refusal``: the validated plan, its compiled SQL and the
  column uses the policy decides on;
* ``estimate(prepared, ε) -> Estimate``: the cost and each aggregate's expected error,
  without reading any data (an ε too small to calibrate is unusable input here);
* ``answer(prepared, ε, optouts) -> Released``: the noisy table. The true aggregates exist
  only inside this call.

The ledger is not the session's: the service charges the budget and logs the access before
it calls ``answer``. ``truth`` (the demo's comparison, possible only because the data are
synthetic) and ``includes`` (subject access) use the same plan, SQL and plane.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb

from safesetting.engine.compile import ALL_PUPILS, CompiledQuery, compile_plan
from safesetting.engine.measures import Expected
from safesetting.engine.noise import expected_errors, release
from safesetting.engine.output import Released
from safesetting.engine.parse import Catalogue, parse_query
from safesetting.engine.plan import QueryPlan, Refusal
from safesetting.engine.planes import DataPlane
from safesetting.engine.planes.duckdb import DEFAULT_MEMORY_LIMIT, UNREADABLE, DuckDBPlane
from safesetting.engine.snapshot import (
    DataUnavailableError,
    check_snapshot,
    checked,
    prune,
    publish,
    snapshot_path,
)
from safesetting.errors import StateError

SLICE_PUPILS = 1_000_000  # pupils per pass of a truncated query (~200 MB of window)


@dataclass(frozen=True)
class DataInfo:
    """What the engine knows about the data without reading a row of it."""

    version: str
    ref_domains: dict[str, tuple[object, ...]]
    pupils: int  # the declared population (a generation parameter, public)


@lru_cache(maxsize=8)
def _data_info(path: str, mtime_ns: int) -> DataInfo:  # noqa: ARG001 - mtime keys the cache
    # Here, not at the top: synthetic.load brings the generator (and Faker) with it.
    from synthetic.load import data_version_of, missing_constraints  # noqa: PLC0415

    con = duckdb.connect(path, read_only=True)  # once: opening a national file costs
    try:
        data_version = data_version_of(con)
        # The contribution bounds rely on the declared keys and checks: a file without one
        # of them is not served (a hand-made or damaged file, say). Once its snapshot is
        # published and checked, queries read only the snapshot, which was verified itself.
        published = checked(snapshot_path(Path(path), data_version.id))
        missing = [] if published else missing_constraints(con)
        urns = tuple(r[0] for r in con.execute("SELECT urn FROM schools ORDER BY urn").fetchall())
    finally:
        con.close()
    if missing:
        raise StateError(
            f"{Path(path).name} lacks {len(missing)} declared constraint(s) the privacy "
            f"bounds rely on, first {missing[0]}: regenerate it with `safesetting data "
            "generate --force`"
        )
    return DataInfo(data_version.id, {"schools.urn": urns}, data_version.pupils)


def data_info(db_path: Path) -> DataInfo:
    if not db_path.is_file():
        raise StateError(f"no data in {db_path.parent}: run `safesetting data generate` first")
    return _data_info(str(db_path), db_path.stat().st_mtime_ns)


def check_data(db_path: Path) -> DataInfo:
    """The data file, opened and checked as a query would (``serve`` runs it at start, so
    a missing, unreadable or unconstrained file stops the server, naming the file)."""
    try:
        return data_info(db_path)
    except StateError:
        raise
    except (duckdb.Error, OSError, ValueError) as exc:
        # The type only: a damaged file's message could quote its bytes.
        raise StateError(
            f"{db_path} cannot be served: it does not open as this safe setting's DuckDB "
            f"database ({type(exc).__name__}); regenerate it with `safesetting data "
            "generate --force` or restore it"
        ) from None


@dataclass(frozen=True)
class Rules:
    """The output rules a session applies (from the policy)."""

    min_cell_count: int = 10
    retention_years: int | None = None
    today: Callable[[], date] = date.today

    def min_year(self) -> int | None:
        """Records older than the retention period are never read."""
        if self.retention_years is None:
            return None
        return self.today().year - self.retention_years


@dataclass(frozen=True)
class Optouts:
    """The opted-out pupils as one query sees them (read once, with its cache key)."""

    upns: tuple[str, ...] = ()

    @classmethod
    def of(cls, upns: Iterable[str]) -> Optouts:
        return cls(tuple(sorted(set(upns))))

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.upns).encode()).hexdigest()


@dataclass(frozen=True)
class Prepared:
    """A query the engine can answer: its plan and its compiled SQL."""

    plan: QueryPlan
    compiled: CompiledQuery
    min_year: int | None

    @property
    def usage(self) -> Mapping[str, frozenset[str]]:
        """How each column is used (``table.column`` → usages), for the policy."""
        return self.plan.usage

    @property
    def doc(self) -> dict[str, Any]:
        return self.plan.to_doc()

    @property
    def bound(self) -> int:
        """The contribution bound: the most rows one pupil adds to the answer."""
        return self.compiled.bound.rows

    @property
    def labels(self) -> list[str]:
        return self.plan.labels


@dataclass(frozen=True)
class Estimate:
    """What answering would cost and how accurate it would be, before any data is read."""

    epsilon_micro: int
    bound: int
    cost: int  # cells × aggregates × declared pupils × bound: the work the plane may do
    expected: list[Expected]


@dataclass(frozen=True)
class Truth:
    """True values laid out like the released table (the demo only): ``rows`` match its
    rows and columns; ``aggregates`` are the positions of the aggregate columns."""

    rows: list[list[Any]]
    aggregates: list[int]

    def values(self, i: int) -> list[Any]:
        return [self.rows[i][j] for j in self.aggregates]


def publish_snapshot(db_path: Path, version: str) -> Path:
    """Publish (once) the snapshot every query of ``version`` reads (``snapshot.publish``)
    and remove those of earlier versions of the file (``snapshot.prune``)."""
    target = publish(db_path, version)
    prune(db_path, version)
    return target


class Session:
    """One process's engine over one data file and its published snapshot."""

    def __init__(
        self,
        db_path: Path,
        rules: Rules | None = None,
        *,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        threads: int = 2,
        plane: DataPlane | None = None,
    ) -> None:
        self.db_path = db_path
        self.info = check_data(db_path)
        self.rules = rules or Rules()
        self.catalogue = Catalogue(ref_domains=self.info.ref_domains)
        self._plane = plane
        self._plane_args = {"memory_limit": memory_limit, "threads": threads}
        self._lock = threading.Lock()
        self._optout_ids: tuple[str, tuple[int, ...]] | None = None
        self.db_mtime = db_path.stat().st_mtime_ns

    @property
    def version(self) -> str:
        return self.info.version

    # -- the three calls -------------------------------------------------------------------
    def prepare(self, sql: str) -> Prepared | Refusal:
        """Validate and compile ``sql``; a ``Refusal`` lists every reason. Malformed SQL
        raises ``UsageError``."""
        parsed = parse_query(sql, self.catalogue)
        if isinstance(parsed, Refusal):
            return parsed
        return self.prepare_plan(parsed)

    def prepare_plan(self, plan: QueryPlan, min_year: int | None = None) -> Prepared:
        """A plan (from ``prepare`` or ``QueryPlan.from_doc``) compiled under today's
        retention year, or ``min_year`` (subject access re-runs a plan as it ran)."""
        year = self.rules.min_year() if min_year is None else min_year
        compiled = compile_plan(plan, min_year=year, salt=plan.digest())
        return Prepared(plan, compiled, year)

    def estimate(self, prepared: Prepared, epsilon_micro: int) -> Estimate:
        """Cost and expected errors at ``epsilon_micro`` (no data read). ``UsageError`` if
        ε is too small to give every measurement a calibrated share."""
        expected = expected_errors(prepared.plan, prepared.compiled, epsilon_micro)
        plan = prepared.plan
        cost = max(plan.n_cells, 1) * len(plan.aggregates) * self.info.pupils * prepared.bound
        return Estimate(epsilon_micro, prepared.bound, cost, expected)

    def answer(self, prepared: Prepared, epsilon_micro: int, optouts: Optouts) -> Released:
        """The released table: the plane's true aggregates, noised by OpenDP and put
        through the output rules. The true rows end inside this call."""
        true_rows = self._rows(prepared, self.optout_ids(optouts))
        return release(prepared.plan, prepared.compiled, true_rows, epsilon_micro,
                       self.rules.min_cell_count)  # fmt: skip

    # -- the same plan, for the demo and for subject access -------------------------------
    def truth(self, prepared: Prepared, optouts: Optouts) -> Truth:
        """TRUE values, for the demo only (possible because the data are synthetic): the
        same compiled SQL, retention year and opt-outs, without noise, each measure's own
        definition of its value (a 90th percentile is a 90th percentile)."""
        plan, compiled = prepared.plan, prepared.compiled
        found = self._rows(prepared, self.optout_ids(optouts))
        k = compiled.key_count
        by_group = {tuple(r[:k]): r[k:] for r in found}
        rows = []
        for group in plan.groups():
            parts = dict(zip(compiled.agg_columns, by_group.get(group, ()), strict=False))
            values = [
                agg.measure.truth(agg, {p: parts.get((a, p)) for p in agg.measure.parts})
                for a, agg in enumerate(plan.aggregates)
            ]
            rows.append([group[i] if kind == "key" else values[i] for kind, i in plan.output])
        aggregates = [j for j, (kind, _i) in enumerate(plan.output) if kind == "agg"]
        return Truth(rows, aggregates)

    def includes(self, prepared: Prepared, pupil_id: int) -> bool:
        """Whether the pupil's rows meet the plan's joins and filters in a released group
        (subject access). ``prepared`` must be a count plan: only whether, never a value."""
        compiled = compile_plan(prepared.plan, min_year=prepared.min_year,
                                salt=prepared.plan.digest(), subject=True)  # fmt: skip
        groups = set(prepared.plan.groups())
        k = compiled.key_count
        rows = self.plane().run(compiled, (), subject_ids=(pupil_id,))
        return any(tuple(r[:k]) in groups and r[k] for r in rows)

    def pupil_id(self, upn: str) -> int | None:
        """The pupil_id of a UPN, from the identifier table (never from the snapshot)."""
        found = self._identifiers("SELECT pupil_id FROM pupils WHERE upn = ?", [upn])
        return int(found[0][0]) if found else None

    # -- the data plane --------------------------------------------------------------------
    def _rows(self, prepared: Prepared, optout_ids: tuple[int, ...]) -> list[tuple]:
        """The plane's rows for ``prepared``. A truncated query's window holds every row of
        the pupils it reads, so at national scale it runs in passes over ranges of
        ``SLICE_PUPILS`` pupil ids (ids run 1..N; the first and last ranges are open, so
        any id is in exactly one; each pass is compiled with its range as constants, which
        DuckDB prunes by the file's zone maps) and each group's parts are combined by their
        measure — exact, because truncation is per pupil and each pupil is in one pass. How
        many passes depends on the declared population only."""
        compiled, plane = prepared.compiled, self.plane()
        n = self.info.pupils
        if not compiled.sliced or n <= SLICE_PUPILS:
            return plane.run(compiled, optout_ids)
        passes = math.ceil(n / SLICE_PUPILS)
        k = compiled.key_count
        owners = [prepared.plan.aggregates[a].measure for a, _part in compiled.agg_columns]
        groups: dict[tuple, list] = {}
        for i in range(passes):
            lo = ALL_PUPILS[0] if i == 0 else i * SLICE_PUPILS + 1
            hi = ALL_PUPILS[1] if i == passes - 1 else (i + 1) * SLICE_PUPILS
            one = compile_plan(prepared.plan, min_year=prepared.min_year,
                               salt=prepared.plan.digest(), pupils=(lo, hi))  # fmt: skip
            for row in plane.run(one, optout_ids):
                key, parts = tuple(row[:k]), list(row[k:])
                held = groups.get(key)
                if held is None:
                    groups[key] = parts
                    continue
                for j, ((_a, part), m) in enumerate(zip(compiled.agg_columns, owners, strict=True)):
                    held[j] = m.combine(part, held[j], parts[j])
        return [(*key, *parts) for key, parts in groups.items()]

    def plane(self) -> DataPlane:
        """The data plane, opened on first use (publishing the snapshot if needed)."""
        with self._lock:
            if self._plane is None:
                snapshot = publish(self.db_path, self.info.version)
                try:
                    check_snapshot(snapshot)
                except StateError as exc:
                    raise DataUnavailableError(exc.message) from None
                except UNREADABLE as exc:
                    what = type(exc).__name__
                    raise DataUnavailableError(f"the snapshot cannot be read ({what})") from None
                self._plane = DuckDBPlane(snapshot, **self._plane_args)  # type: ignore[arg-type]
            return self._plane

    def optout_ids(self, optouts: Optouts) -> tuple[int, ...]:
        """The opted-out pupils' ids, looked up once per set of opt-outs (by its digest)."""
        if not optouts.upns:
            return ()
        cached = self._optout_ids
        if cached is not None and cached[0] == optouts.digest:
            return cached[1]
        rows = self._identifiers(
            "SELECT pupil_id FROM pupils WHERE upn IN (SELECT unnest(?::VARCHAR[]))",
            [list(optouts.upns)],
        )
        ids = tuple(sorted(int(r[0]) for r in rows))
        self._optout_ids = (optouts.digest, ids)
        return ids

    def _identifiers(self, sql: str, params: list[object]) -> list[tuple]:
        """A fixed, parameterised lookup in the identifier table of the data file."""
        con = duckdb.connect(str(self.db_path), read_only=True)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def close(self) -> None:
        with self._lock:
            if self._plane is not None:
                self._plane.close()
                self._plane = None
