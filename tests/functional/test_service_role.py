"""PostgreSQL's application role: `serve`'s workers may add to the ledger and the log, never
change or remove what is there, nor alter the schema; the operator's role keeps the tables.

Each test runs on a throwaway database (``pg_url``); its ``<database>_service`` role is
dropped with it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

import audit
from safesetting.cli import cli
from safesetting.control import open_control, open_service_control
from safesetting.db import dispose_engines, make_engine
from safesetting.errors import StateError, UsageError
from safesetting.home import DB_ROLE_ENV, Home
from safesetting.service import close_abandoned
from safesetting.store import LATEST, migrate
from safesetting.store import migrations as migrations_module
from safesetting.store import tables as t
from safesetting.store.roles import (
    SERVICE_GRANTS,
    applicable_grants,
    default_role_name,
    read_secret,
    service_url,
    setup_service_role,
)
from tests.conftest import PG_ADMIN_URL
from tests.server.conftest import SQL, populate, start_server, stop_server

PRIVILEGE = "42501"  # insufficient_privilege: "permission denied", "must be owner"


@dataclass
class PgHome:
    home: Home
    owner_url: str
    tokens: dict[str, str]

    @property
    def database(self) -> str:
        return str(sa.make_url(self.owner_url).database)

    @property
    def role(self) -> str:
        return default_role_name(self.database)

    def owner(self) -> sa.Engine:
        return make_engine(self.owner_url)

    def setup(self, **kwargs) -> str:
        return setup_service_role(self.owner(), secret=self.home.service_secret, **kwargs)


@pytest.fixture
def pg_home(tmp_path, npd_small, pg_url, monkeypatch) -> Iterator[PgHome]:
    """A populated home (ada in project gaps) whose control database is PostgreSQL."""
    url = pg_url()
    monkeypatch.setenv("SAFESETTING_DB_URL", url)
    forget_role(monkeypatch)
    setting = populate(tmp_path / "home", npd_small)
    yield PgHome(setting.home, url, setting.tokens)
    dispose_engines()  # the owner's and the service role's pools, before the database goes


def forget_role(monkeypatch) -> None:
    """No SAFESETTING_DB_ROLE now, nor after the test (``serve`` code sets it)."""
    monkeypatch.setenv(DB_ROLE_ENV, "recorded")  # delenv alone records nothing if unset
    monkeypatch.delenv(DB_ROLE_ENV)


def ledger_rows(pg: PgHome) -> list[tuple]:
    with pg.owner().connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(t.ledger).order_by(t.ledger.c.id))]


def refusal(url: str, statement: str) -> sa.exc.DBAPIError | None:
    """The error ``statement`` raises run as the user of ``url`` (None if it ran)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)
    except sa.exc.DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    return None


def acl(pg: PgHome, role: str) -> dict[str, set[str]]:
    """Everything ``role`` holds in the database: table, sequence, column, schema and
    database privileges, as ``{object: {privilege, …}}``."""
    held: dict[str, set[str]] = {}
    with pg.owner().connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a "
                "WHERE a.grantee = to_regrole(:r) "
                "UNION ALL SELECT c.relname || '.' || att.attname, a.privilege_type "
                "FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid, "
                "aclexplode(att.attacl) a WHERE a.grantee = to_regrole(:r) "
                "UNION ALL SELECT 'schema ' || n.nspname, a.privilege_type "
                "FROM pg_namespace n, aclexplode(n.nspacl) a WHERE a.grantee = to_regrole(:r) "
                "UNION ALL SELECT 'database', a.privilege_type FROM pg_database d, "
                "aclexplode(d.datacl) a WHERE d.datname = current_database() "
                "AND a.grantee = to_regrole(:r)"
            ),
            {"r": role},
        )
        for name, privilege in rows:
            held.setdefault(name, set()).add(privilege)
    return held


def role_facts(pg: PgHome, role: str) -> dict:
    with pg.owner().connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolinherit, "
                "rolreplication, rolbypassrls, "
                "(SELECT count(*) FROM pg_shdepend WHERE refobjid = r.oid AND deptype = 'o') "
                "AS owns, (SELECT count(*) FROM pg_auth_members WHERE member = r.oid) AS groups "
                "FROM pg_roles r WHERE rolname = :r"
            ),
            {"r": role},
        ).one()
    return dict(row._mapping)


# --- without PostgreSQL -------------------------------------------------------------------


def test_the_grants_name_every_table_of_the_control_database():
    """A table added by a migration must be granted (or the service fails on it) or
    deliberately left out: this list is where that is decided."""
    tables = set(t.metadata.tables) | set(audit.store.metadata.tables)
    assert {g.table for g in SERVICE_GRANTS} == tables
    for grant in SERVICE_GRANTS:
        assert set(grant.privileges) <= {"SELECT", "INSERT"}, grant
        assert grant.why
    declared = {**t.metadata.tables, **audit.store.metadata.tables}
    for grant in applicable_grants():  # every column named is one the code declares
        assert set(grant.update_columns) <= set(declared[grant.table].c.keys()), grant
    assert applicable_grants() == list(SERVICE_GRANTS)


def test_role_names_and_urls():
    assert default_role_name("ss_test_0a1b") == "ss_test_0a1b_service"
    assert default_role_name("Safe-Setting") == "safe_setting_service"
    assert default_role_name("2026db") == "_2026db_service"
    assert len(default_role_name("x" * 80)) <= 63
    url = service_url("postgresql+psycopg://owner:secret@db.example:5433/npd?sslmode=require&user=o",
                      "npd_service", "pw/+x")  # fmt: skip
    parsed = sa.make_url(url)
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "npd_service", "pw/+x", "db.example", 5433, "npd",
    )  # fmt: skip
    assert dict(parsed.query) == {"sslmode": "require"}


def test_a_sqlite_home_has_no_service_role(runner, npd_tiny, monkeypatch):
    """SQLite has no roles: its boundary is the home's file permissions."""
    monkeypatch.delenv("SAFESETTING_DB_URL", raising=False)
    forget_role(monkeypatch)
    home = Home(npd_tiny.parent)
    result = runner.invoke(cli, ["--home", str(home.root), "serve", "--service-role", "x"])
    assert result.exit_code == 2
    assert "PostgreSQL control database only" in result.stderr
    control = open_service_control(home)
    assert control.engine.url.drivername == "sqlite"
    assert DB_ROLE_ENV not in os.environ
    assert not home.service_secret.exists()
    with pytest.raises(UsageError, match="PostgreSQL"):
        setup_service_role(control.engine, secret=home.service_secret)
    # SAFESETTING_DB_ROLE means nothing to a SQLite home.
    monkeypatch.setenv(DB_ROLE_ENV, "whoever")
    assert home.db_url == f"sqlite:///{home.control_db}"


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_the_service_role_pays_for_a_query_but_cannot_change_or_remove_anything(pg_home, runner):
    url = pg_home.setup()
    assert sa.make_url(url).username == pg_home.role
    # The normal query path, in local mode, with nothing but the service URL.
    result = runner.invoke(
        cli,
        ["--home", str(pg_home.home.root), "query", SQL, "--project", "gaps",
         "--epsilon", "0.1", "--json"],
        env={"SAFESETTING_DB_URL": url, "SAFESETTING_TOKEN": pg_home.tokens["ada"]},
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert json.loads(result.stdout)["status"] == "released"
    dispose_engines(url)
    debits = ledger_rows(pg_home)
    assert [(r[1], r[3]) for r in debits] == [("gaps", 100_000)]

    refused = {
        "DELETE FROM ledger": "permission denied",
        "UPDATE ledger SET epsilon_micro = 1": "permission denied",
        "TRUNCATE ledger": "permission denied",
        "DELETE FROM audit_entries": "permission denied",
        "UPDATE audit_entries SET actor = 'x'": "permission denied",
        "TRUNCATE audit_entries, audit_nodes, audit_checkpoints": "permission denied",
        "DELETE FROM audit_checkpoints": "permission denied",
        "DROP TRIGGER ledger_no_change ON ledger": "must be owner",
        "DROP TRIGGER audit_entries_no_change ON audit_entries": "must be owner",
        "ALTER TABLE ledger DISABLE TRIGGER ALL": "must be owner",
        "ALTER TABLE audit_entries DISABLE TRIGGER ALL": "must be owner",
        "DROP TABLE ledger": "must be owner",
        "ALTER TABLE ledger DROP CONSTRAINT ledger_epsilon_positive": "must be owner",
        "CREATE TABLE x (i integer)": "permission denied for schema",
        "CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN NULL; END $$": "permission denied for schema",
        "SET session_replication_role = replica": "permission denied",
        "UPDATE projects SET budget_micro = 99000000": "permission denied",
        "UPDATE queries SET epsilon_micro = 1": "permission denied",
        "DELETE FROM queries": "permission denied",
        "DELETE FROM optouts": "permission denied",
        "INSERT INTO optouts VALUES ('A123456789012', now())": "permission denied",
        "INSERT INTO tokens VALUES ('d', 'ada', now(), NULL, NULL)": "permission denied",
        "UPDATE tokens SET revoked_at = NULL": "permission denied",
        "UPDATE researchers SET role = 'admin'": "permission denied",
        "DELETE FROM policy_versions": "permission denied",
        "SELECT setval('ledger_id_seq', 1)": "permission denied",
        f"ALTER ROLE {pg_home.role} SUPERUSER": "must be superuser",
        "SET ROLE postgres": "permission denied",
    }
    ran = {}
    for statement, message in refused.items():
        exc = refusal(url, statement)
        if exc is None or exc.orig.sqlstate != PRIVILEGE or message not in str(exc.orig):
            ran[statement] = exc and str(exc.orig)  # allowed, or refused for another reason
    assert ran == {}
    # The lock grant on projects.id changes nothing: every project is referenced.
    exc = refusal(url, "UPDATE projects SET id = 'renamed'")
    assert isinstance(exc, sa.exc.IntegrityError)
    assert ledger_rows(pg_home) == debits
    with pg_home.owner().connect() as conn:
        assert not sa.inspect(conn).has_table("x")


@pytest.mark.postgres
def test_the_grants_are_exactly_what_the_service_needs(pg_home):
    pg_home.setup()
    assert role_facts(pg_home, pg_home.role) == {
        "rolcanlogin": True, "rolsuper": False, "rolcreatedb": False, "rolcreaterole": False,
        "rolinherit": False, "rolreplication": False, "rolbypassrls": False,
        "owns": 0, "groups": 0,
    }  # fmt: skip
    expected: dict[str, set[str]] = {"database": {"CONNECT"}, "schema public": {"USAGE"}}
    for grant in applicable_grants():
        expected[grant.table] = set(grant.privileges)
        for column in grant.update_columns:
            expected[f"{grant.table}.{column}"] = {"UPDATE"}
    expected["ledger_id_seq"] = expected["policy_versions_id_seq"] = {"USAGE"}
    assert acl(pg_home, pg_home.role) == expected


@pytest.mark.postgres
def test_setup_is_idempotent_and_takes_back_anything_extra(pg_home):
    first = pg_home.setup()
    secret = pg_home.home.service_secret.read_text()
    granted = acl(pg_home, pg_home.role)
    assert pg_home.setup() == first
    assert pg_home.home.service_secret.read_text() == secret
    assert acl(pg_home, pg_home.role) == granted
    # Someone widens the role by hand; the next start puts it back.
    with pg_home.owner().begin() as conn:
        for statement in (
            f"GRANT DELETE, TRUNCATE, TRIGGER, REFERENCES ON ledger TO {pg_home.role}",
            f"GRANT UPDATE ON ALL TABLES IN SCHEMA public TO {pg_home.role}",
            f"GRANT CREATE ON SCHEMA public TO {pg_home.role}",
            f"GRANT CREATE, TEMPORARY ON DATABASE {pg_home.database} TO {pg_home.role}",
            f"GRANT ALL ON SEQUENCE ledger_id_seq TO {pg_home.role}",
            f"ALTER ROLE {pg_home.role} CREATEDB CREATEROLE INHERIT PASSWORD 'guessable'",
        ):
            conn.exec_driver_sql(statement)
    assert pg_home.setup() == first
    assert acl(pg_home, pg_home.role) == granted
    assert not role_facts(pg_home, pg_home.role)["rolcreatedb"]
    with pg_home.owner().connect() as conn:
        stored = conn.execute(
            sa.text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": pg_home.role}
        ).scalar_one()
    assert stored.startswith("SCRAM-SHA-256$")  # hashed by libpq: never sent in clear
    assert secret.strip() not in stored


@pytest.mark.postgres
def test_a_role_that_is_not_only_ours_is_refused(pg_home, pg_url):
    pg_home.setup()
    role = pg_home.role
    with pg_home.owner().begin() as conn:
        conn.exec_driver_sql(f"GRANT pg_write_all_data TO {role}")
    with pytest.raises(StateError, match="member of pg_write_all_data"):
        pg_home.setup()
    with pg_home.owner().begin() as conn:
        conn.exec_driver_sql(f"REVOKE pg_write_all_data FROM {role}")
        conn.exec_driver_sql("CREATE TABLE owned_by_it (i integer)")
        conn.exec_driver_sql(f"ALTER TABLE owned_by_it OWNER TO {role}")
    with pytest.raises(StateError, match="owns 1 object"):
        pg_home.setup()
    with pg_home.owner().begin() as conn:
        conn.exec_driver_sql("DROP TABLE owned_by_it")
    pg_home.setup()
    # Another control database may not reuse it (their passwords would fight).
    other = make_engine(pg_url())
    migrate(other)
    audit.store.create_schema(other)
    with pytest.raises(StateError, match=f"holds privileges in {pg_home.database}"):
        setup_service_role(other, secret=pg_home.home.root / "other.secret", role=role)
    with pytest.raises(UsageError, match="may not be postgres"):
        pg_home.setup(role="postgres")
    with pytest.raises(UsageError, match="lower-case"):
        pg_home.setup(role='x"; DROP TABLE ledger; --')


@pytest.mark.postgres
def test_the_owner_still_migrates_and_the_service_role_only_checks(pg_home, monkeypatch):
    url = pg_home.setup()
    # The owner can still change the schema: reopen (recreates the triggers) and migrate.
    open_control(pg_home.home)
    extra = migrations_module.Migration(
        LATEST + 1,
        "test: a column",
        lambda conn: conn.exec_driver_sql("ALTER TABLE ledger ADD COLUMN note text"),
    )
    monkeypatch.setattr(migrations_module, "MIGRATIONS", (*migrations_module.MIGRATIONS, extra))
    assert migrate(pg_home.owner(), target=LATEST + 1) == [LATEST + 1]
    assert pg_home.setup() == url
    with pg_home.owner().begin() as conn:
        conn.exec_driver_sql("ALTER TABLE ledger DROP COLUMN note")
        conn.exec_driver_sql(f"DELETE FROM schema_migrations WHERE version >= {LATEST}")
    # A database behind this code: the service role may not migrate it, and says so.
    monkeypatch.setenv("SAFESETTING_DB_URL", url)
    with pytest.raises(StateError, match="may not migrate it"):
        open_control(pg_home.home)
    monkeypatch.setenv("SAFESETTING_DB_URL", pg_home.owner_url)
    open_control(pg_home.home)  # the owner brings it up to date
    monkeypatch.setenv("SAFESETTING_DB_URL", url)
    assert open_control(pg_home.home, actor="service").engine.url.username == pg_home.role


@pytest.mark.postgres
def test_the_secret_is_0600_and_the_role_reads_it_from_the_home(pg_home, monkeypatch):
    url = pg_home.setup()
    secret = pg_home.home.service_secret
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert read_secret(secret) == sa.make_url(url).password
    # SAFESETTING_DB_ROLE (what serve sets for its workers) + the file = the service URL.
    monkeypatch.setenv(DB_ROLE_ENV, pg_home.role)
    assert pg_home.home.db_url == url
    assert pg_home.home.owner_db_url == pg_home.owner_url
    secret.chmod(0o640)
    with pytest.raises(StateError, match="accessible by others"):
        _ = pg_home.home.db_url
    secret.unlink()
    with pytest.raises(StateError, match="serve"):
        _ = pg_home.home.db_url


@pytest.mark.postgres
def test_open_service_control_hands_over_to_the_role(pg_home):
    with pg_home.owner().begin() as conn:  # a query a killed worker left paid-for
        conn.execute(
            sa.insert(t.queries).values(
                id="abandoned", researcher_id="ada", project_id="gaps", status="accepted",
                cache_key="k", plan_digest="p", epsilon_micro=1, data_version="v",
                created_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )  # fmt: skip
    control = open_service_control(pg_home.home)
    assert control.engine.url.username == pg_home.role
    assert os.environ[DB_ROLE_ENV] == pg_home.role
    assert control.actor == "service"
    assert close_abandoned(control) == 1  # what serve does next, as the role
    with pg_home.owner().connect() as conn:
        status = conn.execute(sa.select(t.queries.c.status).where(t.queries.c.id == "abandoned"))
        assert status.scalar_one() == "failed"
        assert audit.read_entries(conn)[-1].action == "query.failed"
    # Even with the role already in the environment, setup runs as the owner.
    again = open_service_control(pg_home.home)
    assert again.engine is control.engine


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_with_its_workers_connected_as_the_service_role(pg_home, tmp_path, workers):
    admin = sa.create_engine(PG_ADMIN_URL)
    dispose_engines()  # the test's own (owner) connections: only the server's remain
    served = start_server(pg_home.home, workers=workers, log=tmp_path / "server.log")
    try:
        answer = httpx.post(
            f"{served.url}/v1/queries",
            json={"sql": SQL, "project": "gaps", "epsilon": "0.1"},
            headers={"Authorization": f"Bearer {pg_home.tokens['ada']}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "released"
        with admin.connect() as conn:
            users = conn.execute(
                sa.text(
                    "SELECT usename, count(*) FROM pg_stat_activity WHERE datname = :db "
                    "AND backend_type = 'client backend' GROUP BY usename"
                ),
                {"db": pg_home.database},
            ).all()
    finally:
        stop_server(served)
        admin.dispose()
    assert {user for user, _ in users} == {pg_home.role}, users
    assert len(ledger_rows(pg_home)) == 1
    output = served.log.read_text()
    assert f"Workers connect to PostgreSQL as role {pg_home.role}" in output
    password = read_secret(pg_home.home.service_secret)
    assert password not in output
    assert stat.S_IMODE(pg_home.home.service_secret.stat().st_mode) == 0o600
