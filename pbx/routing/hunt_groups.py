"""Hunt groups: a team behind one number (a sales line, a help desk).

A hunt group has a number (its key: callers dial it, DIDs name it), a name
shown to its members (``Sales: 0912345678``), members, and a strategy that
says in which order they ring:

- ``linear``: top-down, always from the first member;
- ``circular``: round robin, starting after the member who last took a call;
- ``ring_all``: every member at once; the first to answer wins;
- ``longest_idle``: the member whose last call ended longest ago first;
- ``random``: a random order, members with a higher ``weight`` earlier more often;
- ``fewest_calls``: the member who took the fewest group calls today first.

Members sit in tiers: tier 1 rings (by the strategy) before tier 2 starts.
A member rings for its own ``ring_seconds`` (else the group's
``member_seconds``), the whole group for at most ``total_seconds``; the
sequential strategies go round the members again while time is left.

When a call cannot be answered the group overflows, each condition to its
own destination (:class:`Overflow`): ``no_answer`` (the group's time ran
out, or every member rang out), ``busy`` (every member available was busy),
``nobody_logged_in`` and ``none_registered``. A destination is an
extension, another hunt group, an outside number (placed with the group's
rights), an IVR menu, or an announcement (a prompt said before the caller
is let go).

A group may queue its callers instead (:class:`QueueSettings`) when every
member is busy, or when nobody answered in the group's time: the caller is
answered, hears its place in the queue and music, and is put through to
the first member who frees up, first come first served; past the longest
wait, or into a full queue, the call overflows as above.

A group may be in force only during (or outside) a schedule, with an
``otherwise`` group for the rest of the time: a day team and a night team
behind one number.

Pure data (frozen dataclasses); the loader builds them, the engine decides
with them, :mod:`pbx.calls.hunt` orders the members.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal

from pbx.routing.calendars import Schedule

Strategy = Literal["linear", "circular", "ring_all", "longest_idle", "random", "fewest_calls"]
STRATEGIES: Final[tuple[Strategy, ...]] = ("linear", "circular", "ring_all", "longest_idle", "random",
                                           "fewest_calls")
Condition = Literal["no_answer", "busy", "nobody_logged_in", "none_registered"]
CONDITIONS: Final[tuple[Condition, ...]] = ("no_answer", "busy", "nobody_logged_in", "none_registered")

DEFAULT_MEMBER_SECONDS: Final = 20
DEFAULT_TOTAL_SECONDS: Final = 60
MAX_ROUNDS: Final = 10
"""How many times the sequential strategies go round the members at most,
however long the group's time: every member answering busy at once must not
turn into a storm of INVITEs."""

LOGIN_CODE: Final = "*45"
LOGOUT_CODE: Final = "*46"
"""Agent feature codes: ``*45`` + group number logs in to that group,
``*46`` + group number logs out; ``*45`` alone toggles every group the
caller is a member of, ``*46`` alone logs out of all of them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HuntMember:
    """One member: an extension, or an outside number rung through a trunk
    with the group's rights."""

    extension: str | None = None
    number: str | None = None
    tier: int = 1
    weight: int = 1
    """For ``random``: a member of weight 3 comes first three times as often
    as one of weight 1."""
    ring_seconds: int | None = None
    """Rings this long at most; None: the group's ``member_seconds``."""

    def __post_init__(self) -> None:
        if (self.extension is None) == (self.number is None):
            raise ValueError("a hunt group member is an extension or a number, exactly one")
        if self.tier < 1 or self.weight < 1:
            raise ValueError("a hunt group member's tier and weight must be at least 1")
        if self.ring_seconds is not None and self.ring_seconds < 1:
            raise ValueError("a hunt group member's ring_seconds must be at least 1")

    @property
    def key(self) -> str:
        """How the member is known in the store, the CDR and the CLI: the
        extension number, or the outside number."""
        return self.extension if self.extension is not None else str(self.number)


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """Where an overflowing call goes: exactly one of the five."""

    extension: str | None = None
    hunt_group: str | None = None
    number: str | None = None
    ivr: str | None = None
    """An IVR menu's key: the PBX answers and runs it."""
    announcement: str | None = None
    """A prompt's name: said to the caller, who is then let go."""

    def __post_init__(self) -> None:
        given = (self.extension, self.hunt_group, self.number, self.ivr, self.announcement)
        if sum(value is not None for value in given) != 1:
            raise ValueError("an overflow destination is one of extension, hunt_group, number, ivr or announcement")

    @property
    def what(self) -> str:
        if self.extension is not None:
            return f"extension {self.extension}"
        if self.hunt_group is not None:
            return f"hunt group {self.hunt_group}"
        if self.ivr is not None:
            return f"IVR menu {self.ivr}"
        if self.announcement is not None:
            return f"announcement {self.announcement}"
        return f"number {self.number}"


QUEUE_CONDITIONS: Final[tuple[Condition, ...]] = ("busy", "no_answer")
DEFAULT_MAX_WAIT: Final = 300
DEFAULT_MAX_LENGTH: Final = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSettings:
    """A group's queue (``queue:``). The queue itself is kept in memory on
    the node the call is on (:mod:`pbx.calls.hunt_queue`)."""

    max_wait: int = DEFAULT_MAX_WAIT
    """Seconds a caller waits at most before the group overflows."""
    max_length: int = DEFAULT_MAX_LENGTH
    """Callers waiting at most; one more overflows at once."""
    announce_position_every: int = 0
    """Seconds between position announcements; 0: only on joining."""
    conditions: tuple[Condition, ...] = ("busy",)
    """When a call queues: every member busy, and/or nobody answered."""

    def __post_init__(self) -> None:
        if self.max_wait < 1 or self.max_length < 1 or self.announce_position_every < 0:
            raise ValueError("a queue's max_wait and max_length must be at least 1, announce_position_every 0 or more")
        if not self.conditions or any(c not in QUEUE_CONDITIONS for c in self.conditions):
            raise ValueError(f"a queue's conditions are among {', '.join(QUEUE_CONDITIONS)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Overflow:
    """One destination per condition; None: the caller is told (480 for no
    answer, nobody logged in or registered; 486 for busy)."""

    no_answer: Destination | None = None
    busy: Destination | None = None
    nobody_logged_in: Destination | None = None
    none_registered: Destination | None = None

    def get(self, condition: Condition) -> Destination | None:
        found: Destination | None = getattr(self, condition)
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class HuntGroup:
    number: str
    """The group's number, also its key (``hunt_groups.<number>``)."""
    name: str
    strategy: Strategy = "linear"
    members: tuple[HuntMember, ...] = ()
    member_seconds: int = DEFAULT_MEMBER_SECONDS
    total_seconds: int = DEFAULT_TOTAL_SECONDS
    skip_busy: bool = False
    """Members on a call are skipped at once (without wasting ring time)."""
    department: str | None = None
    """Whose number plan, caller ID and class of service outside members and
    outside overflow numbers are called with (the group's rights)."""
    class_of_service: str | None = None
    """Overrides the department's class of service for those calls."""
    overflow: Overflow = field(default_factory=Overflow)
    schedule: Schedule | None = None
    outside: bool = False
    """With a schedule: the group is in force while it is closed."""
    otherwise: str | None = None
    """The group (number) that takes the calls when this one is not in force."""
    queue: QueueSettings | None = None
    """Queue callers instead of overflowing (on the queue's conditions)."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"hunt group {self.number}: strategy must be one of {', '.join(STRATEGIES)}")
        if min(self.member_seconds, self.total_seconds) < 1:
            raise ValueError(f"hunt group {self.number}: times must be at least 1 second")
        if (self.schedule is None) != (self.otherwise is None):
            raise ValueError(f"hunt group {self.number}: a schedule needs an 'otherwise' group, and only then")
        keys = [member.key for member in self.members]
        if len(set(keys)) != len(keys):
            raise ValueError(f"hunt group {self.number}: a member is listed twice")

    @property
    def rule(self) -> str:
        return f"hunt_groups.{self.number}"

    @property
    def title(self) -> str:
        return f"{self.number} ({self.name})"

    def queues_on(self, condition: Condition) -> bool:
        """A call that finds ``condition`` waits in the queue."""
        return self.queue is not None and condition in self.queue.conditions

    def member(self, key: str) -> HuntMember | None:
        return next((member for member in self.members if member.key == key), None)

    def ring_seconds(self, member: HuntMember) -> int:
        return member.ring_seconds if member.ring_seconds is not None else self.member_seconds

    def in_force(self, at: datetime) -> tuple[bool, str]:
        """Whether the group takes calls at ``at``, and why (for explain)."""
        if self.schedule is None:
            return True, "always"
        state = self.schedule.state(at)
        word = "outside" if self.outside else "during"
        return state.open != self.outside, f"{word} {self.schedule.key} ({state.why})"


def frozen_groups(groups: Mapping[str, HuntGroup]) -> Mapping[str, HuntGroup]:
    return groups if isinstance(groups, MappingProxyType) else MappingProxyType(dict(groups))


def groups_of_member(extension: str, groups: Mapping[str, HuntGroup]) -> tuple[HuntGroup, ...]:
    """The hunt groups ``extension`` is a member of, in plan order."""
    return tuple(group for group in groups.values() if group.member(extension) is not None)


AgentAction = Literal["login", "logout", "toggle", "logout_all"]
_AGENT_CODES: Final[tuple[tuple[str, AgentAction, AgentAction], ...]] = (
    (LOGIN_CODE, "login", "toggle"), (LOGOUT_CODE, "logout", "logout_all"))


def parse_agent_code(dialled: str) -> tuple[AgentAction, str | None] | None:
    """``*45`` / ``*46`` with or without a group number: the action and the
    group, or None when ``dialled`` is no agent code."""
    for code, action, alone in _AGENT_CODES:
        if dialled == code:
            return alone, None
        if dialled.startswith(code) and dialled[len(code):].isdigit():
            return action, dialled[len(code):]
    return None
