"""docs/WORKBENCH.md runs: every ```python block, in order, in one namespace, on a real home
with synthetic data — in this process on the home, and over HTTP against ``safesetting
serve`` — so the walkthrough a notebook user follows cannot drift from the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from safesetting import administration as admin
from safesetting.control import init_home, open_control
from safesetting.home import Home
from tests.server.conftest import FUTURE, start_server, stop_server

DOC = Path(__file__).resolve().parents[2] / "docs" / "WORKBENCH.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
R_BLOCK = re.compile(r"```r\n(.*?)```", re.DOTALL)


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


def test_the_r_example_runs_against_a_live_server(trend_home, tmp_path):
    """The R block, with Rscript (Debian's r-base-core, r-cran-httr2, r-cran-jsonlite;
    `.ci/run` installs them): a released answer with errors, for the five years."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Rscript is missing: .ci/run installs r-base-core and r-cran-httr2")
        pytest.skip("Rscript is not installed (apt-get install r-base-core r-cran-httr2)")
    (code,) = R_BLOCK.findall(DOC.read_text())
    script = tmp_path / "trend.R"
    script.write_text(code)
    home, token = trend_home
    served = start_server(home, log=tmp_path / "serve.log")
    try:
        env = {**os.environ, "SAFESETTING_URL": served.url, "SAFESETTING_TOKEN": token}
        done = subprocess.run([rscript, str(script)], env=env, capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip
    finally:
        stop_server(served)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pupils_error" in done.stdout
