"""Calls in progress per extension and node (``extension_calls``), so every
node sharing the store knows who is busy (``pbx.calls.presence``).

A node writes its own count of an extension's calls whenever it changes
(a row per extension it has calls for, none at zero) and announces the
extension (``pbx.store.change_events``, topic ``presence``); the others
read the sum over the other nodes. A node's rows go when it starts (what
it held died with it) and when another node finds it dead.

Functions take a `Connection` and do not commit: run them as
`BackgroundWriter` ops, or inside ``engine.begin()``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from pbx.store.models import Base, ExtensionCalls, require_aware

CALLS: Final[Table] = Base.metadata.tables[ExtensionCalls.__tablename__]


def set_calls(node: str, extension: str, calls: int, now: datetime, conn: Connection) -> None:
    """``extension`` is on ``calls`` calls through ``node`` now."""
    require_aware("now", now)
    if calls <= 0:
        conn.execute(delete(CALLS).where(CALLS.c.node == node, CALLS.c.extension == extension))
        return
    insert = (postgresql.insert(CALLS) if conn.dialect.name == "postgresql" else sqlite.insert(CALLS)).values(
        node=node, extension=extension, calls=calls, updated_at=now)
    conn.execute(insert.on_conflict_do_update(
        index_elements=["node", "extension"], set_={"calls": calls, "updated_at": now}))


def elsewhere(node: str, extensions: Collection[str] | None, conn: Connection) -> dict[str, int]:
    """The calls of ``extensions`` (None: every extension) through nodes
    other than ``node``; every extension asked for is in the answer."""
    query = select(CALLS.c.extension, func.sum(CALLS.c.calls).label("calls")).where(CALLS.c.node != node)
    if extensions is not None:
        query = query.where(CALLS.c.extension.in_(list(extensions)))
    found = {row.extension: int(row.calls) for row in conn.execute(query.group_by(CALLS.c.extension))}
    return {**{extension: 0 for extension in extensions or ()}, **found}


def forget_node(node: str, conn: Connection) -> list[str]:
    """Drop ``node``'s rows (it died, or starts again); the extensions they named."""
    gone = [row.extension for row in conn.execute(select(CALLS.c.extension).where(CALLS.c.node == node))]
    conn.execute(delete(CALLS).where(CALLS.c.node == node))
    return gone
