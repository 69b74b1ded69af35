"""Who is asking: authentication once per request, into a ``Caller`` every use case takes.

The server authenticates a request's token once (``SafeSettingApp.caller``, with failures
counted per client and window); the CLI in local mode once per command (``login``). Use
cases — queries, results, budgets — take the ``Caller`` and never see a token.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from policies.reasons import reason
from safesetting.errors import AuthenticationError, PermissionDeniedError
from safesetting.store.auth import authenticate
from safesetting.store.registry import Researcher


class Role(StrEnum):
    RESEARCHER = "researcher"
    AUDITOR = "auditor"
    ADMIN = "admin"


EVERYONE: tuple[Role, ...] = (Role.RESEARCHER, Role.AUDITOR, Role.ADMIN)
AUDITORS: tuple[Role, ...] = (Role.AUDITOR, Role.ADMIN)
RESEARCHERS: tuple[Role, ...] = (Role.RESEARCHER,)


@dataclass(frozen=True)
class Caller:
    """An authenticated token's holder (the token itself is not kept)."""

    researcher: Researcher

    @property
    def id(self) -> str:
        return self.researcher.id

    @property
    def role(self) -> Role:
        return Role(self.researcher.role)

    @property
    def actor(self) -> str:
        """How the audit log names them."""
        return f"researcher:{self.id}"

    def may(self, roles: Collection[Role]) -> bool:
        return self.role in roles

    def require(self, roles: Collection[Role]) -> None:
        """``PermissionDeniedError`` (``wrong_role``) unless the caller has one of ``roles``."""
        if not self.may(roles):
            raise wrong_role(self.role, roles)


def wrong_role(role: str, roles: Collection[Role]) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"role {role} may not do this (needs {' or '.join(sorted(roles))})",
        [reason("wrong_role", role=role)],
    )


def identify(control, token: str | None) -> Caller:  # noqa: ANN001 - a Control
    """The holder of ``token``, whatever their role, accredited today (the server's check,
    on every endpoint). ``AuthenticationError`` for a missing, unknown, revoked or expired
    token; ``PermissionDeniedError`` for an expired accreditation, with ``researcher_id``
    set on it so that the failure can be audited under their name. Not audited here."""
    with control.reader() as conn:
        researcher = authenticate(conn, token, roles=EVERYONE)
    if researcher.accredited_until < control.today():
        exc = PermissionDeniedError(
            f"the accreditation of {researcher.id} has expired",
            [reason("accreditation_expired", researcher=researcher.id,
                    date=researcher.accredited_until.isoformat())],
        )  # fmt: skip
        exc.researcher_id = researcher.id  # type: ignore[attr-defined]
        raise exc
    return Caller(researcher)


def login(control, token: str | None, roles: Collection[Role] = EVERYONE, *,  # noqa: ANN001
          project: str | None = None) -> Caller:  # fmt: skip
    """The holder of ``token`` if their role is one of ``roles``. A failure is audited
    ``auth.failed`` — by ``researcher:<id>`` when the token was recognised (a wrong role),
    ``anonymous`` otherwise, with the project named in the request, never on the entry: an
    unauthenticated caller must not write to any project's public record — and re-raised."""
    researcher: Researcher | None = None
    try:
        with control.reader() as conn:
            researcher = authenticate(conn, token, roles=EVERYONE)
        caller = Caller(researcher)
        caller.require(roles)
        return caller
    except (AuthenticationError, PermissionDeniedError) as exc:
        with control.transaction() as conn:
            control.record(
                conn,
                "auth.failed",
                actor=f"researcher:{researcher.id}" if researcher else "anonymous",
                request={"project": project} if project else None,
                decision="denied",
                reasons=[r.code for r in exc.reasons],
            )
        raise
