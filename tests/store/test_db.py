"""Engine construction, SQLite settings and Alembic migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from pbx.store.db import (
    DatabaseUrlError,
    alembic_config,
    current_revision,
    make_engine,
    migrate,
    normalise_url,
)
from pbx.store.models import load_all_models


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://pbx:pw@db.example/pbx",
        "postgres://pbx:pw@db.example/pbx",
        "postgresql+psycopg://pbx:pw@db.example/pbx",
    ],
)
def test_postgres_urls_use_psycopg(url: str) -> None:
    parsed = normalise_url(url)
    assert parsed.drivername == "postgresql+psycopg"
    assert (parsed.host, parsed.database, parsed.password) == ("db.example", "pbx", "pw")
    engine = make_engine(url)  # does not connect yet
    assert engine.dialect.name == "postgresql"
    assert engine.dialect.driver == "psycopg"


def test_postgres_query_options_are_kept() -> None:
    parsed = normalise_url("postgres://u@h/db?options=-csearch_path%3Dpbx")
    assert parsed.query["options"] == "-csearch_path=pbx"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://root:hunter2@localhost/pbx", "unsupported database backend 'mysql'"),
        ("postgresql+asyncpg://root:hunter2@localhost/pbx", "unsupported PostgreSQL driver"),
        ("sqlite+aiosqlite:///x.db", "unsupported SQLite driver"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("not a url hunter2", "could not parse"),
    ],
)
def test_bad_urls_are_refused_without_leaking_the_password(url: str, problem: str) -> None:
    with pytest.raises(DatabaseUrlError) as caught:
        make_engine(url)
    assert problem in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_relative_sqlite_path_creates_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    engine = make_engine("sqlite:///var/pbx.sqlite3")
    try:
        assert (tmp_path / "var").is_dir()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert (tmp_path / "var" / "pbx.sqlite3").is_file()
    finally:
        engine.dispose()


def test_absolute_sqlite_path_and_connection_settings(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "pbx.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert path.is_file()
    finally:
        engine.dispose()


def test_migrate_creates_the_schema_and_is_idempotent(engine: Engine) -> None:
    assert current_revision(engine) is None
    migrate(engine)
    assert current_revision(engine) == head_revision()
    migrate(engine)
    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"registration_bindings", "blocked_sources", "alembic_version"} <= tables
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_models_match_the_migrations(migrated: Engine) -> None:
    # Autogenerate finds nothing to do: every model module and versions/ agree.
    metadata = load_all_models()
    with migrated.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_unique_index_and_constraints_exist(migrated: Engine) -> None:
    inspector = inspect(migrated)
    uniques = inspector.get_unique_constraints("registration_bindings")
    assert [u["column_names"] for u in uniques] == [["aor", "contact"]]
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("registration_bindings")}
    assert indexes["ix_registration_bindings_expires_at"] == ["expires_at"]
    checks = {c["name"] for c in inspector.get_check_constraints("registration_bindings")}
    assert "ck_registration_bindings_transport" in checks


def test_downgrade_to_base_and_back(migrated: Engine) -> None:
    migrate(migrated, "head")
    config = alembic_config()
    with migrated.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert "registration_bindings" not in inspect(migrated).get_table_names()
    migrate(migrated)
    assert current_revision(migrated) == head_revision()


# Each child imports everything, says "ready", and migrates when told to, so
# the upgrades really overlap instead of being staggered by start-up time.
MIGRATE_SCRIPT = """
import sys
from pbx.store.db import make_engine, migrate
engine = make_engine(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
migrate(engine)
"""


def test_concurrent_migrations_from_several_processes(db_url: str) -> None:
    # Several nodes starting at once: without the advisory lock (PostgreSQL)
    # or BEGIN IMMEDIATE (SQLite) two would both find no alembic_version
    # table, both CREATE TABLE, and all but one would fail.
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_SCRIPT, db_url],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in outcomes]
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
