"""Engine construction and schema migration.

Supported URLs:

* ``sqlite:///var/pbx.sqlite3``: a file relative to the working directory,
  ``sqlite:////abs/path.sqlite3``: an absolute one.  The parent directory is
  created.  Single-node deployments.
* ``postgresql+psycopg://user@host/db`` (``postgresql://`` and
  ``postgres://`` mean the same): several PBX nodes sharing one database.
  libpq options ride in the query string, e.g.
  ``?options=-csearch_path%3Dpbx`` to use a schema other than ``public``.

The engine is synchronous on purpose: it is used from the `BackgroundWriter`
thread (and at start-up), never from the asyncio SIP path.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic itself is imported where a migration runs: it costs about half a
# second of start-up, and the many short commands that only read the store
# (`pbx cdr list`, `pbx codes ...`) never migrate.

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

# Key of the PostgreSQL advisory lock held while migrating, so nodes started
# together upgrade one after the other.  Any constant works; this one spells
# "pbxmigr" in ASCII.
MIGRATION_LOCK_KEY: Final = 0x7062786D69677272

SQLITE_BUSY_TIMEOUT_MS: Final = 5000

# Alembic keeps the running migration in module globals (alembic.context,
# alembic.op), so two threads of one process must not migrate at once.
_MIGRATING_IN_THIS_PROCESS: Final = threading.Lock()


class DatabaseUrlError(ValueError):
    """The database URL is malformed or names an unsupported backend."""


def normalise_url(url: str) -> URL:
    """Parse `url` and map the PostgreSQL spellings onto the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # The message of ArgumentError repeats the URL, password included.
        raise DatabaseUrlError("could not parse the database URL") from None
    # Split by hand: asking SQLAlchemy would load the dialect, and it has no
    # "postgres" (the alias Heroku and others hand out).
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise DatabaseUrlError(
                f"unsupported PostgreSQL driver {driver!r}: use postgresql+psycopg://"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise DatabaseUrlError(f"unsupported SQLite driver {driver!r}: use sqlite:///")
        if not parsed.database or parsed.database == ":memory:":
            # Each pooled connection would get its own empty database.
            raise DatabaseUrlError("an in-memory SQLite database cannot hold PBX state")
        return parsed
    raise DatabaseUrlError(
        f"unsupported database backend {backend!r}: use sqlite:/// or postgresql+psycopg://"
    )


def make_engine(url: str, **engine_options: Any) -> Engine:
    """Create a synchronous engine for `url` with the PBX's connection settings.

    `engine_options` go to `sqlalchemy.create_engine` unchanged (e.g. `echo`).
    Raises `DatabaseUrlError` for URLs it cannot use; the message never
    contains the password.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        if not parsed.database.startswith("file:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        sqlite3.register_adapter(type(None), _null)
        engine = create_engine(parsed, **engine_options)
        event.listen(engine, "connect", _configure_sqlite_connection)
        return engine
    engine_options.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **engine_options)


def _null(value: None) -> None:
    """Python's sqlite3 binds None as NULL either way. Without an adapter
    registered for None it first looks for one by two failing attribute
    lookups per value (``__adapt__``, ``__conform__``): a CDR row has about
    thirty NULLs, and that search was a seventh of the CDR writer's
    instructions. With this adapter (process-wide, harmless to any other
    user of sqlite3) one dictionary lookup finds it."""
    return value


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers never wait for the writer thread, and a commit is one
        # append to the log.  With synchronous=NORMAL the log is not fsync'd
        # on each commit, only at checkpoints: a committed transaction survives
        # the process being killed (kill -9, crash) because the data is already
        # in the OS page cache, but the last few may be lost on power loss or
        # a kernel panic.  Surviving a process kill is the requirement (a
        # committed CDR must outlive kill -9); use FULL if power loss matters.
        #
        # Wait for another writer (a second process, a migration) instead of
        # failing at once with "database is locked".
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS:d}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        # SQLite leaves foreign keys unenforced unless asked, per connection.
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    # Turning WAL on (once per database file; it persists) needs an exclusive
    # lock, and SQLite answers "database is locked" at once instead of using
    # the busy timeout when another process holds a lock at that moment.  Only
    # new databases hit this, when several processes open one together.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def alembic_config() -> Config:
    """Alembic configuration pointing at the migrations shipped in the package.

    No alembic.ini is read: the caller passes the connection through
    `config.attributes["connection"]` (see `migrations/env.py`).
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to `revision` (default: the newest).

    Idempotent, and safe when several processes call it at once:

    * PostgreSQL: a transaction-scoped advisory lock serialises migrations;
      its DDL is transactional, so a failed upgrade leaves nothing behind and
      the lock is released by the commit or rollback.
    * SQLite: ``BEGIN IMMEDIATE`` takes the database write lock for the whole
      upgrade (others wait up to the busy timeout), and SQLite's DDL is
      transactional too.
    * Threads of one process take turns (Alembic's state is global).
    """
    from alembic import command

    config = alembic_config()
    with _MIGRATING_IN_THIS_PROCESS, engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        elif connection.dialect.name == "sqlite":
            # The sqlite3 module only opens a transaction before DML by itself;
            # start one explicitly so the DDL runs inside it.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None before any migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def transaction(engine: Engine, conn: Connection | None = None) -> Iterator[Connection]:
    """`conn` itself if given (the caller owns its transaction), else a new
    connection in a transaction committed on success, rolled back on error.

    The stores use it so each method works alone or as part of a batch.
    """
    if conn is not None:
        yield conn
        return
    with engine.begin() as owned:
        yield owned


def upsert(conn: Connection, table: Table, values: dict[str, Any], key: tuple[str, ...]) -> None:
    """Insert ``values`` into ``table``, or replace every other column of the
    row with the same ``key`` columns (one statement, on both backends)."""
    updates = {name: value for name, value in values.items() if name not in key}
    name = conn.dialect.name
    if name == "postgresql":
        pg = postgresql.insert(table).values(values)
        conn.execute(pg.on_conflict_do_update(index_elements=list(key), set_=updates))
    elif name == "sqlite":
        lite = sqlite.insert(table).values(values)
        conn.execute(lite.on_conflict_do_update(index_elements=list(key), set_=updates))
    else:
        raise NotImplementedError(f"upsert not supported on {name}")
