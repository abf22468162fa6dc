"""Migration 0002 and the CDR models agree, on both backends."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

import pbx.cdr.models  # noqa: F401  (puts cdr and cdr_legs on Base.metadata)
from pbx.store.db import alembic_config, current_revision, migrate
from pbx.store.models import Base


def test_models_match_the_migrations(migrated: Engine) -> None:
    assert {"cdr", "cdr_legs"} <= set(Base.metadata.tables)
    with migrated.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_constraints_indexes_and_comments_exist(migrated: Engine) -> None:
    inspector = inspect(migrated)
    uniques = [u["column_names"] for u in inspector.get_unique_constraints("cdr")]
    assert uniques == [["call_uuid"]]
    leg_uniques = [u["column_names"] for u in inspector.get_unique_constraints("cdr_legs")]
    assert leg_uniques == [["call_uuid", "attempt"]]
    [foreign] = inspector.get_foreign_keys("cdr_legs")
    assert (foreign["referred_table"], foreign["referred_columns"]) == ("cdr", ["call_uuid"])
    checks = {c["name"] for c in inspector.get_check_constraints("cdr")}
    assert {
        "ck_cdr_ended_after_start",
        "ck_cdr_billsec",
        "ck_cdr_disposition",
        "ck_cdr_ended_complete",
    } <= checks
    indexes = {i["name"] for i in inspector.get_indexes("cdr")}
    assert {"ix_cdr_started_at", "ix_cdr_call_id", "ix_cdr_node_ended_at"} <= indexes
    if migrated.dialect.name == "postgresql":  # SQLite keeps no comments
        columns = {c["name"]: c for c in inspector.get_columns("cdr")}
        assert "Seconds from answer to end" in (columns["billsec"]["comment"] or "")


def test_downgrade_to_0001_drops_only_the_cdr_tables(migrated: Engine) -> None:
    config = alembic_config()
    with migrated.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")
    tables = set(inspect(migrated).get_table_names())
    assert "cdr" not in tables and "cdr_legs" not in tables
    assert "registration_bindings" in tables
    assert current_revision(migrated) == "0001"
    migrate(migrated)
    assert current_revision(migrated) == ScriptDirectory.from_config(config).get_current_head()
    assert {"cdr", "cdr_legs"} <= set(inspect(migrated).get_table_names())
