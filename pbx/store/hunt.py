"""Hunt groups' lasting state in SQL: ``hunt_member_state`` and
``hunt_group_state`` (see :mod:`pbx.calls.hunt_state` for what it means).

Every write is an upsert of a whole row, so a write repeated or regrouped
by the `BackgroundWriter` leaves one row. Methods take an optional ``conn``
as in :mod:`pbx.store.bindings`: alone they commit, inside a batch they
do not.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, Engine, Table, select

from pbx.calls.hunt_state import GroupRecord, HuntState, MemberRecord, Record
from pbx.store.change_events import announce
from pbx.store.db import transaction, upsert
from pbx.store.models import Base, HuntGroupState, HuntMemberState

MEMBERS: Final[Table] = Base.metadata.tables[HuntMemberState.__tablename__]
GROUPS: Final[Table] = Base.metadata.tables[HuntGroupState.__tablename__]


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _values(record: Record) -> tuple[Table, dict[str, Any], tuple[str, ...]]:
    if isinstance(record, MemberRecord):
        return MEMBERS, {
            "group_number": record.group, "member": record.member, "logged_in": record.logged_in,
            "login_changed_at": _at(record.login_changed_at), "last_answered_at": _at(record.last_answered_at),
            "last_ended_at": _at(record.last_ended_at), "calls_day": record.calls_day,
            "calls_count": record.calls_count,
        }, ("group_number", "member")
    return GROUPS, {"group_number": record.group, "last_member": record.last_member,
                    "updated_at": _at(record.updated_at)}, ("group_number",)


def _member(row: Mapping[Any, Any]) -> MemberRecord:
    return MemberRecord(group=row["group_number"], member=row["member"], logged_in=bool(row["logged_in"]),
                        login_changed_at=_seconds(row["login_changed_at"]),
                        last_answered_at=_seconds(row["last_answered_at"]),
                        last_ended_at=_seconds(row["last_ended_at"]), calls_day=row["calls_day"],
                        calls_count=int(row["calls_count"]))


class HuntStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def load(self, conn: Connection | None = None) -> list[Record]:
        """Every row of both tables."""
        with transaction(self._engine, conn) as c:
            members: list[Record] = [_member(row._mapping) for row in c.execute(select(MEMBERS))]
            groups: list[Record] = [
                GroupRecord(group=row.group_number, last_member=row.last_member, updated_at=_seconds(row.updated_at))
                for row in c.execute(select(GROUPS))]
        return members + groups

    def member(self, group: str, member: str, conn: Connection | None = None) -> MemberRecord:
        """The member's row, or the defaults (logged in, no calls yet)."""
        query = select(MEMBERS).where(MEMBERS.c.group_number == group, MEMBERS.c.member == member)
        with transaction(self._engine, conn) as c:
            row = c.execute(query).first()
        return _member(row._mapping) if row is not None else MemberRecord(group=group, member=member)

    def save(self, record: Record, conn: Connection | None = None) -> None:
        """Insert the row, or replace the one with the same key."""
        table, values, key = _values(record)
        with transaction(self._engine, conn) as c:
            upsert(c, table, values, key)


def set_agent_login(engine: Engine, groups: list[str], member: str, logged_in: bool, now: float) -> None:
    """Log ``member`` in to (or out of) each of ``groups`` in one transaction,
    as ``pbx hunt login|logout`` and the HTTP API do; running servers hear
    of it at once on PostgreSQL (``pbx.store.change_events``), on their next
    sweep otherwise."""
    store = HuntStore(engine)
    with engine.begin() as conn:
        for group in groups:
            record = store.member(group, member, conn=conn)
            state = HuntState(save=lambda r: store.save(r, conn=conn))
            state.merge([record])
            state.set_login(group, member, logged_in, now)
        announce(conn, "admin", "hunt", groups)
