"""Tokens: shown once, stored as a digest, revocable, expiring; roles enforced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from safesetting.errors import AuthenticationError, PermissionDeniedError
from safesetting.store import authenticate, issue_token, revoke_tokens, token_digest
from safesetting.store import tables as t
from safesetting.store.auth import active_token_count
from tests.unit.store.test_registry import NOW, add_ada


def _code(info):
    return [r.code for r in info.value.reasons]


def test_token_is_stored_only_as_digest(engine):
    with engine.begin() as conn:
        add_ada(conn)
        token = issue_token(conn, "ada", now=NOW)
    assert token.startswith("sst_")
    assert len(token) > 40
    with engine.connect() as conn:
        stored = conn.execute(sa.select(t.tokens.c.digest)).scalars().all()
        assert stored == [token_digest(token)]
        assert authenticate(conn, token, now=NOW).id == "ada"


def test_tokens_differ(engine):
    with engine.begin() as conn:
        add_ada(conn)
        assert issue_token(conn, "ada", now=NOW) != issue_token(conn, "ada", now=NOW)
        assert active_token_count(conn, "ada", now=NOW) == 2


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, "no_token"),
        ("", "no_token"),
        ("sst_nope", "unknown_token"),
        ("x" * 5000, "unknown_token"),
    ],
)
def test_missing_and_unknown_tokens(engine, token, code):
    with engine.connect() as conn, pytest.raises(AuthenticationError) as info:
        authenticate(conn, token)
    assert _code(info) == [code]


def test_overlong_token_with_known_prefix_is_unknown(engine):
    with engine.begin() as conn:
        add_ada(conn)
        token = issue_token(conn, "ada", now=NOW)
        with pytest.raises(AuthenticationError, match="unknown"):
            authenticate(conn, token + "x" * 300, now=NOW)


def test_revoked_token(engine):
    with engine.begin() as conn:
        add_ada(conn)
        token = issue_token(conn, "ada", now=NOW)
        assert revoke_tokens(conn, "ada", now=NOW) == [token_digest(token)[:12]]
        assert revoke_tokens(conn, "ada", now=NOW) == []
        with pytest.raises(AuthenticationError, match="revoked") as info:
            authenticate(conn, token, now=NOW)
        assert _code(info) == ["token_revoked"]
        assert active_token_count(conn, "ada", now=NOW) == 0


def test_expired_token(engine):
    with engine.begin() as conn:
        add_ada(conn)
        token = issue_token(conn, "ada", now=NOW, expires_at=NOW + timedelta(days=1))
    with engine.connect() as conn:
        assert authenticate(conn, token, now=NOW + timedelta(hours=23)).id == "ada"
        with pytest.raises(AuthenticationError, match="expired"):
            authenticate(conn, token, now=NOW + timedelta(days=1))
        assert active_token_count(conn, "ada", now=NOW + timedelta(days=2)) == 0


def test_wrong_role(engine):
    with engine.begin() as conn:
        add_ada(conn, "aud", role="auditor")
        token = issue_token(conn, "aud", now=NOW)
        with pytest.raises(PermissionDeniedError) as info:
            authenticate(conn, token, now=NOW)
        assert _code(info) == ["wrong_role"]
        assert authenticate(conn, token, roles=("auditor",), now=NOW).role == "auditor"


def test_default_now_is_the_clock(engine):
    with engine.begin() as conn:
        add_ada(conn)
        past = datetime.now(UTC) - timedelta(seconds=1)
        token = issue_token(conn, "ada", now=past, expires_at=past)
        with pytest.raises(AuthenticationError, match="expired"):
            authenticate(conn, token)
