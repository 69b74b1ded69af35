"""The application role on PostgreSQL: what ``serve``'s workers connect as.

The operator's URL (``SAFESETTING_DB_URL``) names the role that owns the control database's
tables; whoever owns a table can drop its append-only triggers, so the long-running, network-
facing service must not hold it. ``setup_service_role(owner_engine, …)`` (run by ``serve`` as
the owner, after the migrations) creates or updates a role that owns nothing, sets its
password from a 0600 file in the home, and grants it exactly :data:`SERVICE_GRANTS`: it can
add to the ledger and the log but not change or remove what is there, nor alter the schema.
It returns the URL the workers use (the owner URL with the user and password replaced).

SQLite has no roles: there the home's file permissions are the boundary (whoever can write
``control.db`` can also replace it), so nothing here applies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass, replace
from pathlib import Path

import sqlalchemy as sa

from audit import store as audit_store
from safesetting.errors import StateError, UsageError
from safesetting.home import DB_ROLE_ENV
from safesetting.store import tables as t

log = logging.getLogger(__name__)

#: Set by ``serve`` for its workers: ``Home.db_url`` then connects as this role, with the
#: password from the home's secret file (the password itself is never in the environment).
ROLE_ENV = DB_ROLE_ENV
SECRET_BYTES = 32  # 256 bits
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PG_ROLE_LOCK = 0x5AFE_0501  # serialises concurrent setups (two `serve` starting at once)


@dataclass(frozen=True)
class Grant:
    """What the service may do to one table, and why it needs it."""

    table: str
    privileges: tuple[str, ...]  # table-level: SELECT, INSERT
    update_columns: tuple[str, ...] = ()  # column-level UPDATE only
    why: str = ""

    def statements(self, table: str, role: str) -> list[str]:
        """The GRANT statements (``table`` and ``role`` already quoted)."""
        out = [f"GRANT {', '.join(self.privileges)} ON TABLE {table} TO {role}"]
        if self.update_columns:
            columns = ", ".join(self.update_columns)
            out.append(f"GRANT UPDATE ({columns}) ON TABLE {table} TO {role}")
        return out


#: Every table of the control database, and what the service may do to it: nothing more.
#: No DELETE, TRUNCATE, REFERENCES or TRIGGER anywhere; UPDATE only on the named columns.
SERVICE_GRANTS: tuple[Grant, ...] = (
    Grant("schema_migrations", ("SELECT",), why="open_control reads the schema version"),
    Grant("researchers", ("SELECT",), why="authentication: role and accreditation"),
    Grant("tokens", ("SELECT",), why="authentication: the token's digest, expiry, revocation"),
    Grant(
        "projects",
        ("SELECT",),
        ("id",),
        why="the debit locks the project row (SELECT … FOR UPDATE), which PostgreSQL allows "
        "only with UPDATE on some column; id is the one column whose change the foreign keys "
        "of project_tables and project_members refuse for every project (each has at least "
        "one of both), so the grant lets the service lock a project and change nothing",
    ),
    Grant("project_tables", ("SELECT",), why="the policy: a project's tables"),
    Grant("project_columns", ("SELECT",), why="the policy: a project's approved columns"),
    Grant("project_members", ("SELECT",), why="the policy: a project's members"),
    Grant("optouts", ("SELECT",), why="the sandbox leaves opted-out pupils out"),
    Grant("ledger", ("SELECT", "INSERT"), why="budgets (SELECT) and the debit (INSERT)"),
    Grant(
        "ledger_lock",
        ("SELECT",),
        ("id",),
        why="every debit locks the one row (SELECT … FOR UPDATE); CHECK (id = 1) makes any "
        "update a no-op",
    ),
    Grant(
        "policy_versions",
        ("SELECT", "INSERT"),
        why="a worker that opens after the policy file changed records policy.changed",
    ),
    Grant(
        "queries",
        ("SELECT", "INSERT"),
        ("status", "result", "released_at"),
        why="the accepted query (INSERT), its release or failure (UPDATE, also close_abandoned "
        "at start) and the release cache (SELECT)",
    ),
    Grant("audit_entries", ("SELECT", "INSERT"), why="appending to the log; proofs"),
    Grant("audit_nodes", ("SELECT", "INSERT"), why="appending to the log; proofs"),
    Grant("audit_checkpoints", ("SELECT", "INSERT"), why="signing checkpoints; publishing them"),
    Grant(
        "audit_head",
        ("SELECT",),
        ("tree_size", "frontier", "epsilon_micro"),
        why="each append locks and advances the head row (UPDATE … RETURNING), with the "
        "running ε total; the debit compares the ledger with it",
    ),
    Grant(
        "audit_epsilon",
        ("SELECT", "INSERT"),
        ("epsilon_micro",),
        why="an append carrying ε adds it to its project's running total (INSERT … ON "
        "CONFLICT DO UPDATE); the debit compares the ledger with it",
    ),
)


def applicable_grants() -> list[Grant]:
    """:data:`SERVICE_GRANTS` for the tables and columns this code declares (the control
    store's and the audit log's): what ``setup_service_role`` grants."""
    declared = {**t.metadata.tables, **audit_store.metadata.tables}
    return [
        replace(grant, update_columns=tuple(c for c in grant.update_columns if c in table.c))
        for grant in SERVICE_GRANTS
        if (table := declared.get(grant.table)) is not None
    ]


# --- the secret ---------------------------------------------------------------------------


def read_secret(path: Path) -> str:
    """The service role's password; a missing file, or one others can read, is refused."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise StateError(
            f"{path} is missing: start `safesetting serve` as the operator (with the owner's "
            "SAFESETTING_DB_URL) to create the service role and its password"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StateError(f"{path} is accessible by others (mode {mode & 0o777:o}); chmod 600")
    password = path.read_text().strip()
    if not password:
        raise StateError(f"{path} is empty: delete it and start `safesetting serve` again")
    return password


def load_or_create_secret(path: Path) -> str:
    """The password in ``path``, generated on first use (0600, written under a temporary
    name and hard-linked into place, as the signing key is: never seen half-written, and two
    processes racing to create it share one)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(SECRET_BYTES) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another process won the race
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return read_secret(path)


# --- names and URLs -----------------------------------------------------------------------


def default_role_name(database: str) -> str:
    """``<database>_service``, folded to a plain lower-case identifier of at most 63 bytes.

    >>> default_role_name("SafeSetting-prod")
    'safesetting_prod_service'
    """
    base = re.sub(r"[^a-z0-9_]", "_", database.lower()) or "safesetting"
    if not (base[0].isalpha() or base[0] == "_"):
        base = f"_{base}"
    return f"{base[:55]}_service"


def check_role_name(name: str) -> str:
    """A ``--service-role``: lower-case letters, digits and ``_``, at most 63 characters."""
    if not _ROLE_NAME.fullmatch(name) or name.startswith("pg_"):
        raise UsageError(
            f"service role {name!r} must be lower-case letters, digits and _ (at most 63, "
            "not starting with a digit or pg_)"
        )
    return name


def service_url(owner_url: str | sa.URL, role: str, password: str) -> str:
    """The owner's URL with the user and password replaced (host, database, options kept)."""
    url = sa.make_url(owner_url).difference_update_query(["user", "password"])
    return url.set(username=role, password=password).render_as_string(hide_password=False)


# --- schema ownership (open_control) ------------------------------------------------------


def owns_schema(conn: sa.Connection) -> bool:
    """Whether this connection may change the control database's schema: always on SQLite;
    on PostgreSQL when its user has the privileges of the tables' owner (or there are no
    tables yet). The application role does not, and ``open_control`` then only checks."""
    if conn.dialect.name != "postgresql":
        return True
    found = conn.execute(
        sa.text(
            "SELECT bool_and(pg_has_role(current_user, c.relowner, 'USAGE')) FROM pg_class c "
            "WHERE c.oid IN (to_regclass('schema_migrations'), to_regclass('audit_entries'))"
        )
    ).scalar()
    return found is None or bool(found)


# --- the role -----------------------------------------------------------------------------


def setup_service_role(owner_engine: sa.Engine, *, secret: Path, role: str | None = None) -> str:
    """Create or update the application role and grant it :data:`SERVICE_GRANTS` (run as
    the tables' owner, after the migrations); return the service URL.

    Idempotent: each run revokes whatever the role holds in the schema and grants exactly
    the list again, and sets the role's password from ``secret`` (created 0600 on first use).
    The role: LOGIN, NOSUPERUSER, NOCREATEDB, NOCREATEROLE, NOINHERIT, NOREPLICATION,
    NOBYPASSRLS. A role that owns anything, is a member of another role, or holds privileges
    in another database is refused, not repaired. The password never leaves the connection
    in clear when the driver can hash it (psycopg computes the SCRAM verifier).
    """
    if owner_engine.dialect.name != "postgresql":
        raise UsageError("the service role applies to a PostgreSQL control database only")
    password = load_or_create_secret(secret)
    try:
        with owner_engine.begin() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_ROLE_LOCK)))
            database, owner = conn.execute(sa.text("SELECT current_database(), current_user")).one()
            name = check_role_name(role) if role else default_role_name(database)
            if name == owner:
                raise UsageError(
                    f"the service role may not be {owner}, the role that owns the tables"
                )
            schema = _schema_of_tables(conn)
            _ensure_role(conn, name, database)
            _set_password(conn, name, password)
            _grant(conn, name, database, schema)
            _warn_about_public(conn, name, database, schema)
    except sa.exc.DBAPIError as exc:
        raise StateError(f"cannot set up the service role: {_pg_message(exc)}") from None
    return service_url(owner_engine.url, name, password)


def _pg_message(exc: sa.exc.DBAPIError) -> str:
    """The server's message alone (SQLAlchemy's text would quote the statement), and what
    the owner lacks when it is a privilege."""
    diag = getattr(exc.orig, "diag", None)
    message = getattr(diag, "message_primary", None) or type(exc.orig).__name__
    if getattr(exc.orig, "sqlstate", None) == "42501":
        message += (
            " (the role in SAFESETTING_DB_URL must own the control database's tables and "
            "have CREATEROLE)"
        )
    return message


def _q(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


def _schema_of_tables(conn: sa.Connection) -> str:
    """The one schema holding every table granted (as the owner sees it)."""
    schemas: dict[str, str | None] = {}
    for grant in applicable_grants():
        schemas[grant.table] = conn.execute(
            sa.text(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = to_regclass(:t)"
            ),
            {"t": grant.table},
        ).scalar()
    missing = sorted(table for table, schema in schemas.items() if schema is None)
    if missing:
        raise StateError(
            f"the control database lacks {', '.join(missing)}: open the home as the owner "
            "first (migrations)"
        )
    if len(set(schemas.values())) != 1:
        raise StateError("the control database's tables are not all in one schema")
    return str(next(iter(schemas.values())))


_ATTRIBUTES = {  # pg_roles column -> (wanted value, keyword to set it)
    "rolcanlogin": (True, "LOGIN"),
    "rolsuper": (False, "NOSUPERUSER"),
    "rolcreatedb": (False, "NOCREATEDB"),
    "rolcreaterole": (False, "NOCREATEROLE"),
    "rolinherit": (False, "NOINHERIT"),
    "rolreplication": (False, "NOREPLICATION"),
    "rolbypassrls": (False, "NOBYPASSRLS"),
}


def _ensure_role(conn: sa.Connection, name: str, database: str) -> None:
    role = _q(conn, name)
    found = conn.execute(
        sa.text(f"SELECT oid, {', '.join(_ATTRIBUTES)} FROM pg_roles WHERE rolname = :r"),  # noqa: S608
        {"r": name},
    ).first()
    if found is None:
        keywords = " ".join(keyword for _, keyword in _ATTRIBUTES.values())
        conn.exec_driver_sql(f"CREATE ROLE {role} {keywords}")
        return
    _refuse_unsafe(conn, name, found.oid, database)
    # Only what differs: changing some attributes at all takes a superuser.
    wrong = [kw for col, (want, kw) in _ATTRIBUTES.items() if getattr(found, col) != want]
    if wrong:
        conn.exec_driver_sql(f"ALTER ROLE {role} {' '.join(wrong)}")


def _refuse_unsafe(conn: sa.Connection, name: str, oid: int, database: str) -> None:
    """An existing role that owns something, belongs to another role (NOINHERIT still lets
    it SET ROLE), or serves another database is someone else's: refused, not repaired."""
    owned = conn.execute(
        sa.text(
            "SELECT count(*) FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass "
            "AND refobjid = :oid AND deptype = 'o'"
        ),
        {"oid": oid},
    ).scalar_one()
    if owned:
        raise StateError(
            f"role {name} owns {owned} object(s): the service role must own nothing (choose "
            "another --service-role, or REASSIGN OWNED BY it)"
        )
    groups = conn.execute(
        sa.text(
            "SELECT m.roleid::regrole::text FROM pg_auth_members m WHERE m.member = :oid ORDER BY 1"
        ),
        {"oid": oid},
    ).scalars()
    if member_of := list(groups):
        raise StateError(
            f"role {name} is a member of {', '.join(member_of)}: the service role must hold "
            "only its own grants (choose another --service-role, or REVOKE the membership)"
        )
    others = conn.execute(
        sa.text(
            "SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = "
            "CASE WHEN s.dbid = 0 AND s.classid = 'pg_database'::regclass THEN s.objid "
            "ELSE s.dbid END WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = :oid "
            "AND s.deptype = 'a' AND d.datname <> :db ORDER BY 1"
        ),
        {"oid": oid, "db": database},
    ).scalars()
    if elsewhere := list(others):
        raise StateError(
            f"role {name} holds privileges in {', '.join(elsewhere)}: each control database "
            "needs its own service role (choose another --service-role)"
        )


def _set_password(conn: sa.Connection, name: str, password: str) -> None:
    method = conn.exec_driver_sql("SHOW password_encryption").scalar_one()
    verifier = _hash_password(conn, name, password, str(method))
    if not re.fullmatch(r"[A-Za-z0-9+/=$:_-]+", verifier):
        raise StateError(f"cannot set the password of role {name}: unexpected characters")
    try:
        conn.exec_driver_sql(f"ALTER ROLE {_q(conn, name)} PASSWORD '{verifier}'")
    except sa.exc.DBAPIError as exc:  # never let the statement reach a message
        raise StateError(f"cannot set the password of role {name}: {_pg_message(exc)}") from None


def _hash_password(conn: sa.Connection, name: str, password: str, method: str) -> str:
    """The password as the server stores it (a SCRAM verifier, or md5), computed by libpq,
    so the clear password is never sent (nor written to a statement log); clear text only
    with a driver that cannot hash."""
    raw = conn.connection.dbapi_connection
    pgconn = getattr(raw, "pgconn", None)  # psycopg 3
    if pgconn is not None:
        hashed = pgconn.encrypt_password(password.encode(), name.encode(), method.encode())
        return bytes(hashed).decode()
    try:  # psycopg2
        from psycopg2.extensions import encrypt_password
    except ImportError:
        return password
    return str(encrypt_password(password, name, raw, method))


def _grant(conn: sa.Connection, name: str, database: str, schema: str) -> None:
    role, nsp, db = _q(conn, name), _q(conn, schema), _q(conn, database)
    # Start from nothing: whatever an earlier version (or a person) granted goes.
    for kind in ("TABLES", "SEQUENCES", "FUNCTIONS"):
        conn.exec_driver_sql(f"REVOKE ALL ON ALL {kind} IN SCHEMA {nsp} FROM {role}")
    conn.exec_driver_sql(f"REVOKE ALL ON SCHEMA {nsp} FROM {role}")
    conn.exec_driver_sql(f"REVOKE ALL ON DATABASE {db} FROM {role}")
    conn.exec_driver_sql(f"GRANT CONNECT ON DATABASE {db} TO {role}")
    conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {nsp} TO {role}")
    grants = applicable_grants()
    for grant in grants:
        for statement in grant.statements(f"{nsp}.{_q(conn, grant.table)}", role):
            conn.exec_driver_sql(statement)
    inserting = [f"{nsp}.{_q(conn, g.table)}" for g in grants if "INSERT" in g.privileges]
    sequences = conn.execute(
        sa.text(
            "SELECT n.nspname, s.relname FROM pg_depend d "
            "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
            "JOIN pg_namespace n ON n.oid = s.relnamespace "
            "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
            "AND d.deptype IN ('a', 'i') AND d.refobjid = ANY(CAST(:tables AS regclass[])) "
            "ORDER BY 1, 2"
        ),
        {"tables": inserting},
    ).all()
    for seq_schema, seq in sequences:  # the serial ids of the tables it inserts into
        sequence = f"{_q(conn, seq_schema)}.{_q(conn, seq)}"
        conn.exec_driver_sql(f"GRANT USAGE ON SEQUENCE {sequence} TO {role}")


def _warn_about_public(conn: sa.Connection, name: str, database: str, schema: str) -> None:
    """What PUBLIC still gives every role (before PostgreSQL 15, CREATE on ``public``): the
    operator's to revoke, since other applications may rely on it. The role still owns
    none of our tables, so it cannot alter or drop them or their triggers."""
    can_create = conn.execute(
        sa.text(
            "SELECT has_schema_privilege(:r, :s, 'CREATE'), "
            "has_database_privilege(:r, :d, 'CREATE')"
        ),
        {"r": name, "s": schema, "d": database},
    ).one()
    if can_create[0]:
        log.warning(
            "role %s may create objects in schema %s (granted to PUBLIC): consider "
            "REVOKE CREATE ON SCHEMA %s FROM PUBLIC",
            name,
            schema,
            schema,
        )
    if can_create[1]:
        log.warning(
            "role %s may create schemas in database %s (granted to PUBLIC): consider "
            "REVOKE CREATE ON DATABASE %s FROM PUBLIC",
            name,
            database,
            database,
        )
