"""Audit log throughput and verify time, beside a plain-INSERT baseline.

    python bench/bench_audit.py [--appends 2000] [--verify-size 100000] [--pg-url URL]

Each append is its own committed transaction (the way the service appends), then a
checkpoint is signed in a second transaction. SQLite runs in WAL mode with the project's
settings (``synchronous=NORMAL``: a commit survives a process crash; a power cut can lose
the last commits but never corrupts) and, for comparison, ``synchronous=FULL`` (fsync per
commit). PostgreSQL runs with the server's defaults (``synchronous_commit=on``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import audit  # noqa: E402
from safesetting.db import make_engine  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
FULL = "PRAGMA synchronous=FULL"
REQUEST = {"sql": "SELECT la_code, COUNT(*) FROM census GROUP BY la_code", "epsilon_micro": 500_000}


def _entry(conn: sa.Connection, i: int) -> None:
    audit.append_entry(
        conn,
        actor=f"researcher{i % 17}",
        action="query.released",
        project=f"proj{i % 5}",
        request=REQUEST,
        decision="allow",
        epsilon_micro=500_000,
        result_digest="ab" * 32,
        data_version="2024.1",
        policy_digest="cd" * 32,
    )


def _rate(n: int, step: Callable[[int], None]) -> float:
    start = time.perf_counter()
    for i in range(n):
        step(i)
    return n / (time.perf_counter() - start)


def bench_engine(engine: sa.Engine, n: int, key: audit.SigningKey) -> dict[str, float]:
    """appends/s for: plain INSERT, append_entry, append_entry + sign_checkpoint."""
    plain = sa.Table(
        "bench_plain",
        sa.MetaData(),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("payload", sa.LargeBinary),
    )
    plain.create(engine, checkfirst=True)
    payload = audit.canonical_json(REQUEST)
    audit.create_schema(engine)

    def insert(i: int) -> None:
        with engine.begin() as conn:
            conn.execute(plain.insert().values(seq=i, payload=payload))

    def append(i: int) -> None:
        with engine.begin() as conn:
            _entry(conn, i)

    def append_then_sign(i: int) -> None:
        append(i)
        audit.sign_checkpoint(engine, key)  # after the commit, in a second transaction

    def append_and_sign(i: int) -> None:
        with engine.begin() as conn:
            _entry(conn, i)
            audit.sign_checkpoint(conn, key)  # in the same transaction

    return {
        "plain INSERT, no hashing (baseline)": _rate(n, insert),
        "append_entry": _rate(n, append),
        "append_entry, commit, sign_checkpoint": _rate(n, append_then_sign),
        "append_entry + sign_checkpoint, one commit": _rate(n, append_and_sign),
    }


def fill(engine: sa.Engine, size: int, key: audit.SigningKey, batch: int = 2000) -> None:
    """Grow the log to ``size`` entries quickly (many appends per transaction)."""
    with engine.connect() as conn:
        have = audit.tree_head(conn).size
    while have < size:
        with engine.begin() as conn:
            for i in range(have, min(size, have + batch)):
                _entry(conn, i)
        have = min(size, have + batch)
    audit.sign_checkpoint(engine, key)


def time_verify(engine: sa.Engine, key: audit.SigningKey) -> tuple[int, float]:
    start = time.perf_counter()
    result = audit.verify_log(engine, public_key=str(key.verifier))
    elapsed = time.perf_counter() - start
    assert result.ok, result.problems
    return result.size, elapsed


def _sqlite_full(url: str) -> sa.Engine:
    """The project's SQLite engine, plus fsync on every commit."""
    engine = make_engine(url)
    event.listen(engine, "connect", lambda dbapi_conn, _rec: dbapi_conn.execute(FULL))
    return engine


def _pg_database(admin_url: str) -> tuple[sa.Engine, str] | None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"ss_bench_{os.getpid()}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        print(f"PostgreSQL skipped: {exc.orig}", file=sys.stderr)
        return None
    return admin, admin_url.rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--verify-size", type=int, default=100_000)
    parser.add_argument("--pg-url", default=os.environ.get("SAFESETTING_BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()

    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        key = audit.load_or_create_key(Path(tmp) / "checkpoint.key")
        for label, make in (
            ("SQLite WAL, synchronous=NORMAL", make_engine),
            ("SQLite WAL, synchronous=FULL", _sqlite_full),
        ):
            url = f"sqlite:///{tmp}/{label.split('=')[1].lower()}.db"
            for what, rate in bench_engine(make(url), args.appends, key).items():
                rows.append((label, what, f"{rate:,.0f} /s"))
        engine = make_engine(f"sqlite:///{tmp}/normal.db")
        fill(engine, args.verify_size, key)
        size, seconds = time_verify(engine, key)
        rows.append(("SQLite WAL", f"audit verify, {size:,} entries", f"{seconds:.2f} s"))

        pg = None if args.no_pg else _pg_database(args.pg_url)
        if pg is not None:
            admin, url = pg
            engine = sa.create_engine(url)
            try:
                for what, rate in bench_engine(engine, args.appends, key).items():
                    rows.append(("PostgreSQL (localhost)", what, f"{rate:,.0f} /s"))
                fill(engine, args.verify_size, key)
                size, seconds = time_verify(engine, key)
                rows.append(("PostgreSQL", f"audit verify, {size:,} entries", f"{seconds:.2f} s"))
            finally:
                engine.dispose()
                with admin.connect() as conn:
                    name = url.rsplit("/", 1)[1]
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    width = [max(len(r[i]) for r in rows) for i in range(3)]
    header = ("database", "operation (each append committed on its own)", "rate / time")
    width = [max(w, len(h)) for w, h in zip(width, header, strict=True)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, width, strict=True)))
    print("-|-".join("-" * w for w in width))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, width, strict=True)))


if __name__ == "__main__":
    main()
