"""Projects are islands: someone else's project looks exactly like an unknown one, and one
project's release answers another's question only where the policy allows it — and then
names no query of the other project."""

from __future__ import annotations

import httpx
import pytest

from safesetting.server import create_app
from tests.server.conftest import InProcessTransport
from tests.server.test_api_contract import SQL, assert_envelope


def ask(client, setting, who, project, sql=SQL, epsilon="0.1"):
    body = {"sql": sql, "project": project, "epsilon": epsilon}
    return client.post("/v1/queries", json=body, headers=setting.headers(who))


def without_ids(r: httpx.Response) -> str:
    """The response with what differs per request anyway (its query id and log position)."""
    body = r.json()
    qid, seq = body["result"]["query_id"], body["result"]["audit_seq"]
    return r.text.replace(qid, "QID").replace(f'"audit_seq":{seq}', '"audit_seq":SEQ')


@pytest.mark.parametrize(
    "sql",
    [
        SQL,  # would be allowed on bob's project
        "SELECT nationality, COUNT(*) FROM census GROUP BY nationality",  # needs approval
        "SELECT COUNT(*) FROM exclusions",  # a table bob's project is not approved for
    ],
)
def test_someone_elses_project_is_byte_for_byte_an_unknown_one(client, setting, sql):
    client.post(
        "/v1/queries", json={"sql": SQL, "project": "other"}, headers=setting.headers("bob")
    )  # fmt: skip - bob has spent something
    theirs = ask(client, setting, "ada", "other", sql)
    unknown = ask(client, setting, "ada", "nosuch", sql.replace("other", "nosuch"))
    assert theirs.status_code == unknown.status_code == 403
    assert without_ids(theirs) == without_ids(unknown).replace("nosuch", "other")
    body = theirs.json()
    assert body["result"]["budget_remaining"] is None
    assert [r["code"] for r in body["reasons"]] == ["not_a_member"]


def test_one_projects_release_does_not_answer_another_project(client, setting):
    first = ask(client, setting, "ada", "gaps")
    assert first.json()["status"] == "released"
    again = ask(client, setting, "ada", "gaps")
    assert again.json()["status"] == "cached"
    assert first.json()["query_id"] in " ".join(again.json()["notes"])
    other = ask(client, setting, "bob", "other")
    body = other.json()
    assert body["status"] == "released"  # asked afresh, and paid for
    assert body["epsilon_spent"] == 0.1
    assert first.json()["query_id"] not in other.text


def test_shared_releases_name_no_other_projects_query(setting):
    policy = setting.home.policy
    policy.write_text(
        policy.read_text().replace("share_across_projects = false", "share_across_projects = true")
    )
    transport = InProcessTransport(create_app(setting.home))
    with httpx.Client(transport=transport, base_url="http://safesetting.test") as client:
        first = ask(client, setting, "ada", "gaps")
        assert first.json()["status"] == "released"
        other = ask(client, setting, "bob", "other")
        body = other.json()
        assert body["status"] == "cached"
        assert body["epsilon_spent"] == 0
        assert body["project"] == "other"
        assert "answered from the cache (first released to another project)" in body["notes"]
        assert first.json()["query_id"] not in other.text
        assert "gaps" not in other.text


def test_refusals_for_a_non_member_do_not_reveal_the_budget(client, setting):
    r = ask(client, setting, "ada", "other", epsilon="0.9")
    body = assert_envelope(r, 403, "denied")
    assert "budget" not in r.text.replace("budget_remaining", "")
    assert body["result"]["budget_remaining"] is None


def test_a_non_member_cannot_write_to_another_projects_public_record(client, setting):
    """Refused and unusable requests naming someone else's project used to be logged under
    that project, and the public transparency page counted them as its queries."""
    from tests.server.test_api_contract import entries

    def record(project: str) -> dict:
        page = client.get("/v1/transparency").json()
        return next(p for p in page["projects"] if p["id"] == project)

    before = record("other")
    ask(client, setting, "ada", "other")  # refused: not a member
    ask(client, setting, "ada", "other", sql="SELEC nonsense")  # unusable SQL
    ask(client, setting, "ada", "other", epsilon="abc")  # unusable ε
    client.post("/v1/queries", json={"sql": SQL, "project": "other"},
                headers={"Authorization": "Bearer sst_forged"})  # fmt: skip
    assert record("other") == before
    logged = entries(client, setting)
    assert logged[-1]["action"] == "auth.failed"
    assert logged[-1]["project"] is None
    attempts = [e for e in logged if (e["request"] or {}).get("project")]
    assert len(attempts) == 3
    assert {e["action"] for e in attempts} <= {"query.denied", "query.invalid"}
    assert all(e["project"] is None for e in attempts)
    assert {e["request"]["project"] for e in attempts} == {"other"}


def test_someone_elses_query_id_is_an_unknown_one(client, setting):
    theirs = ask(client, setting, "bob", "other").json()["query_id"]
    mine = client.get(f"/v1/queries/{theirs}", headers=setting.headers("ada"))
    unknown = client.get("/v1/queries/" + "0" * 20, headers=setting.headers("ada"))
    assert mine.status_code == unknown.status_code == 404
    assert mine.text.replace(theirs, "QID") == unknown.text.replace("0" * 20, "QID")
