"""The review's attacks over HTTP: refused before any budget is spent, and a failure after
the debit is the same 500 whatever the data (SQLite and PostgreSQL)."""

from __future__ import annotations

import duckdb
import pytest

from safesetting.engine.planes.duckdb import DuckDBPlane
from tests.property.test_neighbours import FLAWED
from tests.server.test_api_contract import assert_envelope, entries, query


def budget(client, setting) -> float:
    r = client.get("/v1/projects/gaps/budget", headers=setting.headers("ada"))
    assert r.status_code == 200, r.text
    return r.json()["epsilon_spent"]


@pytest.mark.parametrize("sql", FLAWED.values(), ids=FLAWED.keys())
def test_each_flaw_is_refused_over_http(client, setting, sql):
    r = query(client, setting, sql=sql, epsilon=0.1)
    body = assert_envelope(r, 403, "denied")
    assert body["result"]["status"] == "denied"
    assert budget(client, setting) == 0
    assert [e["action"] for e in entries(client, setting)[-1:]] == ["query.denied"]


def test_a_failure_after_the_debit_is_a_fixed_500(client, setting, monkeypatch):
    def explode(*_args, **_kwargs):
        raise duckdb.ConversionException("Could not convert string 'ASD' to INT32")

    monkeypatch.setattr(DuckDBPlane, "run", explode)
    r = query(client, setting, epsilon=0.1)
    body = assert_envelope(r, 500, "internal")
    assert body["error"]["message"] == (
        f"internal error (incident {body['incident']}): the query could not be answered; "
        "the epsilon it was charged stays spent"
    )
    assert "ASD" not in r.text
    assert "INT32" not in r.text
    assert body["incident"] in (setting.home.root / "incidents.log").read_text()
    assert budget(client, setting) == 0.1


@pytest.mark.parametrize("epsilon", ["1e99999999", "1e-99999999", "-1e99999999", 1e308])
def test_an_epsilon_built_to_exhaust_a_worker_is_a_prompt_audited_422(client, setting, epsilon):
    """`1e99999999` made the ε parser build a hundred-million-digit number under the GIL: the
    worker was killed with requests in flight and nothing on the record."""
    before = len(entries(client, setting))
    r = query(client, setting, epsilon=epsilon)
    body = assert_envelope(r, 422, "bad_input")
    assert "epsilon" in body["error"]["message"]
    new = entries(client, setting)[before:]
    assert [(e["action"], e["reasons"]) for e in new] == [("query.invalid", ["epsilon_invalid"])]
    assert budget(client, setting) == 0


@pytest.mark.parametrize(
    "epsilon", ["1_0", " 0.5", "0.5 ", "\u0661", "0x1", "1e", "--1", "Infinity"]
)
def test_epsilon_text_is_plain_ascii_decimal(client, setting, epsilon):
    """Python's Decimal takes underscores, spaces and any script's digits: the ε grammar
    does not, so what is charged is what an auditor reads."""
    r = query(client, setting, epsilon=epsilon)
    assert_envelope(r, 422, "bad_input")
    assert budget(client, setting) == 0


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) AS n FROM census GROUP BY " + "9" * 19_900,
        "SELECT SUM(ks2.read_score / " + "9" * 19_000 + ") AS s FROM ks2",
        "SELECT COUNT(*) AS n FROM census WHERE region = '" + "x" * 19_000 + "'",
    ],
)
def test_a_refusal_quotes_at_most_a_line_of_the_callers_sql(client, setting, sql):
    """A 20,000-character literal once came back whole in the refusal (a 40 KB body)."""
    r = query(client, setting, sql=sql, epsilon=0.1)
    assert r.status_code in (403, 422)
    assert len(r.content) < 2_000
