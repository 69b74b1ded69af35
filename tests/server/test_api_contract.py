"""The HTTP contract: every endpoint, every status, one error envelope (SQLite and
PostgreSQL, in-process ASGI client)."""

from __future__ import annotations

import base64
import logging

import anyio.from_thread
import anyio.to_thread
import pytest

import audit
from safesetting.api.models import (
    BudgetBody,
    ErrorBody,
    ProjectsBody,
    QueriesBody,
    QueryResultBody,
)
from safesetting.errors import ErrorEnvelope
from safesetting.server import REQUEST_THREADS, create_app
from tests.server.conftest import SQL

ENVELOPE_KEYS = {"error", "reasons"}
OPTIONAL_KEYS = {"incident", "result"}


def assert_envelope(response, status: int, kind: str) -> dict:
    """Every error has the one shape built by ``api.errors.error_response``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert ENVELOPE_KEYS <= set(body) <= ENVELOPE_KEYS | OPTIONAL_KEYS, body
    assert set(body["error"]) == {"kind", "message"}
    assert body["error"]["kind"] == kind
    assert all(set(r) == {"code", "message"} for r in body["reasons"])
    assert "Traceback" not in response.text
    ErrorBody.model_validate(body)  # the body is what /openapi.json documents
    return body


def query(client, setting, who="ada", sql=SQL, **extra):
    body = {"sql": sql, "project": "gaps", **extra}
    return client.post("/v1/queries", json=body, headers=setting.headers(who))


def entries(client, setting, **params):
    r = client.get("/v1/audit/entries", params=params, headers=setting.headers("aud"))
    assert r.status_code == 200, r.text
    return r.json()["entries"]


# --- queries -----------------------------------------------------------------------------


def test_release_then_cache_then_read_again(client, setting):
    first = query(client, setting, epsilon="0.25")
    assert first.status_code == 200
    body = first.json()
    QueryResultBody.model_validate(body)
    assert body["status"] == "released"
    assert body["columns"] == ["region", "n"]
    assert len(body["rows"]) == 9
    assert len(body["error"]) == 9
    assert body["epsilon_spent"] == 0.25
    assert body["budget_remaining"] == 0.75
    again = query(client, setting, epsilon=0.25)  # a JSON number works as well
    assert again.status_code == 200
    assert again.json()["status"] == "cached"
    assert again.json()["rows"] == body["rows"]
    assert again.json()["epsilon_spent"] == 0
    read = client.get(f"/v1/queries/{body['query_id']}", headers=setting.headers("ada"))
    assert read.status_code == 200
    assert read.json()["rows"] == body["rows"]
    actions = [e["action"] for e in entries(client, setting, project="gaps")]
    assert actions[-3:] == ["query.accepted", "query.released", "query.cached"]


def test_dry_run_spends_nothing(client, setting):
    r = query(client, setting, epsilon="0.5", dry_run=True)
    assert r.status_code == 200
    assert r.json()["status"] == "dry_run"
    QueryResultBody.model_validate(r.json())
    assert r.json()["expected"]
    budget = client.get("/v1/projects/gaps/budget", headers=setting.headers("ada")).json()
    assert budget["epsilon_spent"] == 0


def test_policy_denial_is_403_with_the_result(client, setting):
    r = query(client, setting, sql="SELECT upn, COUNT(*) AS n FROM pupils GROUP BY upn")
    body = assert_envelope(r, 403, "denied")
    codes = {x["code"] for x in body["reasons"]}
    assert "direct_identifier" in codes
    result = body["result"]
    assert result["status"] == "denied"
    assert result["rows"] == []
    assert result["reasons"] == body["reasons"]
    denied = entries(client, setting, action="query.denied")
    assert denied[-1]["seq"] == result["audit_seq"]


def test_budget_exhausted_is_409(client, setting):
    assert query(client, setting, epsilon="1").json()["status"] == "released"
    r = query(client, setting, sql=SQL.replace("2019", "2020"), epsilon="0.1")
    body = assert_envelope(r, 409, "budget_exhausted")
    assert {x["code"] for x in body["reasons"]} == {"budget_exhausted"}
    assert body["result"]["status"] == "denied"
    assert body["result"]["budget_remaining"] == 0


def test_bad_sql_is_422(client, setting):
    r = query(client, setting, sql="SELECT COUNT(* FROM census")
    body = assert_envelope(r, 422, "bad_input")
    assert body["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"sql": SQL, "project": "gaps", "limit": 5}, "limit"),
        ({"sql": SQL}, "project"),
        ({"sql": SQL, "project": "gaps", "dry_run": "yes"}, "dry_run"),
        ({"sql": SQL, "project": "gaps", "epsilon": True}, "epsilon"),
        ({"sql": "", "project": "gaps"}, "sql"),
        ({"sql": "x" * 20_001, "project": "gaps"}, "sql"),
        ({"sql": SQL, "project": "../etc"}, "project"),
        ({"sql": SQL, "project": "gaps", "epsilon": "0.0000001"}, "epsilon"),
        ({"sql": SQL, "project": "gaps", "epsilon": "-1"}, "epsilon"),
    ],
)
def test_strict_request_model(client, setting, payload, where):
    r = client.post("/v1/queries", json=payload, headers=setting.headers("ada"))
    body = assert_envelope(r, 422, "bad_input")
    assert where in body["error"]["message"]
    # The offending input is never echoed back.
    assert "x" * 100 not in r.text


def test_body_size_limits(client, setting):
    big = b'{"sql": "' + b"x" * 70_000 + b'", "project": "gaps"}'
    headers = {**setting.headers("ada"), "content-type": "application/json"}
    assert_envelope(client.post("/v1/queries", content=big, headers=headers), 413, "too_large")

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"sql": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    r = client.post("/v1/queries", content=chunks(), headers=headers)
    assert_envelope(r, 413, "too_large")
    r = client.post("/v1/queries", content=b"{not json", headers=headers)
    assert_envelope(r, 422, "bad_input")


def test_unknown_query_route_and_method(client, setting):
    r = client.get("/v1/queries/abc123", headers=setting.headers("ada"))
    assert_envelope(r, 404, "not_found")
    assert_envelope(client.get("/v1/queries/NOT-HEX", headers=setting.headers("ada")), 422,
                    "bad_input")  # fmt: skip
    assert_envelope(client.get("/v2/anything"), 404, "not_found")
    assert_envelope(client.delete("/v1/catalogue"), 405, "method_not_allowed")


def test_internal_error_is_500_with_incident_only(client, setting, monkeypatch, caplog):
    app_state = client._transport._asgi.app.state.safesetting

    def explode(*_args, **_kwargs):
        raise RuntimeError("secret detail: pupil A123456789012")

    monkeypatch.setattr(app_state.service, "submit", explode)
    with caplog.at_level(logging.ERROR, logger="safesetting.server"):
        r = query(client, setting)
    body = assert_envelope(r, 500, "internal")
    assert body["incident"]
    assert body["incident"] in body["error"]["message"]
    assert "secret" not in r.text
    assert "RuntimeError" not in r.text
    logged = [rec for rec in caplog.records if body["incident"] in rec.getMessage()]
    assert logged
    assert logged[0].exc_info is not None
    # ... and the id leads the operator to the traceback in the home's incident log.
    incidents = (setting.home.root / "incidents.log").read_text()
    assert f"incident {body['incident']}: HTTP request" in incidents
    assert "RuntimeError: secret detail" in incidents


# --- budget, catalogue, audit, transparency ----------------------------------------------


def test_budget(client, setting):
    query(client, setting, epsilon="0.3")
    r = client.get("/v1/projects/gaps/budget", headers=setting.headers("ada"))
    assert r.status_code == 200
    BudgetBody.model_validate(r.json())
    assert r.json() == {
        "project": "gaps",
        "budget_epsilon": 1.0,
        "epsilon_spent": 0.3,
        "budget_remaining": 0.7,
        "dataset_epsilon_spent": 0.3,
        "dataset_epsilon_cap": 50.0,
    }


def test_my_projects_and_my_queries(client, setting):
    """Each researcher sees their own projects and queries only; auditors see all."""
    released = query(client, setting, epsilon="0.3").json()
    query(client, setting, who="bob", sql=SQL).json()  # bob is not on gaps: refused
    r = client.get("/v1/projects", headers=setting.headers("ada"))
    assert r.status_code == 200
    ProjectsBody.model_validate(r.json())
    assert [(p["project"], p["epsilon_spent"], p["budget_remaining"])
            for p in r.json()["projects"]] == [("gaps", 0.3, 0.7)]  # fmt: skip
    mine = client.get("/v1/queries", headers=setting.headers("ada")).json()
    QueriesBody.model_validate(mine)
    assert [(q["query_id"], q["project"], q["status"], q["epsilon"], q["columns"])
            for q in mine["queries"]] == [
        (released["query_id"], "gaps", "released", 0.3, released["columns"])
    ]  # fmt: skip
    assert client.get("/v1/queries", headers=setting.headers("bob")).json() == {"queries": []}
    assert client.get("/v1/queries?project=other",
                      headers=setting.headers("ada")).json() == {"queries": []}  # fmt: skip
    everyone = client.get("/v1/projects", headers=setting.headers("aud")).json()["projects"]
    assert sorted(p["project"] for p in everyone) == ["gaps", "other"]
    audited = client.get("/v1/queries?limit=5", headers=setting.headers("aud")).json()
    assert [q["researcher"] for q in audited["queries"]] == ["ada"]
    bad = client.get("/v1/queries?limit=0", headers=setting.headers("ada"))
    assert bad.status_code == 422
    assert client.get("/v1/projects").status_code == 401


def test_catalogue_is_metadata(client):
    r = client.get("/v1/catalogue")
    assert r.status_code == 200
    tables = {t["name"]: t for t in r.json()["tables"]}
    assert {"pupils", "census", "ks2", "ks4"} <= set(tables)
    upn = next(c for c in tables["pupils"]["columns"] if c["name"] == "upn")
    assert upn["class"] == "direct_identifier"
    assert upn["domain"] is None


def test_checkpoint_and_consistency_are_public_and_verify(client, setting):
    key = audit.VerifierKey.parse(client.get("/v1/audit/public-key").text)
    first = audit.open_checkpoint(client.get("/v1/audit/checkpoint").text, key)
    assert client.get("/v1/audit/checkpoint").headers["content-type"].startswith("text/plain")
    query(client, setting)
    second = audit.open_checkpoint(client.get("/v1/audit/checkpoint").text, key)
    assert second.size == first.size + 2  # accepted + released
    r = client.get("/v1/audit/proof/consistency", params={"old": first.size, "new": second.size})
    assert r.status_code == 200
    bundle = r.json()
    proof = [base64.b64decode(p) for p in bundle["proof"]]
    assert audit.verify_consistency(first.size, second.size, first.root, second.root, proof)
    r = client.get("/v1/audit/proof/consistency", params={"old": 5, "new": 2})
    assert_envelope(r, 422, "bad_input")
    r = client.get("/v1/audit/proof/consistency", params={"old": 1, "extra": 2})
    assert_envelope(r, 422, "bad_input")


def test_entries_filters(client, setting):
    query(client, setting)
    found = entries(client, setting, project="gaps", action="query.*")
    assert [e["action"] for e in found] == ["query.accepted", "query.released"]
    assert len(entries(client, setting, limit=2)) == 2
    assert entries(client, setting, since="2999-01-01") == []
    r = client.get("/v1/audit/entries", params={"limit": 0}, headers=setting.headers("aud"))
    assert_envelope(r, 422, "bad_input")


def test_inclusion_proof(client, setting):
    seq = query(client, setting).json()["audit_seq"]
    r = client.get("/v1/audit/proof/inclusion", params={"seq": seq}, headers=setting.headers("ada"))
    assert r.status_code == 200
    b = r.json()
    proof = [base64.b64decode(p) for p in b["proof"]]
    leaf = base64.b64decode(b["leaf_hash"])
    root = base64.b64decode(b["root_hash"])
    assert audit.leaf_hash(b["entry"].encode()) == leaf
    assert audit.verify_inclusion(leaf, seq - 1, b["tree_size"], proof, root)
    r = client.get("/v1/audit/proof/inclusion", params={"seq": 10_000},
                   headers=setting.headers("aud"))  # fmt: skip
    assert_envelope(r, 404, "not_found")


def test_transparency_summary_and_page(client, setting):
    query(client, setting)
    query(client, setting)
    query(client, setting, sql="SELECT upn, COUNT(*) AS n FROM pupils GROUP BY upn")
    r = client.get("/v1/transparency")
    assert r.status_code == 200
    s = r.json()
    gaps = next(p for p in s["projects"] if p["id"] == "gaps")
    assert gaps["queries"] == {"released": 1, "cached": 1, "denied": 1, "dry_run": 0,
                               "invalid": 0, "failed": 0}  # fmt: skip
    assert gaps["org_type"] == "academic"
    assert gaps["purpose"] == "educational_research"
    assert gaps["epsilon_spent"] == 0.5
    assert s["dataset"]["epsilon_spent"] == 0.5
    assert s["audit"]["checkpoint"]["tree_size"] == s["audit"]["entries"]
    assert "ada" not in r.text
    assert "bob" not in r.text
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Attainment gaps" in page.text
    assert "educational_research" in page.text


def test_openapi_documents_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/v1/queries", "/v1/queries/{query_id}", "/v1/projects/{project_id}/budget",
                 "/v1/projects",
                 "/v1/catalogue", "/v1/audit/entries", "/v1/audit/checkpoint",
                 "/v1/audit/proof/inclusion", "/v1/audit/proof/consistency",
                 "/v1/transparency", "/"):  # fmt: skip
        assert path in paths, path
    post = paths["/v1/queries"]["post"]
    assert {"401", "403", "409", "422", "500"} <= set(post["responses"])
    schema = spec["components"]["schemas"]["QueryRequest"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["sql"]["maxLength"] == 20_000
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_error_envelope_matches_the_cli_envelope():
    """The server's body is ErrorEnvelope.to_json (plus result/incident): one shape."""
    assert set(ErrorEnvelope("bad_input", "m").to_json()) == ENVELOPE_KEYS


def test_security_headers_on_every_response(client, setting):
    big = b"x" * 70_000
    for r in (client.get("/"), client.get("/v1/transparency"), client.get("/nope"),
              query(client, setting), client.post("/v1/queries", content=big)):  # fmt: skip
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"].startswith("default-src 'none'")


def test_lifespan_bounds_the_request_threads(setting):
    app = create_app(setting.home)

    async def start() -> int:
        async with app.router.lifespan_context(app):
            return anyio.to_thread.current_default_thread_limiter().total_tokens

    # A portal thread of its own: other tests (Playwright) may hold this thread's loop.
    with anyio.from_thread.start_blocking_portal() as portal:
        assert portal.call(start) == REQUEST_THREADS


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/audit/proof/consistency", {"old": 2**63, "new": 2**64}),
        ("/v1/audit/proof/consistency", {"old": 1, "new": 2**63}),
        ("/v1/audit/proof/inclusion", {"seq": 2**63}),
        ("/v1/audit/proof/inclusion", {"seq": 1, "size": 10**30}),
    ],
)
def test_log_positions_beyond_any_log_are_a_422_not_a_500(client, setting, path, params):
    r = client.get(path, params=params, headers=setting.headers("aud"))
    body = assert_envelope(r, 422, "bad_input")
    assert "less than or equal to" in body["error"]["message"]


def test_two_authorization_headers_are_a_400(client, setting):
    headers = [
        ("Authorization", setting.headers("ada")["Authorization"]),
        ("Authorization", setting.headers("bob")["Authorization"]),
    ]
    r = client.get("/v1/projects/gaps/budget", headers=headers)
    body = assert_envelope(r, 400, "bad_request")
    assert body["error"]["message"] == "more than one Authorization header"
    one = client.get("/v1/projects/gaps/budget", headers=headers[:1])
    assert one.status_code == 200
