"""Typed library functions behind every admin command: validate, change, audit, return.

Each change runs in one transaction with its audit entry, so a failure leaves the registry
and the log as they were. Input problems raise :class:`UsageError` (exit 2) before anything
is written; a project refused by the policy is audited as ``project.refused`` and raises
:class:`PolicyDeniedError` (exit 3) with every reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import sqlalchemy as sa

from policies.decide import ProjectFacts, check_project
from policies.epsilon import format_epsilon
from policies.model import ORG_TYPES
from safesetting.caller import Role
from safesetting.control import Control
from safesetting.errors import PolicyDeniedError, UsageError
from safesetting.store import auth, ledger, registry
from safesetting.store.registry import Project, Researcher
from safesetting.validation import (
    check_id,
    check_name,
    check_text,
    check_upn,
    future_date,
    parse_epsilon,
)

ROLES = tuple(r.value for r in Role)  # for the CLI's choices


@dataclass(frozen=True)
class IssuedToken:
    """A researcher and the token just issued to them (shown once, never stored)."""

    researcher: Researcher
    token: str | None


@dataclass(frozen=True)
class ResearcherDetail:
    researcher: Researcher
    active_tokens: int
    projects: list[str]

    def to_json(self) -> dict[str, object]:
        return {
            **self.researcher.to_json(),
            "active_tokens": self.active_tokens,
            "projects": self.projects,
        }


@dataclass(frozen=True)
class ProjectDetail:
    project: Project
    spent_micro: int

    def to_json(self) -> dict[str, object]:
        p = self.project
        return {
            "id": p.id,
            "title": p.title,
            "org_type": p.org_type,
            "purpose": p.purpose,
            "tables": list(p.tables),
            "special": list(p.approved_columns),
            "budget_epsilon": format_epsilon(p.budget_micro),
            "epsilon_spent": format_epsilon(self.spent_micro),
            "expires": p.expires.isoformat(),
            "status": p.status,
            "members": list(p.members),
            "created_at": p.created_at.isoformat(),
        }


# --- researchers -------------------------------------------------------------------------


def _token_expiry(token_expires: str | None, today: date) -> datetime | None:
    """A token given an end date works until the end of that day (UTC)."""
    if token_expires is None:
        return None
    return datetime.combine(future_date("token-expires", token_expires, today), time.max, UTC)


def add_researcher(
    control: Control,
    researcher_id: str,
    *,
    organisation: str,
    role: str,
    accredited_until: str,
    token_expires: str | None = None,
) -> IssuedToken:
    """Register a researcher and issue their first token (audited ``researcher.added``,
    ``token.issued``)."""
    check_id("researcher", researcher_id)
    organisation = check_text("organisation", organisation, limit=200)
    if role not in ROLES:
        raise UsageError(f"role {ascii(role)} must be one of {', '.join(ROLES)}")
    today = control.today()
    until = future_date("accredited-until", accredited_until, today)
    expires = _token_expiry(token_expires, today)
    now = control.now()
    with control.transaction() as conn:
        researcher = registry.insert_researcher(
            conn,
            researcher_id,
            organisation=organisation,
            role=role,
            accredited_until=until,
            now=now,
        )
        request = {
            "researcher": researcher_id,
            "organisation": organisation,
            "role": role,
            "accredited_until": until.isoformat(),
        }
        control.record(conn, "researcher.added", request=request)
        token = _issue(control, conn, researcher_id, now, expires)
    return IssuedToken(researcher, token)


def _issue(
    control: Control,
    conn: sa.Connection,
    researcher_id: str,
    now: datetime,
    expires: datetime | None,
) -> str:
    token = auth.issue_token(conn, researcher_id, now=now, expires_at=expires)
    ref = auth.token_ref(auth.token_digest(token))
    control.record(conn, "token.issued", request={"researcher": researcher_id, "token_id": ref})
    return token


def list_researchers(control: Control) -> list[ResearcherDetail]:
    with control.engine.connect() as conn:
        return [_detail(control, conn, r) for r in registry.list_researchers(conn)]


def show_researcher(control: Control, researcher_id: str) -> ResearcherDetail:
    check_id("researcher", researcher_id)
    with control.engine.connect() as conn:
        return _detail(control, conn, registry.get_researcher(conn, researcher_id))


def _detail(control: Control, conn: sa.Connection, researcher: Researcher) -> ResearcherDetail:
    return ResearcherDetail(
        researcher,
        auth.active_token_count(conn, researcher.id, now=control.now()),
        registry.researcher_projects(conn, researcher.id),
    )


def revoke_researcher(control: Control, researcher_id: str) -> list[str]:
    """Revoke every live token of a researcher (one ``token.revoked`` entry each)."""
    check_id("researcher", researcher_id)
    with control.transaction() as conn:
        refs = auth.revoke_tokens(conn, researcher_id, now=control.now())
        for ref in refs:
            request = {"researcher": researcher_id, "token_id": ref}
            control.record(conn, "token.revoked", request=request)
    return refs


def renew_researcher(
    control: Control,
    researcher_id: str,
    *,
    accredited_until: str,
    new_token: bool = False,
    token_expires: str | None = None,
) -> IssuedToken:
    """Set a new accreditation date (``researcher.renewed``), optionally issuing a token."""
    check_id("researcher", researcher_id)
    today = control.today()
    until = future_date("accredited-until", accredited_until, today)
    if token_expires is not None and not new_token:
        raise UsageError("--token-expires only applies with --new-token")
    expires = _token_expiry(token_expires, today)
    with control.transaction() as conn:
        researcher = registry.set_accreditation(conn, researcher_id, until)
        request = {"researcher": researcher_id, "accredited_until": until.isoformat()}
        control.record(conn, "researcher.renewed", request=request)
        token = _issue(control, conn, researcher_id, control.now(), expires) if new_token else None
    return IssuedToken(researcher, token)


# --- projects ----------------------------------------------------------------------------


def approve_project(
    control: Control,
    project_id: str,
    *,
    title: str,
    org_type: str,
    purpose: str,
    tables: Sequence[str],
    special: Sequence[str] = (),
    budget_epsilon: str,
    expires: str,
    members: Sequence[str],
) -> Project:
    """Approve a project (``project.approved``), or audit ``project.refused`` and raise."""
    policy = control.policy
    check_id("project", project_id)
    title = check_text("title", title, limit=300)
    if org_type not in ORG_TYPES:
        raise UsageError(f"org-type {ascii(org_type)} must be one of {', '.join(ORG_TYPES)}")
    check_name("purpose", purpose)
    table_set = _tables(control, tables)
    columns = _columns(control, special, table_set)
    budget = parse_epsilon("budget-epsilon", budget_epsilon, most=policy.epsilon.dataset_cap)
    until = future_date("expires", expires, control.today())
    if not members:
        raise UsageError("a project needs at least one --member")
    for member in members:
        check_id("researcher", member)
    facts = ProjectFacts(
        id=project_id,
        purpose=purpose,
        org_type=org_type,
        tables=table_set,
        approved_columns=columns,
        budget_micro=budget,
        expires=until,
        members=frozenset(members),
    )
    with control.engine.connect() as conn:
        if registry.project_exists(conn, project_id):
            raise UsageError(f"project {project_id} already exists")
        for member in sorted(facts.members):
            found = registry.get_researcher(conn, member)
            if found.role != "researcher":
                raise UsageError(f"{member} is an {found.role}, not a researcher")
    request = {
        "title": title,
        "org_type": org_type,
        "purpose": purpose,
        "tables": sorted(table_set),
        "special": sorted(columns),
        "budget_epsilon_micro": budget,
        "expires": until.isoformat(),
        "members": sorted(facts.members),
    }
    decision = check_project(policy, facts)
    if not decision.allowed:
        with control.transaction() as conn:
            control.record(
                conn, "project.refused", project=project_id, request=request,
                decision="refused", reasons=decision.codes,
            )  # fmt: skip
        raise PolicyDeniedError(
            f"project {project_id} refused by the policy", list(decision.reasons)
        )
    with control.transaction() as conn:
        project = registry.insert_project(conn, facts, title=title, now=control.now())
        control.record(
            conn, "project.approved", project=project_id, request=request, decision="approved"
        )
    return project


def _split(values: Sequence[str]) -> list[str]:
    """Accept ``a,b`` and repeated options alike."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _tables(control: Control, tables: Sequence[str]) -> frozenset[str]:
    names = _split(tables)
    if not names:
        raise UsageError("a project needs at least one table in --tables")
    for name in names:
        if not control.policy.is_known_table(name):
            raise UsageError(f"unknown table {ascii(name)} (see `safesetting data catalogue`)")
    return frozenset(names)


def _columns(control: Control, special: Sequence[str], tables: frozenset[str]) -> frozenset[str]:
    names = _split(special)
    for name in names:
        if control.policy.column_class(name) is None:
            raise UsageError(f"unknown column {ascii(name)}: write table.column")
        if name.partition(".")[0] not in tables:
            raise UsageError(f"--special {name} needs its table in --tables")
    return frozenset(names)


def list_projects(control: Control) -> list[ProjectDetail]:
    with control.engine.connect() as conn:
        return [
            ProjectDetail(p, ledger.project_spent(conn, p.id)) for p in registry.list_projects(conn)
        ]


def show_project(control: Control, project_id: str) -> ProjectDetail:
    check_id("project", project_id)
    with control.engine.connect() as conn:
        project = registry.get_project(conn, project_id)
        return ProjectDetail(project, ledger.project_spent(conn, project_id))


def close_project(control: Control, project_id: str) -> Project:
    """Close a project (``project.closed``): no further queries; its spending stays."""
    check_id("project", project_id)
    with control.transaction() as conn:
        project = registry.close_project(conn, project_id, now=control.now())
        control.record(conn, "project.closed", project=project_id, decision="closed")
    return project


def resume_queries(control: Control) -> str | None:
    """Let fresh queries run again after a read failure stopped them (``service.resumed``).

    The data file is checked first, as ``serve`` checks it at start: a file that still does
    not open keeps them stopped. Returns the incident that had stopped them (None if they
    were running; nothing is then written)."""
    from safesetting import service

    incident = service.halted_by(control.home)
    if incident is None:
        return None
    service.check_data(control.home.database)
    with control.transaction() as conn:
        control.record(conn, "service.resumed", request={"incident": incident},
                       decision="allowed")  # fmt: skip
    service.resume(control.home)
    return incident


# --- opt-outs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OptoutResult:
    added: int
    already: int


def add_optouts(control: Control, upns: Sequence[str]) -> OptoutResult:
    """Register opt-outs (``optout.added`` records how many, never the UPNs)."""
    if not upns:
        raise UsageError("give at least one UPN")
    checked = [check_upn(u) for u in upns]
    with control.transaction() as conn:
        new = registry.insert_optouts(conn, checked, now=control.now())
        if new:
            control.record(conn, "optout.added", request={"count": len(new)})
    return OptoutResult(len(new), len(set(checked)) - len(new))


def list_optouts(control: Control) -> list[str]:
    with control.engine.connect() as conn:
        return registry.optout_upns(conn)
