"""The agents' lasting state, in memory: log-ins, the round-robin position,
when each member's last group call ended, today's call counts.

The store (:mod:`pbx.store.hunt`) holds the truth, so the state survives
restarts and reloads and PBX nodes sharing one database share it; this is
its cache on one node. Every change is handed to ``save`` as a whole row
(written behind, by the store's writer thread), and :meth:`HuntState.merge`
takes in what the store holds (read at start and every few seconds), so a
log-in from another node or from ``pbx hunt login`` shows here.

Merging never goes back in time: a log-in state is taken when it was set
later than the one held here, timestamps and today's counts only grow. So a
read that raced a write of ours not yet committed changes nothing.

Pure: times are wall-clock seconds passed in; no clock, no SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberRecord:
    """One member of one group (a row of ``hunt_members``)."""

    group: str
    member: str
    logged_in: bool = True
    """Members start logged in: a new group works without a log-in round."""
    login_changed_at: float | None = None
    last_answered_at: float | None = None
    last_ended_at: float | None = None
    calls_day: str | None = None
    """The day (``YYYY-MM-DD`` in the plan's zone) ``calls_count`` counts."""
    calls_count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupRecord:
    """One group (a row of ``hunt_groups``): who last took a call."""

    group: str
    last_member: str | None = None
    updated_at: float | None = None


Record = MemberRecord | GroupRecord


def _later(mine: float | None, theirs: float | None) -> float | None:
    if mine is None:
        return theirs
    return mine if theirs is None else max(mine, theirs)


class HuntState:
    """The cache; :class:`pbx.calls.hunt.HuntView` for the planner."""

    def __init__(self, save: Callable[[Record], None] | None = None) -> None:
        self.save = save
        self._members: dict[tuple[str, str], MemberRecord] = {}
        self._groups: dict[str, GroupRecord] = {}

    # ------------------------------------------------------------ reading

    def record(self, group: str, member: str) -> MemberRecord:
        return self._members.get((group, member)) or MemberRecord(group=group, member=member)

    def logged_in(self, group: str, member: str) -> bool:
        return self.record(group, member).logged_in

    def last_member(self, group: str) -> str | None:
        found = self._groups.get(group)
        return found.last_member if found is not None else None

    def idle_since(self, member: str) -> float | None:
        """When the member's latest group call (in any group) ended, or was
        answered if it has not ended yet: a member still on that call has
        not been idle since the one before."""
        latest: float | None = None
        for (_, key), record in self._members.items():
            if key == member:
                latest = _later(latest, _later(record.last_ended_at, record.last_answered_at))
        return latest

    def calls_today(self, group: str, member: str, day: str) -> int:
        record = self.record(group, member)
        return record.calls_count if record.calls_day == day else 0

    # ------------------------------------------------------------ changing

    def _put(self, record: Record) -> None:
        if isinstance(record, MemberRecord):
            self._members[(record.group, record.member)] = record
        else:
            self._groups[record.group] = record
        if self.save is not None:
            self.save(record)

    def set_login(self, group: str, member: str, logged_in: bool, at: float) -> None:
        self._put(replace(self.record(group, member), logged_in=logged_in, login_changed_at=at))

    def answered(self, group: str, member: str, at: float, day: str) -> None:
        record = self.record(group, member)
        count = record.calls_count + 1 if record.calls_day == day else 1
        self._put(replace(record, last_answered_at=at, calls_day=day, calls_count=count))
        self._put(GroupRecord(group=group, last_member=member, updated_at=at))

    def ended(self, group: str, member: str, at: float) -> None:
        self._put(replace(self.record(group, member), last_ended_at=at))

    # ------------------------------------------------------------ the store

    def merge(self, records: Iterable[Record]) -> None:
        """Take in rows read from the store (see the module docstring)."""
        for theirs in records:
            if isinstance(theirs, GroupRecord):
                mine_group = self._groups.get(theirs.group)
                if mine_group is None or (theirs.updated_at or 0) > (mine_group.updated_at or 0):
                    self._groups[theirs.group] = theirs
                continue
            mine = self._members.get((theirs.group, theirs.member))
            if mine is None:
                self._members[(theirs.group, theirs.member)] = theirs
                continue
            login = theirs if (theirs.login_changed_at or 0) > (mine.login_changed_at or 0) else mine
            if mine.calls_day == theirs.calls_day:
                day, count = mine.calls_day, max(mine.calls_count, theirs.calls_count)
            else:
                newer = max(mine, theirs, key=lambda r: r.calls_day or "")
                day, count = newer.calls_day, newer.calls_count
            self._members[(theirs.group, theirs.member)] = replace(
                mine, logged_in=login.logged_in, login_changed_at=login.login_changed_at,
                last_answered_at=_later(mine.last_answered_at, theirs.last_answered_at),
                last_ended_at=_later(mine.last_ended_at, theirs.last_ended_at), calls_day=day, calls_count=count)

    def records(self) -> list[Record]:
        return [*self._members.values(), *self._groups.values()]
