"""Tokens: random, shown once, stored only as a SHA-256 digest; revocable, optionally expiring."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection
from datetime import UTC, datetime

import sqlalchemy as sa

from policies.reasons import reason
from safesetting.errors import AuthenticationError, PermissionDeniedError
from safesetting.store import tables as t
from safesetting.store.registry import Researcher, get_researcher, utc

TOKEN_PREFIX = "sst_"  # noqa: S105 - a visible prefix, not a secret
TOKEN_BYTES = 32  # 256 bits of randomness
_MAX_TOKEN_CHARS = 200


def token_digest(token: str) -> str:
    """SHA-256 hex digest of a token: what the database stores.

    >>> token_digest("sst_x")[:12]
    '64fe5aabdcc0'
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_ref(digest: str) -> str:
    """A short, non-secret name for a token (for the audit log and listings)."""
    return digest[:12]


def issue_token(
    conn: sa.Connection,
    researcher_id: str,
    *,
    now: datetime,
    expires_at: datetime | None = None,
) -> str:
    """Create a token for a researcher and return it: the only time it exists in clear."""
    get_researcher(conn, researcher_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    conn.execute(
        sa.insert(t.tokens).values(
            digest=token_digest(token),
            researcher_id=researcher_id,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return token


def revoke_tokens(conn: sa.Connection, researcher_id: str, *, now: datetime) -> list[str]:
    """Revoke every live token of a researcher; return the refs of those revoked."""
    get_researcher(conn, researcher_id)
    live = sa.and_(t.tokens.c.researcher_id == researcher_id, t.tokens.c.revoked_at.is_(None))
    digests = list(conn.execute(sa.select(t.tokens.c.digest).where(live)).scalars())
    conn.execute(sa.update(t.tokens).where(live).values(revoked_at=now))
    return [token_ref(d) for d in sorted(digests)]


def active_token_count(conn: sa.Connection, researcher_id: str, *, now: datetime) -> int:
    rows = conn.execute(
        sa.select(t.tokens.c.expires_at).where(
            t.tokens.c.researcher_id == researcher_id, t.tokens.c.revoked_at.is_(None)
        )
    ).scalars()
    return sum(1 for expires in rows if expires is None or (utc(expires) or now) > now)


def authenticate(
    conn: sa.Connection,
    token: str | None,
    *,
    roles: Collection[str] = ("researcher",),
    now: datetime | None = None,
) -> Researcher:
    """The researcher holding ``token``.

    :class:`AuthenticationError` for a missing, unknown, revoked or expired token (the caller
    audits these as ``auth.failed``); :class:`PermissionDeniedError` if the researcher's role
    is not in ``roles``. The token is looked up by digest and compared in constant time.
    """
    if not token:
        raise AuthenticationError(
            "no token: pass --token or set SAFESETTING_TOKEN", [reason("no_token")]
        )
    digest = token_digest(token[:_MAX_TOKEN_CHARS])
    row = conn.execute(sa.select(t.tokens).where(t.tokens.c.digest == digest)).first()
    if row is None or len(token) > _MAX_TOKEN_CHARS or not hmac.compare_digest(row.digest, digest):
        raise AuthenticationError("unknown token", [reason("unknown_token")])
    if row.revoked_at is not None:
        raise AuthenticationError(
            "this token has been revoked", [reason("token_revoked", researcher=row.researcher_id)]
        )
    moment = now or datetime.now(UTC)
    expires = utc(row.expires_at)
    if expires is not None and expires <= moment:
        raise AuthenticationError("this token has expired", [reason("token_expired")])
    researcher = get_researcher(conn, row.researcher_id)
    if researcher.role not in roles:
        raise PermissionDeniedError(
            f"role {researcher.role} may not do this (needs {' or '.join(sorted(roles))})",
            [reason("wrong_role", role=researcher.role)],
        )
    return researcher
