"""Start-up costs what it uses: ``safesetting --help`` imports no heavy package, a remote
``safesetting query`` no engine, and the lazily listed commands read as if all were loaded.

Each command runs in a fresh interpreter (this one has imported everything already); the
tests look at which modules it imported, never at how long it took
(``bench/bench_startup.py`` measures that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from safesetting.cli import GROUPS, cli

HEAVY = {
    "duckdb", "opendp", "sqlalchemy", "sqlglot", "numpy", "pyarrow", "faker", "fastapi",
    "starlette", "uvicorn", "pydantic", "httpx", "rich", "cryptography", "psycopg",
}  # fmt: skip
ENGINE = {"duckdb", "opendp", "sqlalchemy", "sqlglot", "numpy", "pyarrow", "faker"}
SERVER = {"fastapi", "starlette", "uvicorn"}
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, refused at once

# Runs the CLI as the console script does, then writes the top-level packages it imported.
PROBE = """
import json, os, sys
sys.argv = ["safesetting", *sys.argv[1:]]
from safesetting.cli import cli
code = 0
try:
    cli.main(standalone_mode=True)
except SystemExit as exc:
    code = exc.code
with open(os.environ["PROBE_OUT"], "w") as fh:
    json.dump(sorted({m.split(".")[0] for m in sys.modules}), fh)
sys.exit(code)
"""


def run(
    args: list[str], folder: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``safesetting ARGS`` in a fresh interpreter in ``folder``: the process, and the
    top-level packages it imported."""
    out = folder / "modules.json"
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SAFESETTING_") and "proxy" not in k.lower()
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=folder,
        env={**clean, "COLUMNS": "80", "PROBE_OUT": str(out), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.exists(), done.stderr
    return done, set(json.loads(out.read_text()))


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"]])
def test_help_imports_no_heavy_package(tmp_path, args):
    done, modules = run(args, tmp_path)
    assert done.returncode == 0, done.stderr
    assert modules & HEAVY == set()
    # ... nor any command's module: the listing comes from the registry.
    assert not [m for m in GROUPS.values() if m.target.split(":")[0] in modules]


def test_help_lists_every_command_with_its_summary(tmp_path):
    done, _ = run(["--help"], tmp_path)
    listed = done.stdout.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed] == sorted(GROUPS)


@pytest.mark.parametrize("command", ["query", "budget", "init", "data", "transparency"])
def test_a_light_command_answers_help_without_heavy_imports(tmp_path, command):
    done, modules = run([command, "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage: safesetting" in done.stdout
    assert modules & HEAVY == set()


@pytest.mark.parametrize(
    "args",
    [
        ["query", "SELECT COUNT(*) AS n FROM census", "--project", "p", "--token", "sst_x"],
        ["budget", "--project", "p", "--token", "sst_x"],
    ],
    ids=["query", "budget"],
)
def test_remote_mode_needs_no_engine(tmp_path, args):
    """Over HTTP the CLI is a client: no DuckDB, OpenDP, SQLAlchemy, sqlglot or server."""
    done, modules = run(args, tmp_path, SAFESETTING_URL=UNREACHABLE)
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"Error: cannot reach the safe setting at {UNREACHABLE}\n"
    assert "httpx" in modules  # it did try: the client was loaded
    assert modules & (ENGINE | SERVER | {"pydantic", "cryptography", "psycopg"}) == set()


def test_a_missing_home_is_reported_before_the_engine_loads(tmp_path):
    done, modules = run(["query", "SELECT 1", "--project", "p"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"Error: {tmp_path.resolve() / 'safesetting-home'} does not")
    assert modules & HEAVY == set()


@pytest.fixture(scope="module")
def empty_home(tmp_path_factory) -> Path:
    """A home with a policy and a control database, and no data (a query fails at its token)."""
    folder = tmp_path_factory.mktemp("startup")
    done, _ = run(["--home", "home", "init"], folder)
    assert done.returncode == 0, done.stderr
    return folder


def local_query(folder: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    args = ["--home", "home", "query", "SELECT COUNT(*) AS n FROM census", "--project", "p"]
    return run([*args, "--token", "sst_unknown"], folder)


def test_local_mode_loads_the_engine_but_not_the_server(empty_home):
    done, modules = local_query(empty_home)
    assert done.returncode == 3, done.stderr  # unknown token, after the service loaded
    assert {"duckdb", "opendp", "sqlalchemy", "sqlglot"} <= modules
    assert modules & (SERVER | {"httpx", "rich"}) == set()


def test_local_mode_does_not_load_the_data_generator(empty_home):
    _, modules = local_query(empty_home)
    assert "faker" not in modules


# -- the registry says what each command's own help says -------------------------------------
def loaded_commands() -> dict[str, click.Command]:
    ctx = click.Context(cli)
    found = {name: cli.get_command(ctx, name) for name in GROUPS}
    return {name: command for name, command in found.items() if command is not None}


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_each_summary_is_the_first_paragraph_of_its_commands_help(name):
    command = cli.get_command(click.Context(cli), name)  # imports that command's module
    assert command is not None
    first = " ".join((command.help or "").split("\n\n")[0].split())
    assert GROUPS[name].summary == first
    assert command.short_help is None  # else click would list that instead
    assert not command.deprecated
    assert not command.hidden
    stand_in = click.Command(name, help=GROUPS[name].summary)
    for limit in (20, 45, 62, 200):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_lazy_help_reads_as_if_every_command_were_loaded(tmp_path, runner):
    lazy, _ = run(["--help"], tmp_path)
    assert loaded_commands().keys() == GROUPS.keys()  # now they all are, in this process
    # COLUMNS=80 gives click's formatter 78 columns; CliRunner would force 80.
    loaded = runner.invoke(
        cli, ["--help"], prog_name="safesetting", terminal_width=78, catch_exceptions=False
    )
    assert lazy.stdout == loaded.output
