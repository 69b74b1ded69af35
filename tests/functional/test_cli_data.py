"""``safesetting data generate`` and ``safesetting data catalogue`` from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from safesetting.cli import cli
from synthetic import schema
from synthetic.load import generate_database, read_data_version

ROOT = Path(__file__).resolve().parents[2]


def invoke(runner, home, *args):
    return runner.invoke(cli, ["--home", str(home), "data", *args], catch_exceptions=False)


def test_generate_json_summary(runner, tmp_path):
    result = invoke(runner, tmp_path, "generate", "--pupils", "2000", "--seed", "4",
                    "--years", "2018-2021", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"id", "seed", "pupils", "years", "generator_version", "digest", "created_at",
            "rows", "seconds", "path"} <= set(out)  # fmt: skip
    assert out["pupils"] == 2000
    assert out["seed"] == 4
    assert out["years"] == "2018-2021"
    assert set(out["rows"]) == set(schema.TABLES)
    assert read_data_version(tmp_path / "npd.duckdb").id == out["id"]


def test_generate_human_summary(runner, tmp_path):
    result = invoke(runner, tmp_path, "generate", "--pupils", "1,500", "--years", "2020-2024")
    assert result.exit_code == 0, result.output
    assert "census" in result.stdout
    assert "1,500 pupils" in result.stdout
    assert "data version npd-g" in result.stdout


BAD = [
    (["--pupils", "0"], "--pupils must be at least 1"),
    (["--pupils", "-10"], "--pupils must be at least 1"),
    (["--pupils", "ten"], "--pupils must be a whole number"),
    (["--pupils", "1.5"], "--pupils must be a whole number"),
    (["--seed", "x"], "--seed must be a whole number"),
    (["--years", "2024-2012"], "ends before it starts"),
    (["--years", "1990-2000"], "within 2006-2025"),
    (["--years", "2012-2024-2030"], "look like 2012-2024"),
    ([], "already exists"),
]


def temporaries(home: Path) -> list[str]:
    """Files a generation run left behind beside the database (none, when it is done)."""
    return [p.name for p in home.iterdir() if p.name.startswith(".npd.duckdb.tmp")]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_one_line_exit_2_previous_database_intact(runner, npd_tiny, args, message):
    before = npd_tiny.read_bytes()
    result = invoke(runner, npd_tiny.parent, "generate", "--pupils", "100", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert npd_tiny.read_bytes() == before
    assert temporaries(npd_tiny.parent) == []


def test_bad_input_json_envelope(runner, tmp_path):
    result = invoke(runner, tmp_path, "generate", "--pupils", "0", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["kind"] == "bad_input"


def test_unwritable_home(runner, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = invoke(runner, blocker / "home", "generate", "--pupils", "100")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot create")


def test_force_replaces(runner, npd_tiny):
    before = read_data_version(npd_tiny)
    result = invoke(runner, npd_tiny.parent, "generate", "--pupils", "300", "--force")
    assert result.exit_code == 0, result.output
    assert read_data_version(npd_tiny).pupils == 300 != before.pupils


def test_force_leaves_only_the_new_versions_snapshot(runner, npd_tiny):
    """The snapshot of the data it replaced is removed (it would keep 2.4 GB per version
    at national scale); the new one is the only one left, with its checked marker."""
    folder = npd_tiny.parent / "snapshots"
    first = json.loads(invoke(runner, npd_tiny.parent, "generate", "--pupils", "300",
                              "--force", "--json").output)["snapshot"]  # fmt: skip
    second = json.loads(invoke(runner, npd_tiny.parent, "generate", "--pupils", "400",
                               "--force", "--json").output)["snapshot"]  # fmt: skip
    assert first != second
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        Path(second).name,
        Path(second).name + ".checked",
    ]


def _start_and_signal(home: Path, signum: int) -> int:
    """Start a large generation in a subprocess, signal it mid-way, return its exit code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "safesetting", "--home", str(home), "data", "generate",
         "--pupils", "400000", "--force", "--json"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
        p.name.startswith(".npd.duckdb.tmp") for p in home.iterdir()
    ):
        time.sleep(0.05)
    assert any(p.name.startswith(".npd.duckdb.tmp") for p in home.iterdir()), "never started"
    time.sleep(1.0)  # well into generation (400k pupils take several seconds)
    assert proc.poll() is None, "generation finished before it could be signalled"
    proc.send_signal(signum)
    return proc.wait()


def test_terminated_run_cleans_up_and_leaves_previous_database(npd_tiny):
    before = read_data_version(npd_tiny)
    assert _start_and_signal(npd_tiny.parent, signal.SIGTERM) == 128 + signal.SIGTERM
    assert read_data_version(npd_tiny) == before
    assert temporaries(npd_tiny.parent) == []


def test_killed_run_leaves_previous_database_intact(npd_tiny):
    before = read_data_version(npd_tiny)
    _start_and_signal(npd_tiny.parent, signal.SIGKILL)
    assert read_data_version(npd_tiny) == before
    left = [p.name for p in npd_tiny.parent.iterdir() if p.name.startswith(".npd.duckdb.tmp")]
    assert left  # a killed process cannot clean up; the next run does
    after = generate_database(npd_tiny, 200, seed=1, force=True)
    assert read_data_version(npd_tiny) == after
    assert temporaries(npd_tiny.parent) == []


def test_catalogue_json_lists_every_table_and_column_without_a_database(runner, tmp_path):
    result = invoke(runner, tmp_path / "empty-home", "catalogue", "--json")
    assert result.exit_code == 0
    assert not (tmp_path / "empty-home").exists()
    out = json.loads(result.stdout)
    assert out["privacy_unit"] == "pupil_id"
    tables = {t["name"]: t for t in out["tables"]}
    assert set(tables) == set(schema.TABLES)
    for name, t in tables.items():
        assert {"description", "private", "primary_key", "max_rows_per_pupil",
                "bound_enforced_by", "columns"} <= set(t)  # fmt: skip
        assert [c["name"] for c in t["columns"]] == list(schema.table(name).column_names)
        for c in t["columns"]:
            assert {"name", "type", "class", "domain", "domain_size", "domain_ref", "bounds",
                    "groupable"} <= set(c)  # fmt: skip
    census = {c["name"]: c for c in tables["census"]["columns"]}
    assert census["sen_provision"]["domain"] == ["N", "K", "E"]
    assert census["nationality"]["class"] == "restricted"
    assert tables["census"]["max_rows_per_pupil"] == len(schema.YEARS)


def test_catalogue_never_shows_a_value_from_the_data(runner, npd_small, npd_small_home, tmp_path):
    con = duckdb.connect(str(npd_small), read_only=True)
    identifiers = set()
    for col in ("upn", "postcode", "CAST(date_of_birth AS VARCHAR)"):
        sample = f"SELECT DISTINCT {col} FROM pupils USING SAMPLE 300 ROWS"
        identifiers |= {v for (v,) in con.execute(sample).fetchall()}
    names = {v for (v,) in con.execute("SELECT DISTINCT school_name FROM schools").fetchall()}
    con.close()
    for args in (["catalogue"], ["catalogue", "--json"]):
        with_data = invoke(runner, npd_small_home, *args).stdout
        # the output cannot depend on the data: identical with no database at all
        assert with_data == invoke(runner, tmp_path / "no-data", *args).stdout
        assert [v for v in identifiers | names if v in with_data] == []


def test_catalogue_human_listing(runner, tmp_path):
    result = invoke(runner, tmp_path, "catalogue")
    assert result.exit_code == 0
    for word in ("census", "sen_provision", "special_category", "80 .. 120", "153 values"):
        assert word in result.stdout


def test_every_code_comes_with_what_it_means_and_full_lists_them_all(runner, tmp_path):
    """Labels for every code of every labelled list, in --json and --full alike."""
    out = json.loads(invoke(runner, tmp_path, "catalogue", "--json").stdout)
    census = {c["name"]: c for t in out["tables"] if t["name"] == "census" for c in t["columns"]}
    for name in ("sen_provision", "sen_primary_need", "ethnicity_minor", "ethnicity_major",
                 "language_group", "nc_year", "la_code", "nationality"):  # fmt: skip
        col = census[name]
        assert set(col["labels"]) == {str(v) for v in col["domain"]}, name
        assert all(col["labels"].values()), name
    assert census["sen_provision"]["labels"]["E"] == "Education, health and care plan"
    assert census["phase"]["labels"] is None  # self-describing
    # The table wraps at the terminal's width: look for single words.
    full = invoke(runner, tmp_path, "catalogue", "--full").stdout
    assert "Westmorland" in full  # the 153rd LA, listed with its name
    assert "disruptive" in full
    short = invoke(runner, tmp_path, "catalogue").stdout
    assert "--full" in short
    assert "Westmorland" not in short  # 153 LAs are summarised
    assert "Education," in short  # sen_provision's E, with its meaning
