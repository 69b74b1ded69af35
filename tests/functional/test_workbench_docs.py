"""docs/WORKBENCH.md runs: every ```python block, in order, in one namespace, on a real home
with synthetic data — in this process on the home, and over HTTP against ``safesetting
serve`` — so the walkthrough a notebook user follows cannot drift from the code."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from safesetting import administration as admin
from safesetting.control import init_home, open_control
from safesetting.home import Home
from tests.server.conftest import FUTURE, start_server, stop_server

DOC = Path(__file__).resolve().parents[2] / "docs" / "WORKBENCH.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def blocks() -> list[str]:
    found = BLOCK.findall(DOC.read_text())
    assert len(found) >= 5  # the walkthrough is really here
    return found


@pytest.fixture
def trend_home(tmp_path, npd_small, monkeypatch) -> tuple[Home, str]:
    monkeypatch.delenv("SAFESETTING_DB_URL", raising=False)
    root = tmp_path / "home"
    root.mkdir()
    os.symlink(npd_small, root / "npd.duckdb")
    home = Home.resolve(root)
    init_home(home)
    control = open_control(home)
    token = admin.add_researcher(
        control, "ada", organisation="UCL", role="researcher", accredited_until=FUTURE
    ).token
    admin.approve_project(
        control, "fsm-trend", title="The FSM gap at KS2, 2019-2023", org_type="academic",
        purpose="educational_research", tables=["census", "ks2"], budget_epsilon="5",
        expires=FUTURE, members=["ada"],
    )  # fmt: skip
    assert token is not None
    return home, token


@pytest.mark.parametrize("mode", ["local", "http"])
def test_the_workbench_walkthrough_runs(trend_home, monkeypatch, tmp_path, mode):
    home, token = trend_home
    monkeypatch.setenv("SAFESETTING_TOKEN", token)
    monkeypatch.setenv("SAFESETTING_HOME", str(home.root))
    monkeypatch.delenv("SAFESETTING_URL", raising=False)
    served = None
    if mode == "http":
        served = start_server(home, log=tmp_path / "serve.log")
        monkeypatch.setenv("SAFESETTING_URL", served.url)
        monkeypatch.setenv("SAFESETTING_HOME", str(tmp_path / "no-home-here"))
    namespace: dict[str, object] = {}
    try:
        for i, code in enumerate(blocks()):
            exec(compile(code, f"{DOC.name} block {i + 1}", "exec"), namespace)  # noqa: S102
        bench = namespace["bench"]
        assert type(bench.backend).__name__ == ("HttpBackend" if served else "LocalBackend")  # type: ignore[attr-defined]
        assert bench.budget("fsm-trend")["epsilon_spent"] == 1  # type: ignore[attr-defined]
    finally:
        if served is not None:
            stop_server(served)
