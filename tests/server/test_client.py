"""Client mode: the CLI with only SAFESETTING_URL and a token prints what local mode prints
(one real uvicorn on a free port); HttpBackend maps every error envelope back."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from safesetting.cli import cli
from safesetting.client import HttpBackend, UnreachableError
from safesetting.errors import (
    AuthenticationError,
    BudgetExhaustedError,
    NotFoundError,
    PermissionDeniedError,
    SafeSettingError,
    UsageError,
    envelope_for,
)
from safesetting.server import create_app
from tests.server.conftest import SQL, InProcessTransport, free_port, start_server, stop_server


def cli_run(runner, home, *args, env=None, code=0):
    result = runner.invoke(cli, ["--home", str(home), *args], env=env, catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    return result


def test_cli_over_http_matches_local_mode(runner, setting, tmp_path):
    served = start_server(setting.home, log=tmp_path / "server.log")
    nohome = tmp_path / "researcher-laptop"  # the client needs no home at all
    ada = {"SAFESETTING_URL": served.url, "SAFESETTING_TOKEN": setting.tokens["ada"]}
    local_ada = {"SAFESETTING_URL": "", "SAFESETTING_TOKEN": setting.tokens["ada"]}
    try:
        remote = json.loads(cli_run(runner, nohome, "query", SQL, "--project", "gaps",
                                    "--epsilon", "0.25", "--json", env=ada).stdout)  # fmt: skip
        assert remote["status"] == "released"
        home = setting.home.root
        args = ("query", SQL, "--project", "gaps", "--epsilon", "0.25", "--json")
        local = json.loads(cli_run(runner, home, *args, env=local_ada).stdout)
        assert local["status"] == "cached"
        assert set(local) == set(remote)
        for key in ("columns", "rows", "error", "epsilon", "contribution_bound", "data_version"):
            assert local[key] == remote[key], key
        text = cli_run(runner, nohome, "query", SQL, "--project", "gaps", "--epsilon", "0.25",
                       env=ada).stdout  # fmt: skip
        assert "cached" in text
        assert "budget left: 0.75" in text

        # Refused: exit 3, reasons on stderr, the result as JSON with --json.
        sql = "SELECT upn, COUNT(*) AS n FROM pupils GROUP BY upn"
        refused = cli_run(runner, nohome, "query", sql, "--project", "gaps", env=ada, code=3)
        assert "Refused" in refused.stderr
        assert "direct_identifier" in refused.stderr
        body = json.loads(cli_run(runner, nohome, "query", sql, "--project", "gaps", "--json",
                                  env=ada, code=3).stdout)  # fmt: skip
        assert body["status"] == "denied"
        # Unusable input: exit 2; no or bad token: exit 3 — as locally.
        bad = cli_run(runner, nohome, "query", "SELECT COUNT(* FROM census", "--project", "gaps",
                      env=ada, code=2)  # fmt: skip
        assert bad.stderr.startswith("Error: ")
        none = {**ada, "SAFESETTING_TOKEN": ""}
        assert "no token" in cli_run(runner, nohome, "query", SQL, "--project", "gaps",
                                     env=none, code=3).stderr  # fmt: skip
        envelope = json.loads(cli_run(runner, nohome, "query", SQL, "--project", "gaps", "--json",
                                      env=none, code=3).stdout)  # fmt: skip
        assert envelope["error"]["kind"] == "unauthenticated"

        # History: the same projects and queries in both modes.
        for args in (["projects"], ["queries", "list", "--project", "gaps"]):
            over_http = json.loads(cli_run(runner, nohome, *args, "--json", env=ada).stdout)
            here = json.loads(cli_run(runner, home, *args, "--json", env=local_ada).stdout)
            assert over_http == here
            assert next(iter(here.values()))  # not empty
        # Budget: same JSON and the same text in both modes.
        for extra in (["--json"], []):
            over_http = cli_run(runner, nohome, "budget", "--project", "gaps", *extra, env=ada)
            on_home = cli_run(runner, setting.home.root, "budget", "--project", "gaps", *extra,
                              env=local_ada)  # fmt: skip
            assert over_http.stdout == on_home.stdout
        cli_run(runner, nohome, "budget", "--project", "other", env=ada, code=3)

        # Audit reads over HTTP: checkpoint, log (auditor), prove (own entry), consistency.
        aud = {"SAFESETTING_URL": served.url, "SAFESETTING_TOKEN": setting.tokens["aud"]}
        local_aud = {"SAFESETTING_URL": "", "SAFESETTING_TOKEN": ""}
        cp_remote = cli_run(runner, nohome, "audit", "checkpoint", env=aud).stdout
        cp_local = cli_run(runner, setting.home.root, "audit", "checkpoint", env=local_aud).stdout
        assert cp_remote == cp_local
        key_remote = cli_run(runner, nohome, "audit", "checkpoint", "--public-key", env=aud)
        assert key_remote.stdout == cli_run(runner, setting.home.root, "audit", "checkpoint",
                                            "--public-key", env=local_aud).stdout  # fmt: skip
        log_remote = cli_run(runner, nohome, "audit", "log", "--json", env=aud).stdout
        log_local = cli_run(runner, setting.home.root, "audit", "log", "--json", env=local_aud)
        assert json.loads(log_remote) == json.loads(log_local.stdout)
        cli_run(runner, nohome, "audit", "log", env=ada, code=3)  # researchers cannot
        seq = str(remote["audit_seq"])
        proof = json.loads(cli_run(runner, nohome, "audit", "prove", seq, "--json", env=ada).stdout)
        assert proof["seq"] == remote["audit_seq"]
        consistent = cli_run(runner, nohome, "audit", "consistency", "1", env=aud).stdout
        assert "consistent" in consistent
        assert not nohome.exists()
    finally:
        stop_server(served)
    # The server is gone: one clear line, exit 1.
    gone = cli_run(runner, nohome, "query", SQL, "--project", "gaps", env=ada, code=1)
    assert gone.stderr == f"Error: cannot reach the safe setting at {served.url}\n"


def test_unreachable_and_timeout():
    with pytest.raises(UnreachableError, match="cannot reach"):
        HttpBackend(f"http://127.0.0.1:{free_port()}", "t").budget("gaps")
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        backend = HttpBackend(url, "t", timeout=httpx.Timeout(0.3))
        with pytest.raises(UnreachableError, match="timed out"):
            backend.budget("gaps")
    assert envelope_for(UnreachableError("x"))[1] == 1


@pytest.fixture
def backend_for(setting):
    transport = InProcessTransport(create_app(setting.home))
    clients = []

    def make(who: str | None) -> HttpBackend:
        c = httpx.Client(transport=transport, base_url="http://safesetting.test")
        clients.append(c)
        return HttpBackend("http://safesetting.test", setting.tokens.get(who), client=c)

    yield make
    for c in clients:
        c.close()


def test_backend_maps_each_envelope_to_its_error(backend_for, setting, monkeypatch):
    ada = backend_for("ada")
    released = ada.query(SQL, "gaps", "1", False)
    assert released.status == "released"
    assert ada.result(released.query_id).rows == released.rows
    denied = ada.query(SQL.replace("2019", "2018"), "gaps", "0.5", False)  # budget gone
    assert denied.status == "denied"
    assert [r.code for r in denied.reasons] == ["budget_exhausted"]
    cases = [
        (lambda: ada.query("SELECT COUNT(* FROM census", "gaps", None, False), UsageError),
        (lambda: ada.query(SQL, "gaps", "abc", False), UsageError),
        (lambda: ada.result("ffff"), NotFoundError),
        (lambda: ada.budget("other"), PermissionDeniedError),
        (lambda: backend_for(None).budget("gaps"), AuthenticationError),
        (lambda: backend_for("aud").query(SQL, "gaps", None, False), PermissionDeniedError),
        (lambda: ada.entries(), PermissionDeniedError),
    ]
    for call, error in cases:
        with pytest.raises(error) as caught:
            call()
        assert type(caught.value) is error
    assert backend_for("aud").budget("gaps")["budget_remaining"] == 0
    assert not isinstance(BudgetExhaustedError("x"), UsageError)
    # A 500 comes back as an internal error with the incident in its message (exit 1).
    state = ada._client._transport._asgi.app.state.safesetting
    monkeypatch.setattr(state.service, "get_result", lambda *_: 1 / 0)
    with pytest.raises(SafeSettingError, match="incident") as caught:
        ada.result(released.query_id)
    assert envelope_for(caught.value)[1] == 1
