"""Researchers, projects and the opt-out register: reads and writes on a caller's connection.

These functions check only what the database must guarantee (existence, uniqueness); input
validation and the policy live in :mod:`safesetting.administration`, which also audits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa

from policies.decide import ProjectFacts, ResearcherFacts
from safesetting.errors import NotFoundError, UsageError
from safesetting.store import tables as t


def utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Researcher:
    id: str
    organisation: str
    role: str
    accredited_until: date
    created_at: datetime

    def facts(self, *, token_revoked: bool = False) -> ResearcherFacts:
        return ResearcherFacts(self.id, self.role, self.accredited_until, token_revoked)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "organisation": self.organisation,
            "role": self.role,
            "accredited_until": self.accredited_until.isoformat(),
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class Project:
    id: str
    title: str
    org_type: str
    purpose: str
    tables: tuple[str, ...]
    approved_columns: tuple[str, ...]
    budget_micro: int
    expires: date
    status: str
    members: tuple[str, ...]
    created_at: datetime

    def facts(self) -> ProjectFacts:
        return ProjectFacts(
            id=self.id,
            purpose=self.purpose,
            org_type=self.org_type,
            tables=frozenset(self.tables),
            approved_columns=frozenset(self.approved_columns),
            budget_micro=self.budget_micro,
            expires=self.expires,
            status=self.status,
            members=frozenset(self.members),
        )


# --- researchers -------------------------------------------------------------------------


def _researcher(row: sa.Row[tuple[object, ...]]) -> Researcher:
    created = utc(row.created_at)
    assert created is not None
    return Researcher(row.id, row.organisation, row.role, row.accredited_until, created)


def insert_researcher(
    conn: sa.Connection,
    researcher_id: str,
    *,
    organisation: str,
    role: str,
    accredited_until: date,
    now: datetime,
) -> Researcher:
    """Register a researcher; :class:`UsageError` if the id is taken."""
    if conn.execute(
        sa.select(t.researchers.c.id).where(t.researchers.c.id == researcher_id)
    ).first():
        raise UsageError(f"researcher {researcher_id} already exists")
    try:
        conn.execute(
            sa.insert(t.researchers).values(
                id=researcher_id,
                organisation=organisation,
                role=role,
                accredited_until=accredited_until,
                created_at=now,
            )
        )
    except sa.exc.IntegrityError:  # registered by a concurrent transaction (PostgreSQL)
        raise UsageError(f"researcher {researcher_id} already exists") from None
    return Researcher(researcher_id, organisation, role, accredited_until, now)


def get_researcher(conn: sa.Connection, researcher_id: str) -> Researcher:
    row = conn.execute(sa.select(t.researchers).where(t.researchers.c.id == researcher_id)).first()
    if row is None:
        raise NotFoundError(f"no researcher {researcher_id}")
    return _researcher(row)


def list_researchers(conn: sa.Connection) -> list[Researcher]:
    rows = conn.execute(sa.select(t.researchers).order_by(t.researchers.c.id))
    return [_researcher(row) for row in rows]


def set_accreditation(conn: sa.Connection, researcher_id: str, until: date) -> Researcher:
    get_researcher(conn, researcher_id)
    conn.execute(
        sa.update(t.researchers)
        .where(t.researchers.c.id == researcher_id)
        .values(accredited_until=until)
    )
    return get_researcher(conn, researcher_id)


def researcher_projects(conn: sa.Connection, researcher_id: str) -> list[str]:
    m = t.project_members
    rows = conn.execute(
        sa.select(m.c.project_id).where(m.c.researcher_id == researcher_id).order_by(m.c.project_id)
    )
    return list(rows.scalars())


# --- projects ----------------------------------------------------------------------------


def project_exists(conn: sa.Connection, project_id: str) -> bool:
    query = sa.select(t.projects.c.id).where(t.projects.c.id == project_id)
    return conn.execute(query).first() is not None


def insert_project(
    conn: sa.Connection, project: ProjectFacts, *, title: str, now: datetime
) -> Project:
    """Register an approved project; :class:`UsageError` if the id is taken."""
    if project_exists(conn, project.id):
        raise UsageError(f"project {project.id} already exists")
    for member in sorted(project.members):
        get_researcher(conn, member)
    try:
        conn.execute(
            sa.insert(t.projects).values(
                id=project.id,
                title=title,
                org_type=project.org_type,
                purpose=project.purpose,
                budget_micro=project.budget_micro,
                expires=project.expires,
                status="open",
                created_at=now,
            )
        )
    except sa.exc.IntegrityError:  # approved by a concurrent transaction (PostgreSQL)
        raise UsageError(f"project {project.id} already exists") from None
    _insert_many(conn, t.project_tables, project.id, "table_name", project.tables)
    _insert_many(conn, t.project_columns, project.id, "column_name", project.approved_columns)
    _insert_many(conn, t.project_members, project.id, "researcher_id", project.members)
    return get_project(conn, project.id)


def _insert_many(
    conn: sa.Connection, table: sa.Table, project_id: str, column: str, values: Iterable[str]
) -> None:
    rows = [{"project_id": project_id, column: value} for value in sorted(values)]
    if rows:
        conn.execute(sa.insert(table), rows)


def _children(
    conn: sa.Connection, table: sa.Table, column: str, project_id: str
) -> tuple[str, ...]:
    col = table.c[column]
    rows = conn.execute(sa.select(col).where(table.c.project_id == project_id).order_by(col))
    return tuple(rows.scalars())


def get_project(conn: sa.Connection, project_id: str) -> Project:
    row = conn.execute(sa.select(t.projects).where(t.projects.c.id == project_id)).first()
    if row is None:
        raise NotFoundError(f"no project {project_id}")
    created = utc(row.created_at)
    assert created is not None
    return Project(
        id=row.id,
        title=row.title,
        org_type=row.org_type,
        purpose=row.purpose,
        tables=_children(conn, t.project_tables, "table_name", project_id),
        approved_columns=_children(conn, t.project_columns, "column_name", project_id),
        budget_micro=int(row.budget_micro),
        expires=row.expires,
        status=row.status,
        members=_children(conn, t.project_members, "researcher_id", project_id),
        created_at=created,
    )


def member_project(conn: sa.Connection, project_id: str, researcher_id: str) -> Project | None:
    """``project_id`` if ``researcher_id`` is one of its members, else None.

    One indexed lookup decides, the same for an unknown project and for someone else's:
    neither the answer nor the work done depends on whether the project exists.
    """
    found = conn.execute(
        sa.select(t.project_members.c.project_id).where(
            t.project_members.c.project_id == project_id,
            t.project_members.c.researcher_id == researcher_id,
        )
    ).first()
    return get_project(conn, project_id) if found is not None else None


def list_projects(conn: sa.Connection, *, member: str | None = None) -> list[Project]:
    query = sa.select(t.projects.c.id).order_by(t.projects.c.id)
    if member is not None:
        query = query.join(t.project_members).where(t.project_members.c.researcher_id == member)
    return [get_project(conn, pid) for pid in conn.execute(query).scalars()]


def close_project(conn: sa.Connection, project_id: str, *, now: datetime) -> Project:
    project = get_project(conn, project_id)
    if project.status == "closed":
        raise UsageError(f"project {project_id} is already closed")
    conn.execute(
        sa.update(t.projects)
        .where(t.projects.c.id == project_id)
        .values(status="closed", closed_at=now)
    )
    return get_project(conn, project_id)


# --- opt-outs ----------------------------------------------------------------------------


def insert_optouts(conn: sa.Connection, upns: Iterable[str], *, now: datetime) -> list[str]:
    """Add UPNs to the opt-out register; return those that were not already there."""
    wanted = sorted(set(upns))
    if not wanted:
        return []
    present = set(
        conn.execute(sa.select(t.optouts.c.upn).where(t.optouts.c.upn.in_(wanted))).scalars()
    )
    new = [upn for upn in wanted if upn not in present]
    if new:
        conn.execute(sa.insert(t.optouts), [{"upn": upn, "added_at": now} for upn in new])
    return new


def optout_upns(conn: sa.Connection) -> list[str]:
    """Every opted-out UPN, sorted: the engine anti-joins ``pupils.upn`` against these."""
    return list(conn.execute(sa.select(t.optouts.c.upn).order_by(t.optouts.c.upn)).scalars())
