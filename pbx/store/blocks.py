"""Blocks kept in SQL, so a block outlives a restart and holds on every PBX
node sharing the database. A block is on a (source address, username) pair;
the empty username (`ANY_USER`) covers every username from the source.

Methods take an optional ``conn`` exactly like `pbx.store.bindings`: without
it they commit on their own, with it they join the caller's transaction
(``writer.submit(lambda conn: blocks.block(..., conn=conn))``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, Engine, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from pbx.store.db import transaction
from pbx.store.models import Base, BlockedSource, require_aware

BLOCKS: Final[Table] = Base.metadata.tables[BlockedSource.__tablename__]
ANY_USER: Final = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredBlock:
    source: str
    username: str
    until: datetime
    reason: str
    failures: int
    created_at: datetime


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
        username: str = ANY_USER,
        created_at: datetime | None = None,
    ) -> None:
        """Block `username` (default: every username) from `source` until
        `until`, or move an existing block's end, reason and failure count
        (its `created_at` is kept).

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
            "username": username,
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
                c.execute(pg.on_conflict_do_update(index_elements=["source", "username"], set_=updates))
            elif name == "sqlite":
                lite = sqlite.insert(BLOCKS).values(values)
                c.execute(lite.on_conflict_do_update(index_elements=["source", "username"], set_=updates))
            else:
                raise NotImplementedError(f"upsert not supported on {name}")

    def active(self, now: datetime, conn: Connection | None = None) -> list[StoredBlock]:
        """Every block still in force at `now`, soonest to end first."""
        require_aware("now", now)
        query = select(BLOCKS).where(BLOCKS.c.blocked_until > now).order_by(
            BLOCKS.c.blocked_until, BLOCKS.c.source, BLOCKS.c.username)
        with transaction(self._engine, conn) as c:
            return [
                StoredBlock(source=row.source, username=row.username, until=row.blocked_until, reason=row.reason,
                            failures=row.failures, created_at=row.created_at)
                for row in c.execute(query)
            ]

    def unblock(self, source: str | None = None, username: str | None = None,
                conn: Connection | None = None) -> int:
        """Lift blocks: on `source` (all of its usernames unless `username`
        is given), or every block when `source` is None; rows removed."""
        query = delete(BLOCKS)
        if source is not None:
            query = query.where(BLOCKS.c.source == canonical_source(source))
        if username is not None:
            query = query.where(BLOCKS.c.username == username)
        with transaction(self._engine, conn) as c:
            return c.execute(query).rowcount

    def sweep(self, now: datetime, conn: Connection | None = None) -> int:
        """Delete blocks that ended at or before `now`; returns how many."""
        require_aware("now", now)
        with transaction(self._engine, conn) as c:
            return c.execute(delete(BLOCKS).where(BLOCKS.c.blocked_until <= now)).rowcount
