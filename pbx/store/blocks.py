"""Blocked source addresses kept in SQL, so a block outlives a restart and
holds on every PBX node sharing the database.

Methods take an optional ``conn`` exactly like `pbx.store.bindings`: without
it they commit on their own, with it they join the caller's transaction
(``writer.submit(lambda conn: blocks.block(..., conn=conn))``).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, Engine, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from pbx.store.db import transaction
from pbx.store.models import Base, BlockedSource, require_aware

BLOCKS: Final[Table] = Base.metadata.tables[BlockedSource.__tablename__]


def canonical_source(source: str) -> str:
    """The canonical text of an IP address ("::ffff:0:1" and "::FFFF:0:1"
    are one source); ValueError if `source` is not an IP address."""
    try:
        return str(ipaddress.ip_address(source))
    except ValueError:
        raise ValueError("source must be an IP address") from None


class BlockStore:
    """Reads and writes ``blocked_sources``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def block(
        self,
        source: str,
        until: datetime,
        reason: str,
        failures: int,
        conn: Connection | None = None,
        *,
        created_at: datetime | None = None,
    ) -> None:
        """Block `source` until `until`, or move an existing block's end,
        reason and failure count (its `created_at` is kept).

        `created_at` defaults to the current time.
        """
        key = canonical_source(source)
        require_aware("until", until)
        if created_at is None:
            created_at = datetime.now(UTC)
        require_aware("created_at", created_at)
        if failures < 0:
            raise ValueError("failures must not be negative")
        if not reason:
            raise ValueError("reason must not be empty")
        values = {
            "source": key,
            "blocked_until": until,
            "reason": reason,
            "failures": failures,
            "created_at": created_at,
        }
        updates = {"blocked_until": until, "reason": reason, "failures": failures}
        with transaction(self._engine, conn) as c:
            name = c.dialect.name
            if name == "postgresql":
                pg = postgresql.insert(BLOCKS).values(values)
                c.execute(pg.on_conflict_do_update(index_elements=["source"], set_=updates))
            elif name == "sqlite":
                lite = sqlite.insert(BLOCKS).values(values)
                c.execute(lite.on_conflict_do_update(index_elements=["source"], set_=updates))
            else:
                raise NotImplementedError(f"upsert not supported on {name}")

    def active(self, now: datetime, conn: Connection | None = None) -> dict[str, datetime]:
        """Source to block end, for every block still in force at `now`."""
        require_aware("now", now)
        query = select(BLOCKS.c.source, BLOCKS.c.blocked_until).where(
            BLOCKS.c.blocked_until > now
        )
        with transaction(self._engine, conn) as c:
            return {row.source: row.blocked_until for row in c.execute(query)}

    def unblock(self, source: str, conn: Connection | None = None) -> int:
        """Lift the block on `source`; rows removed (0 or 1)."""
        key = canonical_source(source)
        with transaction(self._engine, conn) as c:
            return c.execute(delete(BLOCKS).where(BLOCKS.c.source == key)).rowcount

    def sweep(self, now: datetime, conn: Connection | None = None) -> int:
        """Delete blocks that ended at or before `now`; returns how many."""
        require_aware("now", now)
        with transaction(self._engine, conn) as c:
            return c.execute(delete(BLOCKS).where(BLOCKS.c.blocked_until <= now)).rowcount
