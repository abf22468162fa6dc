"""Conference PIN entries and lock-out, pure.

Wrong PINs count per source (the calling extension, or the trunk a call
came in over: a number presented by a trunk is whatever the caller chose,
so it cannot be what counts) with the account codes' rules
(:mod:`pbx.accountcodes.lockout`): ``failures`` wrong PINs within
``window`` seconds lock the source out of every room for
``lock_seconds``; while locked, entries are not even compared (a guesser
learns nothing). A right PIN clears the count. The counts live in the
process: a restart forgives, which costs a guesser a restart of the PBX.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pbx.accountcodes.lockout import LockoutPolicy, SourceState, after_failure, after_success, locked
from pbx.routing.conferences import Conference, Role

Verdict = Literal["member", "moderator", "invalid", "locked"]


class PinGate:
    """Every room's PIN checks, with one lock-out count per source."""

    def __init__(self, policy: LockoutPolicy = LockoutPolicy()) -> None:
        self.policy = policy
        self._sources: dict[str, SourceState] = {}

    def locked(self, source: str, now: datetime) -> bool:
        return locked(self._sources.get(source), now)

    def check(self, room: Conference, entry: str, source: str, now: datetime) -> Verdict:
        """What ``entry`` keyed in ``room`` from ``source`` at ``now`` amounts to."""
        state = self._sources.get(source)
        if locked(state, now):
            return "locked"
        role: Role | None = room.role_for(entry)
        if role is not None:
            cleared = after_success(state)
            if cleared is None or (cleared.failures == 0 and cleared.locked_until is None):
                self._sources.pop(source, None)
            else:
                self._sources[source] = cleared
            return role
        self._sources[source], now_locked = after_failure(state, source, now, self.policy)
        return "locked" if now_locked else "invalid"
