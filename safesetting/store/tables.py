"""The control database's tables, declared once with SQLAlchemy Core.

Migrations (``migrations.py``) create them step by step; code reads and writes them through
the functions in ``registry.py``, ``ledger.py`` and ``auth.py``. ε is stored as integer
micro-ε (``BigInteger``), never as a float.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

ID = sa.String(64)
UTC_TIME = sa.DateTime(timezone=True)

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("applied_at", UTC_TIME, nullable=False),
)

# --- migration 1: the registry -----------------------------------------------------------
researchers = sa.Table(
    "researchers",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("organisation", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("accredited_until", sa.Date, nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.CheckConstraint("role IN ('researcher', 'auditor', 'admin')", name="researcher_role"),
)

tokens = sa.Table(
    "tokens",
    metadata,
    # SHA-256 hex of the token: the token itself is never stored.
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("researcher_id", ID, sa.ForeignKey("researchers.id"), nullable=False, index=True),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("expires_at", UTC_TIME, nullable=True),
    sa.Column("revoked_at", UTC_TIME, nullable=True),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("org_type", sa.String(32), nullable=False),
    sa.Column("purpose", sa.String(64), nullable=False),
    sa.Column("budget_micro", sa.BigInteger, nullable=False),
    sa.Column("expires", sa.Date, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("closed_at", UTC_TIME, nullable=True),
    sa.CheckConstraint("budget_micro > 0", name="project_budget_positive"),
    sa.CheckConstraint("status IN ('open', 'closed')", name="project_status"),
)

project_tables = sa.Table(
    "project_tables",
    metadata,
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("table_name", sa.String(64), primary_key=True),
)

project_columns = sa.Table(
    "project_columns",
    metadata,
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("column_name", sa.String(130), primary_key=True),
)

project_members = sa.Table(
    "project_members",
    metadata,
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("researcher_id", ID, sa.ForeignKey("researchers.id"), primary_key=True),
)

optouts = sa.Table(
    "optouts",
    metadata,
    sa.Column("upn", sa.String(13), primary_key=True),
    sa.Column("added_at", UTC_TIME, nullable=False),
)

# --- migration 2: the budget ledger ------------------------------------------------------
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False, index=True),
    sa.Column("query_id", ID, nullable=False, unique=True),
    sa.Column("epsilon_micro", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.CheckConstraint("epsilon_micro > 0", name="ledger_epsilon_positive"),
)

# One row, locked by every debit so that debits serialise on PostgreSQL (SQLite's
# BEGIN IMMEDIATE already holds the database write lock).
ledger_lock = sa.Table(
    "ledger_lock",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.CheckConstraint("id = 1", name="ledger_lock_single_row"),
)

# --- migration 3: policy versions seen -----------------------------------------------------
policy_versions = sa.Table(
    "policy_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("recorded_at", UTC_TIME, nullable=False),
)

# --- migration 4: queries and the release cache -------------------------------------------
# One row per accepted query. ``result`` holds only what was released (noisy values and
# error bounds, as JSON): it is the release cache and lets a researcher read a result again.
queries = sa.Table(
    "queries",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("researcher_id", ID, nullable=False),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),  # accepted | released | failed
    sa.Column("cache_key", sa.String(64), nullable=False, index=True),
    sa.Column("plan_digest", sa.String(64), nullable=False),
    sa.Column("epsilon_micro", sa.BigInteger, nullable=False),
    sa.Column("data_version", sa.String(64), nullable=False),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("released_at", UTC_TIME, nullable=True),
)
