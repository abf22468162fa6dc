"""Administrators' overrides of schedules (``pbx hours``), kept in SQL so
they outlive a restart and hold on every node sharing the database.

One row per schedule (or ``*`` for every schedule): open or closed, until
a time or until cleared. The server reads them at start-up, every few
seconds and on SIGHUP; a call uses what was read last
(:func:`pbx.routing.ivr.hours_state`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import Engine, Table, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from pbx.routing.ivr import HoursMode, HoursOverride
from pbx.store.models import Base, HoursOverrideRow, require_aware

HOURS: Final[Table] = Base.metadata.tables[HoursOverrideRow.__tablename__]


class HoursStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def set(self, schedule: str, mode: HoursMode, until: datetime | None, now: datetime) -> None:
        """Force ``schedule`` open or closed from ``now`` (until ``until``)."""
        require_aware("now", now)
        if until is not None:
            require_aware("until", until)
            if until <= now:
                raise ValueError("the override would end before it starts")
        if mode not in ("open", "closed"):
            raise ValueError("mode is open or closed")
        values = {"schedule": schedule, "mode": mode, "until": until, "set_at": now}
        with self._engine.begin() as conn:
            insert = postgresql.insert(HOURS) if conn.dialect.name == "postgresql" else sqlite.insert(HOURS)
            conn.execute(insert.values(values).on_conflict_do_update(
                index_elements=["schedule"], set_={k: v for k, v in values.items() if k != "schedule"}))

    def clear(self, schedule: str | None = None) -> int:
        """Back to the schedule itself: one schedule's override, or all."""
        statement = delete(HOURS)
        if schedule is not None:
            statement = statement.where(HOURS.c.schedule == schedule)
        with self._engine.begin() as conn:
            return conn.execute(statement).rowcount

    def active(self, now: datetime) -> dict[str, HoursOverride]:
        """Overrides in force at ``now``, by schedule."""
        require_aware("now", now)
        query = select(HOURS).where(or_(HOURS.c.until.is_(None), HOURS.c.until > now))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return {row.schedule: HoursOverride(schedule=row.schedule, mode="open" if row.mode == "open" else "closed",
                                            until=row.until) for row in rows}
