"""Identity and roles over HTTP: the role matrix, and every failed authentication audited."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

import audit
from safesetting import administration as admin
from safesetting.control import open_control
from safesetting.store import tables as t
from tests.server.conftest import SQL
from tests.server.test_api_contract import assert_envelope

# Every endpoint that needs a token, with a request that would otherwise succeed or 404.
AUTHENTICATED = [
    ("POST", "/v1/queries", {"json": {"sql": SQL, "project": "gaps"}}),
    ("GET", "/v1/queries/abc", {}),
    ("GET", "/v1/projects/gaps/budget", {}),
    ("GET", "/v1/audit/entries", {}),
    ("GET", "/v1/audit/proof/inclusion", {"params": {"seq": 1}}),
]
PUBLIC = [
    "/v1/catalogue", "/v1/audit/checkpoint", "/v1/audit/public-key",
    "/v1/audit/proof/consistency?old=1", "/v1/transparency", "/", "/openapi.json",
]  # fmt: skip


def auth_failures(client, setting) -> int:
    r = client.get("/v1/audit/entries", params={"action": "auth.failed"},
                   headers=setting.headers("aud"))  # fmt: skip
    return len(r.json()["entries"])


@pytest.mark.parametrize(("method", "path", "kwargs"), AUTHENTICATED)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer sst_not-a-real-token", "Basic YWRhOnB3", "Bearer " + "x" * 500]
)
def test_no_or_bad_token_is_401_and_audited(client, setting, method, path, kwargs, authorization):
    before = auth_failures(client, setting)
    headers = {"Authorization": authorization} if authorization else {}
    r = client.request(method, path, headers=headers, **kwargs)
    body = assert_envelope(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert body["reasons"][0]["code"] in {"no_token", "unknown_token"}
    assert auth_failures(client, setting) == before + 1
    assert "sst_not-a-real-token" not in r.text


@pytest.mark.parametrize("path", PUBLIC)
def test_public_endpoints_need_no_token(client, path):
    assert client.get(path).status_code == 200


def test_revoked_token_is_401(client, setting):
    admin.revoke_researcher(open_control(setting.home), "ada")
    body = assert_envelope(
        client.post("/v1/queries", json={"sql": SQL, "project": "gaps"},
                    headers=setting.headers("ada")), 401, "unauthenticated",
    )  # fmt: skip
    assert body["reasons"][0]["code"] == "token_revoked"


def test_expired_token_is_401(client, setting):
    control = open_control(setting.home)
    with control.engine.begin() as conn:
        conn.execute(sa.update(t.tokens).values(expires_at=control.now().replace(year=2020)))
    r = client.get("/v1/projects/gaps/budget", headers=setting.headers("ada"))
    assert assert_envelope(r, 401, "unauthenticated")["reasons"][0]["code"] == "token_expired"


@pytest.mark.parametrize(("method", "path", "kwargs"), AUTHENTICATED)
def test_expired_accreditation_is_refused_everywhere_and_audited(
    client, setting, method, path, kwargs
):
    control = open_control(setting.home)
    with control.engine.begin() as conn:
        conn.execute(sa.update(t.researchers).where(t.researchers.c.id.in_(["ada", "aud"]))
                     .values(accredited_until=date(2020, 1, 1)))  # fmt: skip
    with control.engine.connect() as conn:
        before = len(audit.read_entries(conn, action="auth.failed"))
    for who in ("ada", "aud"):
        r = client.request(method, path, headers=setting.headers(who), **kwargs)
        body = assert_envelope(r, 403, "forbidden")
        assert [x["code"] for x in body["reasons"]] == ["accreditation_expired"]
    with control.engine.connect() as conn:
        assert len(audit.read_entries(conn, action="auth.failed")) == before + 2


def test_expired_project_is_a_policy_refusal(client, setting):
    control = open_control(setting.home)
    with control.engine.begin() as conn:
        conn.execute(sa.update(t.projects).where(t.projects.c.id == "gaps")
                     .values(expires=date(2020, 1, 1)))  # fmt: skip
    r = client.post("/v1/queries", json={"sql": SQL, "project": "gaps"},
                    headers=setting.headers("ada"))  # fmt: skip
    codes = {x["code"] for x in assert_envelope(r, 403, "denied")["reasons"]}
    assert "project_expired" in codes


def test_role_matrix(client, setting):
    h = setting.headers
    released = client.post("/v1/queries", json={"sql": SQL, "project": "gaps"}, headers=h("ada"))
    qid, seq = released.json()["query_id"], released.json()["audit_seq"]
    before = auth_failures(client, setting)
    # Only researchers query.
    for who in ("aud", "root"):
        r = client.post("/v1/queries", json={"sql": SQL, "project": "gaps"}, headers=h(who))
        assert assert_envelope(r, 403, "forbidden")["reasons"][0]["code"] == "wrong_role"
    # Only a member queries a project; an unknown project looks the same.
    for project in ("gaps", "no-such-project"):
        r = client.post("/v1/queries", json={"sql": SQL, "project": project}, headers=h("bob"))
        codes = {x["code"] for x in assert_envelope(r, 403, "denied")["reasons"]}
        assert "not_a_member" in codes
    # A researcher reads only their own results; auditors and admins any.
    assert_envelope(client.get(f"/v1/queries/{qid}", headers=h("bob")), 404, "not_found")
    for who in ("ada", "aud", "root"):
        assert client.get(f"/v1/queries/{qid}", headers=h(who)).status_code == 200
    # Budgets: members, auditors and admins; a researcher cannot probe other ids.
    for who in ("ada", "aud", "root"):
        assert client.get("/v1/projects/gaps/budget", headers=h(who)).status_code == 200
    for project in ("gaps", "nope"):
        r = client.get(f"/v1/projects/{project}/budget", headers=h("bob"))
        assert_envelope(r, 403, "forbidden")
    assert_envelope(client.get("/v1/projects/nope/budget", headers=h("aud")), 404, "not_found")
    # The log: auditors and admins only.
    for who in ("ada", "bob"):
        r = client.get("/v1/audit/entries", headers=h(who))
        assert assert_envelope(r, 403, "forbidden")["reasons"][0]["code"] == "wrong_role"
    for who in ("aud", "root"):
        assert client.get("/v1/audit/entries", headers=h(who)).status_code == 200
    # Inclusion proofs: a researcher for their own entries only.
    prove = "/v1/audit/proof/inclusion"
    assert client.get(prove, params={"seq": seq}, headers=h("ada")).status_code == 200
    assert_envelope(client.get(prove, params={"seq": seq}, headers=h("bob")), 404, "not_found")
    assert_envelope(client.get(prove, params={"seq": 1}, headers=h("ada")), 404, "not_found")
    assert client.get(prove, params={"seq": 1}, headers=h("aud")).status_code == 200
    # Wrong roles on query/log endpoints were audited (the budget's not_a_member is a denial).
    assert auth_failures(client, setting) == before + 4


def test_caller_text_never_reaches_the_log_of_a_failed_login(client, setting):
    before = auth_failures(client, setting)
    r = client.get("/v1/audit/entries", params={"project": "A123456789012"})
    assert_envelope(r, 401, "unauthenticated")
    assert auth_failures(client, setting) == before + 1
    found = client.get("/v1/audit/entries", params={"action": "auth.failed"},
                       headers=setting.headers("aud")).json()["entries"][-1]  # fmt: skip
    assert found["project"] is None
    assert found["request"] == {
        "method": "GET", "path": "/v1/audit/entries", "client": "127.0.0.1"
    }  # fmt: skip
