"""The service's limits (policy.toml [limits]): rates per client and per token (429 with
Retry-After), failed logins counted per window, a cap on each researcher's running queries,
a cost limit known before running, one charge for identical questions in flight, and fresh
queries stopped (503) after the data could not be read for a paid-for query."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import sqlalchemy as sa

import audit
from safesetting.control import open_control
from safesetting.engine.planes.duckdb import DuckDBPlane
from safesetting.engine.snapshot import DataUnavailableError
from safesetting.server import create_app
from safesetting.service import QueryService, halted_by
from safesetting.store import tables as t
from tests.server.conftest import SQL, InProcessTransport, populate, set_limits


def app_client(setting) -> httpx.Client:
    transport = InProcessTransport(create_app(setting.home))
    return httpx.Client(transport=transport, base_url="http://safesetting.test")


@pytest.fixture
def limited(tmp_path, npd_small, db_url):  # noqa: ARG001 - db_url sets the env
    def make(**limits):
        setting = populate(tmp_path / "home", npd_small, budget="5")
        set_limits(setting.home, {k: str(v) for k, v in limits.items()})
        return setting

    return make


def entries(setting, action: str | None = None) -> list[audit.AuditEntry]:
    with open_control(setting.home).reader() as conn:
        return audit.read_entries(conn, action=action)


def ledger_total(setting) -> int:
    with open_control(setting.home).reader() as conn:
        return int(conn.execute(sa.select(sa.func.sum(t.ledger.c.epsilon_micro))).scalar() or 0)


def ask(http, setting, who="ada", sql=SQL, project="gaps", **extra):
    body = {"sql": sql, "project": project, "epsilon": "0.1", **extra}
    return http.post("/v1/queries", json=body, headers=setting.headers(who))


# --- rates --------------------------------------------------------------------------------


def test_a_client_over_its_rate_gets_429_with_retry_after(limited):
    setting = limited(requests_per_second_per_client=0.01, burst_per_client=5)
    with app_client(setting) as http:
        answers = [http.get("/v1/catalogue") for _ in range(6)]
    assert [r.status_code for r in answers] == [200] * 5 + [429]
    last = answers[-1]
    assert last.json()["error"]["kind"] == "rate_limited"
    assert int(last.headers["Retry-After"]) >= 1
    assert last.headers["X-Content-Type-Options"] == "nosniff"  # the usual headers still


def test_a_token_over_its_rate_is_limited_and_other_tokens_are_not(limited):
    setting = limited(requests_per_second_per_token=0.01, burst_per_token=3)
    with app_client(setting) as http:
        mine = [http.get("/v1/projects/gaps/budget", headers=setting.headers("ada"))
                for _ in range(4)]  # fmt: skip
        theirs = http.get("/v1/projects/other/budget", headers=setting.headers("bob"))
    assert [r.status_code for r in mine] == [200, 200, 200, 429]
    assert "this token" in mine[-1].json()["error"]["message"]
    assert theirs.status_code == 200


def test_a_bad_token_flood_is_one_entry_per_client_per_window(limited):
    """~300 entries a second from anonymous bad tokens: now the first attempt is on the
    record at once and the rest of the window is one entry with their number."""
    setting = limited(failed_login_window_seconds=60)
    app = create_app(setting.home)
    state = app.state.safesetting
    now = [time.time()]
    state.failed_logins.clock = lambda: now[0]
    before = len(entries(setting, "auth.failed"))
    with httpx.Client(transport=InProcessTransport(app), base_url="http://x") as http:
        for k in range(50):
            r = http.get("/v1/projects/gaps/budget", headers={"Authorization": f"Bearer bad{k}"})
            assert r.status_code == 401
        assert len(entries(setting, "auth.failed")) == before + 1
        now[0] += 61  # the window closes
        state.write_summaries(state.failed_logins.due())
        r = http.get("/v1/catalogue", headers={"Authorization": "Bearer bad"})  # public: no auth
    logged = entries(setting, "auth.failed")[before:]
    assert len(logged) == 2
    first, summary = logged
    assert first.request["client"] == summary.request["client"] == "127.0.0.1"
    assert summary.request["attempts"] == 49
    assert summary.request["window_seconds"] == 60
    assert list(summary.reasons) == ["unknown_token"]


# --- running queries ----------------------------------------------------------------------


class Gate:
    """Holds a query between its debit and its answer, as a slow query would."""

    def __init__(self, monkeypatch) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        original = QueryService._answer

        def held(service, *args, **kwargs):
            self.entered.set()
            assert self.release.wait(30)
            return original(service, *args, **kwargs)

        monkeypatch.setattr(QueryService, "_answer", held)


def test_a_researcher_has_at_most_the_cap_of_queries_running(limited, monkeypatch):
    setting = limited(concurrent_queries_per_researcher=1)
    gate = Gate(monkeypatch)
    service = QueryService(open_control(setting.home))
    token = setting.tokens["ada"]
    first: list = []
    runner = threading.Thread(
        target=lambda: first.append(service.submit(service.login(token), SQL, "gaps", "0.1"))
    )
    runner.start()
    try:
        assert gate.entered.wait(30)
        other = SQL.replace("2019", "2018")
        second = service.submit(service.login(token), other, "gaps", "0.1")
    finally:
        gate.release.set()
        runner.join(30)
    assert first[0].status == "released"
    assert second.status == "denied"
    assert [r.code for r in second.reasons] == ["too_many_queries"]
    assert ledger_total(setting) == 100_000  # the refused one paid nothing
    # Finished, the researcher may ask again.
    assert (
        service.submit(service.login(token), SQL.replace("2019", "2018"), "gaps", "0.1").status
        == "released"
    )


def test_identical_questions_in_flight_together_are_charged_once(limited, monkeypatch):
    setting = limited()
    gate = Gate(monkeypatch)
    service = QueryService(open_control(setting.home))
    token = setting.tokens["ada"]
    results: dict[str, object] = {}
    first = threading.Thread(
        target=lambda: results.update(a=service.submit(service.login(token), SQL, "gaps", "0.1"))
    )
    first.start()
    assert gate.entered.wait(30)
    second = threading.Thread(
        target=lambda: results.update(b=service.submit(service.login(token), SQL, "gaps", "0.1"))
    )
    second.start()
    time.sleep(0.5)
    assert "b" not in results  # waiting for the first, not paying for its own
    gate.release.set()
    first.join(30)
    second.join(30)
    a, b = results["a"], results["b"]
    assert a.status == "released"
    assert b.status == "cached"
    assert b.epsilon_spent == 0
    assert b.rows == a.rows
    assert ledger_total(setting) == 100_000
    actions = [e.action for e in entries(setting) if e.action.startswith("query.")]
    assert actions == ["query.accepted", "query.released", "query.cached"]


def test_a_query_over_the_cost_limit_is_refused_before_anything_is_spent(limited):
    setting = limited(max_query_cost=1000)
    with app_client(setting) as http:
        fresh = ask(http, setting)
        dry = ask(http, setting, dry_run=True)
    for r in (fresh, dry):
        assert r.status_code == 403
        assert [x["code"] for x in r.json()["reasons"]] == ["query_too_costly"]
    assert ledger_total(setting) == 0
    assert [list(e.reasons) for e in entries(setting, "query.denied")] == [["query_too_costly"]] * 2


def test_the_cost_is_known_from_the_query_and_the_policy_alone(limited, monkeypatch):
    """The same question is refused or not whatever the rows hold: rows is the declared
    population times the rows one pupil may give, never a count from the data."""
    setting = limited(max_query_cost=10**18)
    service = QueryService(open_control(setting.home))
    session = service.session()
    prepared = session.prepare(SQL)
    plan, info = prepared.plan, session.info
    cells, aggs = plan.n_cells, len(plan.aggregates)
    expected = cells * aggs * info.pupils * prepared.compiled.bound.rows
    estimate = session.estimate(prepared, 500_000)

    def limit(cost: int):
        limits = service.policy.limits.model_copy(update={"max_query_cost": cost})
        monkeypatch.setattr(service, "policy", service.policy.model_copy(update={"limits": limits}))

    assert estimate.cost == expected
    limit(expected)
    assert service._too_costly(estimate) is None
    limit(expected - 1)
    assert service._too_costly(estimate).code == "query_too_costly"


# --- a read failure after the debit ---------------------------------------------------------


def test_a_read_failure_after_the_debit_stops_fresh_queries_until_resumed(
    limited, monkeypatch, runner
):
    from safesetting.cli import cli as main

    setting = limited()
    with app_client(setting) as http:
        assert ask(http, setting).status_code == 200  # released, so cached from now on

        def unreadable(*_args, **_kwargs):
            # What the plane raises when DuckDB cannot read the snapshot (IOException).
            raise DataUnavailableError("the engine could not read the data (IOException)")

        patch = monkeypatch.context()
        m = patch.__enter__()
        m.setattr(DuckDBPlane, "run", unreadable)
        failed = ask(http, setting, sql=SQL.replace("2019", "2018"))
        assert failed.status_code == 500
        assert "Input/output" not in failed.text
        incident = failed.json()["incident"]
        assert halted_by(setting.home) == incident
        spent = ledger_total(setting)
        stopped = ask(http, setting, sql=SQL.replace("2019", "2017"))
        assert stopped.status_code == 503
        assert stopped.json()["error"]["kind"] == "unavailable"
        assert incident in stopped.json()["error"]["message"]
        assert ledger_total(setting) == spent  # nothing charged while stopped
        assert ask(http, setting).json()["status"] == "cached"  # answers already paid for
        assert ask(http, setting, sql=SQL.replace("2019", "2016"), dry_run=True).status_code == 200
        patch.__exit__(None, None, None)
    assert [e.request["incident"] for e in entries(setting, "service.halted")] == [incident]
    result = runner.invoke(main, ["--home", str(setting.home.root), "admin", "resume", "--json"])
    assert result.exit_code == 0, result.output
    assert '"resumed": true' in result.output
    assert halted_by(setting.home) is None
    assert len(entries(setting, "service.resumed")) == 1
    with app_client(setting) as http:
        assert ask(http, setting, sql=SQL.replace("2019", "2017")).status_code == 200


def test_a_question_answered_since_the_cache_was_read_is_not_charged_again(limited, monkeypatch):
    """Red team: single flight charged the same question two to four times when the first
    copy finished between the second's cache read and its debit."""
    from safesetting.store import queries

    setting = limited()
    service = QueryService(open_control(setting.home))
    token = setting.tokens["ada"]
    first = service.submit(service.login(token), SQL, "gaps", "0.1")
    assert first.status == "released"
    real = queries.cached_result
    calls = []

    def stale_once(conn, key):
        calls.append(key)
        return None if len(calls) == 1 else real(conn, key)  # the first read misses it

    monkeypatch.setattr(queries, "cached_result", stale_once)
    again = service.submit(service.login(token), SQL, "gaps", "0.1")
    assert len(calls) == 2  # read again under the ledger's lock
    assert again.status == "cached"
    assert again.rows == first.rows
    assert ledger_total(setting) == 100_000


def test_waiting_on_an_identical_question_counts_against_the_cap(limited, monkeypatch):
    """Red team: requests waiting for an identical question were not capped; each held a
    worker thread for up to a minute."""
    setting = limited(concurrent_queries_per_researcher=1)
    gate = Gate(monkeypatch)
    service = QueryService(open_control(setting.home))
    token = setting.tokens["ada"]
    results: list = []

    def ask_same():
        results.append(service.submit(service.login(token), SQL, "gaps", "0.1"))

    threads = [threading.Thread(target=ask_same) for _ in range(3)]
    threads[0].start()
    assert gate.entered.wait(30)
    threads[1].start()
    time.sleep(0.5)  # now waiting on the first
    threads[2].start()
    threads[2].join(30)  # refused at once: the cap of one is taken by the waiter
    refused = results[-1]
    assert refused.status == "denied"
    assert [r.code for r in refused.reasons] == ["too_many_queries"]
    gate.release.set()
    for thread in threads[:2]:
        thread.join(30)
    assert sorted(r.status for r in results) == ["cached", "denied", "released"]
    assert ledger_total(setting) == 100_000


def test_the_token_bucket_is_the_token_however_the_header_is_spaced(limited):
    """Red team: `Bearer<N spaces>TOKEN` was a fresh bucket each time."""
    setting = limited(requests_per_second_per_token=0.01, burst_per_token=3)
    token = setting.tokens["ada"]
    with app_client(setting) as http:
        answers = [
            http.get("/v1/projects/gaps/budget", headers={"Authorization": f"{scheme}{token}"})
            for scheme in ("Bearer ", "Bearer  ", "bearer   ", "BEARER    ")
        ]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]


def test_a_recognised_callers_failures_are_counted_and_named(limited):
    """Red team: wrong-role and expired-accreditation failures wrote one entry per request,
    naming no one."""
    setting = limited()
    app = create_app(setting.home)
    before = len(entries(setting, "auth.failed"))
    with httpx.Client(transport=InProcessTransport(app), base_url="http://x") as http:
        for _ in range(20):
            r = http.get("/v1/audit/entries", headers=setting.headers("ada"))  # not an auditor
            assert r.status_code == 403
        r = ask(http, setting, who="aud")  # an auditor may not query
        assert r.status_code == 403
        assert [x["code"] for x in r.json()["reasons"]] == ["wrong_role"]
    app.state.safesetting.write_summaries(app.state.safesetting.failed_logins.due(everything=True))
    logged = entries(setting, "auth.failed")[before:]
    assert [(e.actor, (e.request or {}).get("attempts")) for e in logged] == [
        ("researcher:ada", None),
        ("researcher:aud", None),
        ("researcher:ada", 19),
    ]


def test_a_validation_error_quotes_at_most_40_characters_of_a_field_name(limited):
    setting = limited()
    with app_client(setting) as http:
        r = http.post(
            "/v1/queries",
            json={"sql": SQL, "project": "gaps", "x" * 30_000: 1},
            headers=setting.headers("ada"),
        )
        q = http.get("/v1/audit/proof/consistency", params={"old": 1, "w" * 7_000: 1})
    assert r.status_code == q.status_code == 422
    assert len(r.content) < 1_000
    assert len(q.content) < 1_000


def test_the_public_page_follows_the_log_without_rereading_it(limited):
    """The server keeps a tally of the log and reads only new entries for the public page:
    it must say what a full read says."""
    from safesetting.transparency import transparency_summary

    setting = limited()
    with app_client(setting) as http:
        first = http.get("/v1/transparency").json()
        assert ask(http, setting).status_code == 200
        assert ask(http, setting).status_code == 200  # cached
        assert ask(http, setting, sql="SELECT nope FROM census").status_code in (403, 422)
        second = http.get("/v1/transparency").json()
    full = transparency_summary(open_control(setting.home))
    gaps = [p for p in second["projects"] if p["id"] == "gaps"][0]
    assert gaps == [p for p in full["projects"] if p["id"] == "gaps"][0]
    assert gaps["queries"] != [p for p in first["projects"] if p["id"] == "gaps"][0]["queries"]
    assert second["queries"] == full["queries"]
