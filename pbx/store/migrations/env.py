"""Alembic environment of the PBX schema.

Two ways in:

* `pbx.store.db.migrate(engine)`: the running PBX.  It opens the transaction,
  takes the migration lock and passes the connection in
  ``config.attributes["connection"]``; this file only runs the migrations in
  it and leaves committing to the caller.
* The ``alembic`` command with ``-c pbx/store/alembic.ini``: a developer
  writing a migration.  The database URL comes from ``PBX_DATABASE_URL`` or
  the ini file.

Autogenerate compares against every module in
`pbx.store.models.MODEL_MODULES`.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from pbx.store.db import make_engine
from pbx.store.models import UtcDateTime, load_all_models

config = context.config
target_metadata = load_all_models()


def _render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Migrations must not import the models (they are frozen snapshots), so
    # our column type is written as the plain type it stores as.
    if kind == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**options: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=_render_item,
        **options,
    )


def _run_on(connection: Connection) -> None:
    # SQLite cannot ALTER most things; batch mode copies the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def _database_url() -> str:
    url = os.environ.get("PBX_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set PBX_DATABASE_URL or sqlalchemy.url in the ini file")
    return url


def run_offline() -> None:
    """Write the SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    _configure(url=_database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = make_engine(_database_url())
    try:
        with engine.begin() as own_connection:
            _run_on(own_connection)
    finally:
        engine.dispose()


if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_offline()
else:
    run_online()
