"""The control database engine: SQLite in the home by default, PostgreSQL via SAFESETTING_DB_URL.

Registry, budget ledger, release cache and audit log share this one database so that a
budget debit and its audit entry commit in one transaction.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy import event

from safesetting.home import Home

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _on_sqlite_connect(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
    # WAL lets readers run beside the single writer; BEGIN IMMEDIATE (below) takes the write
    # lock up front so concurrent transactions serialise instead of failing on upgrade.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _on_sqlite_begin(conn) -> None:  # noqa: ANN001 - SQLAlchemy connection
    # Writers take the lock up front; a connection marked read_only (Control.reader) reads
    # a WAL snapshot without blocking writers or other readers.
    if conn.get_execution_options().get("read_only"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


_ENGINES: dict[str, sa.Engine] = {}
_LOCK = threading.Lock()


def make_engine(url: str) -> sa.Engine:
    """One engine per URL for the process (engines own connection pools)."""
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = _create(url)
        return engine


def dispose_engines(url_prefix: str = "") -> None:
    """Close the pools of cached engines whose URL starts with ``url_prefix`` (and forget them).

    Engines are never evicted silently: a garbage-collected pool would drop open
    connections on the floor.
    """
    with _LOCK:
        for url in [u for u in _ENGINES if u.startswith(url_prefix)]:
            _ENGINES.pop(url).dispose()


def _create(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and write-locking transactions."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def engine_for(home: Home) -> sa.Engine:
    """The control-database engine for a home (which must exist: nothing is created here)."""
    return make_engine(home.db_url)
