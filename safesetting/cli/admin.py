"""``safesetting admin``: register researchers, approve projects, record opt-outs, see the policy.

Admin commands act on the home directly: whoever holds the home is the operator, recorded in
the audit log as ``admin:<os user>``. Every command only parses, calls a function in
:mod:`safesetting.administration` and prints.
"""

from __future__ import annotations

import click
from rich.table import Table

from policies.epsilon import format_epsilon
from policies.load import PolicyFileError, load_policy
from policies.model import OrgLimits, Policy
from safesetting import administration as admin_lib
from safesetting.cli.common import (
    Context,
    console,
    handle_errors,
    json_option,
    pass_context,
    print_json,
)
from safesetting.control import load_home_policy, open_control
from safesetting.errors import UsageError


@click.group("admin")
def admin() -> None:
    """Run the safe setting: researchers, projects, opt-outs, the policy, the signing key."""


# --- researchers -------------------------------------------------------------------------


@admin.group("researcher")
def researcher() -> None:
    """Register researchers, show them, revoke their tokens, renew their accreditation."""


@researcher.command("add")
@click.argument("researcher_id", metavar="ID")
@click.option("--org", "organisation", required=True, help="Organisation, e.g. 'UCL'.")
@click.option(
    "--role",
    type=click.Choice(admin_lib.ROLES),
    default="researcher",
    show_default=True,
    help="researcher (queries), auditor (reads the log) or admin.",
)
@click.option("--accredited-until", required=True, metavar="DATE", help="YYYY-MM-DD.")
@click.option("--token-expires", metavar="DATE", help="Expiry of the token (default: none).")
@json_option
@pass_context
@handle_errors
def researcher_add(
    ctx: Context,
    researcher_id: str,
    organisation: str,
    role: str,
    accredited_until: str,
    token_expires: str | None,
    as_json: bool,
) -> None:
    """Register a researcher and print their token. The token is shown ONCE."""
    issued = admin_lib.add_researcher(
        open_control(ctx.home),
        researcher_id,
        organisation=organisation,
        role=role,
        accredited_until=accredited_until,
        token_expires=token_expires,
    )
    if as_json:
        print_json({"id": issued.researcher.id, "token": issued.token})
        return
    r = issued.researcher
    click.echo(
        f"Registered {r.role} {r.id} ({r.organisation}), "
        f"accredited until {r.accredited_until.isoformat()}."
    )
    _echo_token(issued.token)


def _echo_token(token: str | None) -> None:
    click.echo("Token (shown once; it cannot be recovered, only revoked and reissued):")
    click.echo(token)


@researcher.command("list")
@json_option
@pass_context
@handle_errors
def researcher_list(ctx: Context, as_json: bool) -> None:
    """List researchers with their accreditation, live tokens and projects."""
    details = admin_lib.list_researchers(open_control(ctx.home))
    if as_json:
        print_json({"researchers": [d.to_json() for d in details]})
        return
    if not details:
        click.echo("No researchers registered.")
    for d in details:
        r = d.researcher
        click.echo(
            f"{r.id:<20} {r.role:<10} {r.organisation:<24} accredited until "
            f"{r.accredited_until.isoformat()}  tokens {d.active_tokens}  "
            f"projects {', '.join(d.projects) or '-'}"
        )


@researcher.command("show")
@click.argument("researcher_id", metavar="ID")
@json_option
@pass_context
@handle_errors
def researcher_show(ctx: Context, researcher_id: str, as_json: bool) -> None:
    """Show one researcher."""
    detail = admin_lib.show_researcher(open_control(ctx.home), researcher_id)
    if as_json:
        print_json(detail.to_json())
        return
    for key, value in detail.to_json().items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{key:<17} {shown if shown != '' else '-'}")


@researcher.command("revoke")
@click.argument("researcher_id", metavar="ID")
@json_option
@pass_context
@handle_errors
def researcher_revoke(ctx: Context, researcher_id: str, as_json: bool) -> None:
    """Revoke every live token of a researcher (they can no longer sign in)."""
    refs = admin_lib.revoke_researcher(open_control(ctx.home), researcher_id)
    if as_json:
        print_json({"id": researcher_id, "revoked_tokens": refs})
        return
    click.echo(f"Revoked {len(refs)} token(s) of {researcher_id}.")


@researcher.command("renew")
@click.argument("researcher_id", metavar="ID")
@click.option("--accredited-until", required=True, metavar="DATE", help="YYYY-MM-DD.")
@click.option("--new-token", is_flag=True, help="Also issue a new token (shown once).")
@click.option("--token-expires", metavar="DATE", help="Expiry of the new token.")
@json_option
@pass_context
@handle_errors
def researcher_renew(
    ctx: Context,
    researcher_id: str,
    accredited_until: str,
    new_token: bool,
    token_expires: str | None,
    as_json: bool,
) -> None:
    """Renew a researcher's accreditation, optionally with a new token."""
    issued = admin_lib.renew_researcher(
        open_control(ctx.home),
        researcher_id,
        accredited_until=accredited_until,
        new_token=new_token,
        token_expires=token_expires,
    )
    r = issued.researcher
    if as_json:
        body: dict[str, object] = {"id": r.id, "accredited_until": r.accredited_until.isoformat()}
        if issued.token:
            body["token"] = issued.token
        print_json(body)
        return
    click.echo(f"Renewed {r.id}: accredited until {r.accredited_until.isoformat()}.")
    if issued.token:
        _echo_token(issued.token)


# --- projects ----------------------------------------------------------------------------


@admin.group("project")
def project() -> None:
    """Approve projects (or have them refused), list, show and close them."""


@project.command("add")
@click.argument("project_id", metavar="ID")
@click.option("--title", required=True, help="What the project is for, in a line.")
@click.option("--org-type", required=True, help="academic, government, charity, commercial, press.")
@click.option("--purpose", required=True, help="e.g. educational_research (see policy.toml).")
@click.option("--tables", required=True, multiple=True, help="Tables, comma-separated: census,ks2.")
@click.option(
    "--special",
    multiple=True,
    help="Special-category or restricted columns approved, comma-separated: "
    "census.ethnicity_major,census.sen_provision.",
)
@click.option("--budget-epsilon", required=True, help="Total privacy budget, e.g. 5 or 2.5.")
@click.option("--expires", required=True, metavar="DATE", help="YYYY-MM-DD, after today.")
@click.option("--member", "members", multiple=True, required=True, help="Researcher id (repeat).")
@json_option
@pass_context
@handle_errors
def project_add(
    ctx: Context,
    project_id: str,
    title: str,
    org_type: str,
    purpose: str,
    tables: tuple[str, ...],
    special: tuple[str, ...],
    budget_epsilon: str,
    expires: str,
    members: tuple[str, ...],
    as_json: bool,
) -> None:
    """Approve a project. A purpose or request the policy refuses is audited and exits 3."""
    created = admin_lib.approve_project(
        open_control(ctx.home),
        project_id,
        title=title,
        org_type=org_type,
        purpose=purpose,
        tables=tables,
        special=special,
        budget_epsilon=budget_epsilon,
        expires=expires,
        members=members,
    )
    detail = admin_lib.ProjectDetail(created, 0)
    if as_json:
        print_json(detail.to_json())
        return
    click.echo(
        f"Approved project {created.id} ({created.purpose}, {created.org_type}): "
        f"budget {format_epsilon(created.budget_micro)} epsilon, "
        f"expires {created.expires.isoformat()}."
    )
    _echo_project(detail)


def _echo_project(detail: admin_lib.ProjectDetail) -> None:
    for key, value in detail.to_json().items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"  {key:<15} {shown if shown != '' else '-'}")


@project.command("list")
@json_option
@pass_context
@handle_errors
def project_list(ctx: Context, as_json: bool) -> None:
    """List projects with their budgets and status."""
    details = admin_lib.list_projects(open_control(ctx.home))
    if as_json:
        print_json({"projects": [d.to_json() for d in details]})
        return
    if not details:
        click.echo("No projects approved.")
    for d in details:
        p = d.project
        click.echo(
            f"{p.id:<20} {p.status:<7} {p.org_type:<11} {p.purpose:<28} "
            f"spent {format_epsilon(d.spent_micro)}/{format_epsilon(p.budget_micro)} epsilon  "
            f"expires {p.expires.isoformat()}"
        )


@project.command("show")
@click.argument("project_id", metavar="ID")
@json_option
@pass_context
@handle_errors
def project_show(ctx: Context, project_id: str, as_json: bool) -> None:
    """Show one project."""
    detail = admin_lib.show_project(open_control(ctx.home), project_id)
    if as_json:
        print_json(detail.to_json())
        return
    click.echo(f"Project {detail.project.id}: {detail.project.title}")
    _echo_project(detail)


@project.command("close")
@click.argument("project_id", metavar="ID")
@json_option
@pass_context
@handle_errors
def project_close(ctx: Context, project_id: str, as_json: bool) -> None:
    """Close a project: no further queries. What it spent stays spent."""
    closed = admin_lib.close_project(open_control(ctx.home), project_id)
    if as_json:
        print_json({"id": closed.id, "status": closed.status})
        return
    click.echo(f"Closed project {closed.id}.")


# --- opt-outs ----------------------------------------------------------------------------


@admin.group("optout")
def optout() -> None:
    """The opt-out register: pupils (by UPN) excluded from every query."""


@optout.command("add")
@click.argument("upns", nargs=-1, metavar="UPN...")
@json_option
@pass_context
@handle_errors
def optout_add(ctx: Context, upns: tuple[str, ...], as_json: bool) -> None:
    """Register opt-outs by UPN. The audit log records how many, never which."""
    result = admin_lib.add_optouts(open_control(ctx.home), upns)
    if as_json:
        print_json({"added": result.added, "already_registered": result.already})
        return
    click.echo(f"Added {result.added} opt-out(s); {result.already} already registered.")


@optout.command("list")
@json_option
@pass_context
@handle_errors
def optout_list(ctx: Context, as_json: bool) -> None:
    """List the opted-out UPNs (operator only: they are direct identifiers)."""
    upns = admin_lib.list_optouts(open_control(ctx.home))
    if as_json:
        print_json({"upns": upns})
        return
    click.echo("\n".join(upns) if upns else "No opt-outs registered.")


@admin.command("resume")
@json_option
@pass_context
@handle_errors
def resume_command(ctx: Context, as_json: bool) -> None:
    """Let fresh queries run again after the data could not be read.

    When the data file cannot be read for a query that was paid for, the service stops
    answering fresh queries (HTTP 503, exit 2) so that no one else pays for the same
    failure; cached answers and dry runs still work. Look at the incident in
    HOME/incidents.log, restore or regenerate the data, then run this: it checks the file
    as `serve` does at start and records `service.resumed`.
    """
    incident = admin_lib.resume_queries(open_control(ctx.home))
    if as_json:
        print_json({"resumed": incident is not None, "incident": incident})
        return
    if incident is None:
        click.echo("Fresh queries were not stopped; nothing to do.")
    else:
        click.echo(f"Fresh queries run again (they had stopped at incident {incident}).")


@admin.command("subject-access")
@click.argument("upn", metavar="UPN")
@json_option
@pass_context
@handle_errors
def subject_access_command(ctx: Context, upn: str, as_json: bool) -> None:
    """List the released queries that could have included one pupil's record.

    For a parent or pupil whose identity the operator has verified. Each released query's
    logged filters are re-evaluated for that pupil alone; no released value is shown. The
    request is audited (``subject.access``, with a count, never the UPN).
    """
    # Imported here: it runs the query engine, which no other admin command needs.
    from safesetting.subject_access import subject_access

    answer = subject_access(open_control(ctx.home), upn)
    if as_json:
        print_json(answer.to_json())
        return
    if not answer.found:
        click.echo("No pupil with that UPN is in the data.")
        return
    if answer.opted_out_on:
        click.echo(f"Opted out on {answer.opted_out_on}: left out of every query since.")
    table = Table(title="Released queries that could have included this pupil's record")
    for name in ("query", "project", "released", "included?", "why", "note"):
        table.add_column(name)
    for x in answer.queries:
        notes = []
        if x.data_changed:
            notes.append("the data changed since: checked on the current version")
        if x.served_from_cache:
            notes.append(f"given again from the cache {x.served_from_cache}×")
        included = "unknown" if x.included is None else ("yes" if x.included else "no")
        table.add_row(x.query_id, x.project, x.released_on, included, x.why, "; ".join(notes))
    console.print(table)
    click.echo(
        f"{len(answer.included)} of {len(answer.queries)} released queries could have "
        f"included the record (data version {answer.data_version}; audit entry "
        f"{answer.audit_seq})."
    )


# --- the audit signing key ----------------------------------------------------------------


@admin.group("key")
def key_group() -> None:
    """The audit log's signing key (HOME/checkpoint.key)."""


@key_group.command("rotate")
@json_option
@pass_context
@handle_errors
def key_rotate(ctx: Context, as_json: bool) -> None:
    """Replace the audit signing key with a new one, vouched for by the old.

    The rotation is an audit entry (key.rotated, naming both public keys) whose checkpoint
    both keys sign; later checkpoints are the new key's, and `audit verify` follows the
    handover from whichever key you published. Running servers sign with the new key from
    their next write. Publish the new public key beside the old one.
    """
    from safesetting.key_rotation import rotate_key

    rotation = rotate_key(open_control(ctx.home))
    if as_json:
        print_json(rotation.to_json())
        return
    click.echo(
        f"Rotated the audit signing key at audit entry {rotation.seq}; the checkpoint at size "
        f"{rotation.seq} is signed by both keys."
    )
    click.echo(f"  retired:  {rotation.previous}  (signs sizes up to {rotation.seq})")
    click.echo(f"  in force: {rotation.new}  (signs sizes from {rotation.seq})")
    click.echo(
        "Publish the new public key beside the old one "
        "(`safesetting audit keys`, GET /v1/audit/public-keys)."
    )


# --- policy ------------------------------------------------------------------------------


@admin.group("policy")
def policy() -> None:
    """The policy file: show what is in force, check a file before installing it."""


@policy.command("show")
@json_option
@pass_context
@handle_errors
def policy_show(ctx: Context, as_json: bool) -> None:
    """Show the policy in force and its SHA-256 (noting a change in the audit log)."""
    control = open_control(ctx.home)
    summary = _policy_summary(control.policy, control.policy_digest, str(ctx.home.policy))
    if as_json:
        print_json(summary)
        return
    for key, value in summary.items():
        click.echo(f"{key:<22} {value}")


@policy.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@json_option
@pass_context
@handle_errors
def policy_check(ctx: Context, path: str | None, as_json: bool) -> None:
    """Validate a policy file (default: the home's) without installing it."""
    if path is None:
        loaded, digest = load_home_policy(ctx.home)
        path = str(ctx.home.policy)
    else:
        try:
            loaded, digest = load_policy(path)
        except PolicyFileError as exc:
            raise UsageError(f"policy: {exc}") from None
    if as_json:
        print_json({"valid": True, "path": path, "sha256": digest})
        return
    click.echo(f"{path}: valid (sha256 {digest}); minimum cell count {loaded.min_cell_count}.")


def _policy_summary(loaded: Policy, digest: str, path: str) -> dict[str, object]:
    eps = loaded.epsilon
    return {
        "path": path,
        "sha256": digest,
        "min_cell_count": loaded.min_cell_count,
        "retention_years": loaded.retention_years,
        "epsilon_default": format_epsilon(eps.default_per_query),
        "epsilon_max_per_query": format_epsilon(eps.max_per_query),
        "dataset_epsilon_cap": format_epsilon(eps.dataset_cap),
        "purposes_allowed": ", ".join(loaded.purposes.allowed),
        "purposes_refused": ", ".join(loaded.purposes.refused),
        "column_overrides": ", ".join(f"{k}={v}" for k, v in loaded.columns.items()) or "-",
        **{f"limits.{name}": _limits(limits) for name, limits in loaded.organisation_types.items()},
    }


def _limits(limits: OrgLimits) -> str:
    parts = []
    if limits.max_epsilon_per_query is not None:
        parts.append(f"at most {format_epsilon(limits.max_epsilon_per_query)} epsilon per query")
    if limits.max_budget_epsilon is not None:
        parts.append(f"budget at most {format_epsilon(limits.max_budget_epsilon)}")
    if not limits.special_category_allowed:
        parts.append("no special-category columns")
    if not limits.restricted_allowed:
        parts.append("no restricted columns")
    return "; ".join(parts) or "policy-wide limits"
