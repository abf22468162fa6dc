"""Hunt group queues: callers waiting for a member, first come first served.

Pure bookkeeping, one :class:`HuntQueues` per node: the queue of each group
lives in this process's memory only (a call is on one node; sharing queues
between nodes is the scale-out issue's), and a restart empties it with the
calls it held.

Rules:
- a caller joins at the back; a full queue (``max_length`` waiting) refuses
  it, and the group overflows instead;
- a caller's place is its index among those still waiting, from 1; it moves
  up as the callers before it are put through or leave;
- members are offered to callers in arrival order: :meth:`HuntQueues.waiting`
  lists those not being put through now (:meth:`HuntQueues.ringing`), the
  first first; a caller whose member did not answer goes back to waiting
  in its old place;
- a caller waits ``max_wait`` seconds at most (:meth:`Waiting.expires`),
  and is offered a member again at least every ``RETRY`` seconds even when
  nothing seems to change (a member registers, turns do not disturb off);
- the position is said on joining, then every ``announce_position_every``
  seconds (0: only on joining).

Times are the controller's monotonic clock, passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from pbx.routing.hunt_groups import Condition, QueueSettings

RETRY: Final = 5.0
"""Seconds between offers of a member to a waiting caller when no call's
end or agent's log-in prompted one."""
POSITION_PHRASES: Final = 9
"""Places said as a number ("you are number 3 in the queue"); further back
callers hear ``queue_position_many``."""


def position_phrase(position: int) -> str:
    """The prompt that tells a caller its place in the queue."""
    return f"queue_position_{position}" if 1 <= position <= POSITION_PHRASES else "queue_position_many"


@dataclass(slots=True, eq=False)
class Waiting:
    """A caller in a group's queue."""

    key: str
    """The call's uuid."""
    group: str
    condition: Condition
    """Why it queued: the condition the group overflows on at the end."""
    call_class: str
    joined: float
    settings: QueueSettings
    ringing: bool = False
    """A member is being rung for it now."""
    retry_due: float = 0.0

    @property
    def expires(self) -> float:
        return self.joined + self.settings.max_wait

    def deadline(self) -> float:
        return self.expires if self.ringing else min(self.expires, self.retry_due)


@dataclass(slots=True)
class HuntQueues:
    """Every group's queue on this node, each in arrival order."""

    _queues: dict[str, list[Waiting]] = field(default_factory=dict)

    def join(self, group: str, key: str, condition: Condition, settings: QueueSettings, call_class: str,
             now: float) -> Waiting | None:
        """Put the call ``key`` at the back of ``group``'s queue; None when
        the queue is full."""
        queue = self._queues.setdefault(group, [])
        if len(queue) >= settings.max_length:
            if not queue:
                del self._queues[group]
            return None
        entry = Waiting(key=key, group=group, condition=condition, call_class=call_class, joined=now,
                        settings=settings, retry_due=now + RETRY)
        queue.append(entry)
        return entry

    def leave(self, entry: Waiting) -> None:
        queue = self._queues.get(entry.group)
        if queue is not None and entry in queue:
            queue.remove(entry)
            if not queue:
                del self._queues[entry.group]

    def position(self, entry: Waiting) -> int | None:
        """``entry``'s place, from 1; None once it left."""
        queue = self._queues.get(entry.group, [])
        return queue.index(entry) + 1 if entry in queue else None

    def waiting(self, group: str) -> list[Waiting]:
        """The callers of ``group`` to offer a member to, first come first."""
        return [entry for entry in self._queues.get(group, ()) if not entry.ringing]

    def ringing(self, entry: Waiting) -> None:
        entry.ringing = True

    def not_answered(self, entry: Waiting, now: float) -> None:
        """The member rung for ``entry`` did not take the call: back to
        waiting, in its old place; offered again after ``RETRY``."""
        entry.ringing = False
        entry.retry_due = now + RETRY

    def retried(self, entry: Waiting, now: float) -> None:
        entry.retry_due = now + RETRY

    def groups(self) -> list[str]:
        """Groups with callers waiting."""
        return list(self._queues)

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())
