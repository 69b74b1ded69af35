"""``safesetting audit …``: read, verify, prove and export the tamper-evident access log."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from safesetting.audit_log import (
    AuditLog,
    epsilon_text,
    open_checkpoint,
    proof_errors,
    verifier_text,
)
from safesetting.cli.common import (
    Context,
    console,
    handle_errors,
    json_option,
    pass_context,
    print_json,
    token_option,
)
from safesetting.errors import IntegrityError, UsageError


def _log(ctx: Context) -> AuditLog:
    """The home's log as it is (no policy, no migrations: verification reads it unchanged)."""
    return AuditLog.of_home(ctx.home)


def _remote(token: str | None = None) -> Any:
    """The server at SAFESETTING_URL (an ``HttpBackend``), or None to read the home."""
    url = os.environ.get("SAFESETTING_URL")
    if not url:
        return None
    from safesetting.client import HttpBackend

    return HttpBackend(url, token)


@click.group(name="audit")
def audit_group() -> None:
    """The append-only, tamper-evident log of every access and admin change.

    Entries are canonical JSON hashed into an RFC 9162 Merkle tree; each commit is followed
    by a signed checkpoint that anyone holding the public key can check. With
    SAFESETTING_URL set, log, checkpoint, prove and consistency ask the server (log needs an
    auditor's token); verify and export need the home.
    """


@audit_group.command(name="log")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only entries on or after DATE.")
@click.option("--actor", help="Only entries by this actor.")
@click.option("--project", help="Only entries for this project.")
@click.option("--action", help="Only this action (query.released), or a family (query.*).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N entries.")
@token_option
@json_option
@pass_context
@handle_errors
def log_command(
    ctx: Context,
    since: dt.datetime | None,
    actor: str | None,
    project: str | None,
    action: str | None,
    limit: int | None,
    token: str | None,
    as_json: bool,
) -> None:
    """List log entries (oldest first, or the newest N with --limit).

    Over HTTP (auditors and admins) the server returns at most the newest 1,000.
    """
    remote = _remote(token)
    if remote is not None:
        found = remote.entries(
            since=since.date().isoformat() if since else None,
            actor=actor,
            project=project,
            action=action,
            limit=limit,
        )
    else:
        found = _log(ctx).entries(
            since=since.date() if since else None,
            actor=actor,
            project=project,
            action=action,
            limit=limit,
            newest_first=limit is not None,
        )
    if as_json:
        print_json(found)
        return
    table = Table(title=f"Audit log ({len(found)} entries)")
    table.add_column("seq", justify="right")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("actor", overflow="fold")
    table.add_column("action", no_wrap=True)
    for col in ("project", "decision"):
        table.add_column(col, overflow="fold")
    table.add_column("ε", justify="right")
    table.add_column("reasons", overflow="fold")
    for e in found:
        micro = e.get("epsilon_micro") or 0
        table.add_row(
            str(e["seq"]),
            e["time"][:19].replace("T", " "),
            e["actor"],
            e["action"],
            e.get("project") or "",
            e.get("decision") or "",
            epsilon_text(micro) if micro else "",
            ", ".join(e.get("reasons") or []),
        )
    console.print(table)


@audit_group.command(name="verify")
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint published earlier: the log must still extend it.",
)
@click.option(
    "--public-key",
    help="The log's published verifier key (name+id+key); default: the home's key.",
)
@json_option
@pass_context
@handle_errors
def verify_command(
    ctx: Context, checkpoint_file: Path | None, public_key: str | None, as_json: bool
) -> None:
    """Recompute every leaf and the root; check them against the signed checkpoints; then
    check the budget ledger against the log.

    Exits 3 and names the first bad entry if anything was changed, removed, inserted or
    reordered, or if the log is shorter than a checkpoint it once published; and names the
    first disagreement if a ledger debit does not match its query.accepted entry (a debit
    deleted, edited or unaccounted for).
    """
    result, ledger = _log(ctx).verify(
        checkpoint_file.read_text() if checkpoint_file else None, public_key
    )
    if as_json:
        print_json({**result.to_json(), "ledger": ledger.to_json()})
        return
    click.echo(f"OK: {result.size} entries, root {result.root.hex()}")
    click.echo(
        f"ledger: {ledger.debits} debits (ε {ledger.to_json()['epsilon']}), each matched by "
        "its query.accepted entry: OK"
    )
    for source, size in result.checkpoints:
        if source == "rotation":
            click.echo(f"key rotation at entry {size}: signed by the old and the new key, "
                       "root: OK")  # fmt: skip
            continue
        what = "stored" if source == "stored" else f"published ({checkpoint_file})"
        click.echo(f"signature and root of the {what} checkpoint at size {size}: OK")
    if not result.checkpoints:
        click.echo("no signed checkpoint yet (run `safesetting audit checkpoint`)")
    if len(result.keys) > 1:
        for period in result.keys:
            until = "now" if period.end is None else period.end
            click.echo(f"key {period.key.key_id.hex()} signs sizes {period.start} to {until}")


@audit_group.command(name="checkpoint")
@click.option("--public-key", "show_key", is_flag=True, help="Print the verifier key instead.")
@json_option
@pass_context
@handle_errors
def checkpoint_command(ctx: Context, show_key: bool, as_json: bool) -> None:
    """Print the latest signed checkpoint (signing the current tree head if needed).

    Publish it, and the public key from --public-key, somewhere the operators cannot
    rewrite: a later `audit verify --checkpoint FILE` then proves the log only grew.
    """
    remote = _remote()
    if remote is not None:
        verifier = verifier_text(remote.public_key())
        if show_key:
            click.echo(verifier)
            return
        cp = open_checkpoint(remote.checkpoint(), verifier)
    else:
        log = _log(ctx)
        if show_key:
            click.echo(log.verifier())
            return
        # Signing needs the key in force (the log's own, after any rotation), not merely a key.
        cp = log.sign_checkpoint()
    if as_json:
        body = {"origin": cp.origin, "tree_size": cp.size, "root_hash": cp.root.hex()}
        print_json({**body, "note": cp.note})
        return
    click.echo(cp.note, nl=False)


@audit_group.command(name="keys")
@json_option
@pass_context
@handle_errors
def keys_command(ctx: Context, as_json: bool) -> None:
    """Every key the log has been signed with, and the tree sizes each signs.

    A key rotation (`safesetting admin key rotate`) hands signing to a new key at the size
    of its audit entry, whose checkpoint both keys sign: publish each key as it comes.
    With SAFESETTING_URL set, asks the server (GET /v1/audit/public-keys).
    """
    remote = _remote()
    body = remote.public_keys() if remote is not None else _log(ctx).published_keys()
    if as_json:
        print_json(body)
        return
    for item in body["keys"]:
        until = "now" if item["until_size"] is None else item["until_size"]
        click.echo(f"{item['public_key']}  sizes {item['from_size']} to {until}")


@audit_group.command(name="prove")
@click.argument("seq", type=click.IntRange(min=1))
@click.option("--size", type=click.IntRange(min=1), help="Tree size to prove against.")
@token_option
@json_option
@pass_context
@handle_errors
def prove_command(
    ctx: Context, seq: int, size: int | None, token: str | None, as_json: bool
) -> None:
    """Inclusion proof that entry SEQ is in the log, checkable by anyone.

    Over HTTP a researcher may prove their own entries; auditors and admins any.
    """
    remote = _remote(token)
    if remote is None:
        bundle = _log(ctx).inclusion(seq, size)
    else:
        with proof_errors():  # the server's answer, read as a local proof's would be
            bundle = remote.inclusion(seq, size)
    if as_json:
        print_json(bundle)
        return
    console.print(f"entry {seq} (leaf {seq - 1}) in a tree of {bundle['tree_size']} entries")
    console.print(f"entry:     {bundle['entry']}", soft_wrap=True)
    console.print(f"leaf hash: {bundle['leaf_hash']}")
    for i, p in enumerate(bundle["proof"]):
        console.print(f"proof[{i}]:  {p}")
    console.print(f"root:      {bundle['root_hash']}")
    if bundle["checkpoint"]:
        click.echo(f"\n{bundle['checkpoint']}", nl=False)


@audit_group.command(name="consistency")
@click.argument("old", type=click.IntRange(min=0))
@click.argument("new", type=click.IntRange(min=0), required=False)
@json_option
@pass_context
@handle_errors
def consistency_command(ctx: Context, old: int, new: int | None, as_json: bool) -> None:
    """Proof that the log at size OLD is a prefix of the log at NEW (default: latest)."""
    remote = _remote()
    if remote is None:
        bundle = _log(ctx).consistency(old, new)
    else:
        try:
            bundle = remote.consistency(old, new)
        except ValueError as exc:  # an answer that is not JSON
            raise UsageError(str(exc)) from exc
    if not bundle["consistent"]:
        raise IntegrityError(f"the log at {old} is not a prefix of the log at {new}")
    if as_json:
        print_json(bundle)
        return
    console.print(f"size {old} → {bundle['new_size']}: consistent")
    console.print(f"old root: {bundle['old_root_hash']}\nnew root: {bundle['new_root_hash']}")
    for i, p in enumerate(bundle["proof"]):
        console.print(f"proof[{i}]: {p}")


@audit_group.command(name="export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl"]),
    default="jsonl",
    show_default=True,
    help="Export format.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout)."
)
@pass_context
@handle_errors
def export_command(ctx: Context, fmt: str, out: Path | None) -> None:
    """Export every entry, its leaf hash, the signed checkpoint and the public key as JSON
    lines, so a third party can verify the log offline (see README, "Auditing")."""
    log = _log(ctx)
    if out is None:
        log.export(sys.stdout)
        return
    cp = log.export_to(out)
    click.echo(f"wrote {cp.size} entries and checkpoint to {out}", err=True)
