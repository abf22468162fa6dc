"""Outbound routes (which trunk carries a number) and inbound numbers (DIDs).

Routes are tried in file order and the first that applies wins. A route
applies when every condition it states holds: its ``pattern`` matches the
dialled number, the number's call class is one of its ``classes``, the
caller's department is one of its ``departments``. A route stating none is
a catch-all.

An inbound number maps a DID, exactly as the provider sends it, to a
target inside the PBX. A target may depend on a schedule (``during`` or
``outside``), with an ``otherwise`` target for the rest of the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pbx.routing.calendars import Schedule
from pbx.routing.patterns import Pattern


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One entry of ``routes:``."""

    name: str
    trunk: str
    """Key of the trunk that carries the call."""
    pattern: Pattern | None = None
    classes: frozenset[str] | None = None
    departments: frozenset[str] | None = None

    @property
    def rule(self) -> str:
        return f"routes.{self.name}"

    def applies(self, number: str, call_class: str | None, department: str | None) -> bool:
        if self.pattern is not None and not self.pattern.matches(number):
            return False
        if self.classes is not None and call_class not in self.classes:
            return False
        return self.departments is None or department in self.departments

    def describe(self) -> str:
        parts = []
        if self.pattern is not None:
            parts.append(f"pattern {self.pattern.text}")
        if self.classes is not None:
            parts.append("classes " + ", ".join(sorted(self.classes)))
        if self.departments is not None:
            parts.append("departments " + ", ".join(sorted(self.departments)))
        return "; ".join(parts) or "any number"


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundTarget:
    """Where a call to a DID goes (``inbound:`` section).

    A target is an extension, a member of a short-number group (their
    desk and mobile, as the member's ring policy says), a hunt group or an
    auto attendant menu.
    """

    rule: str
    """``inbound.<did>``, or ``inbound.<did>.otherwise`` for the fallback."""
    extension: str | None = None
    member: tuple[str, str] | None = None
    """(group key, short number) of a group member."""
    hunt_group: str | None = None
    """Number of a hunt group."""
    menu: str | None = None
    """Key of an auto attendant menu (``ivr_menus``)."""
    conference: str | None = None
    """Key of a meet-me room (``conferences``): a dial-in number."""
    schedule: Schedule | None = None
    outside: bool = False
    """With a schedule: True if this target applies while it is closed."""
    otherwise: InboundTarget | None = None
    """Where the call goes when the schedule condition does not hold."""

    def __post_init__(self) -> None:
        if sum(kind is not None for kind in (self.extension, self.member, self.hunt_group, self.menu,
                                             self.conference)) != 1:
            raise ValueError(f"{self.rule}: a target is an extension, a member, a hunt group, a menu or a"
                             " conference room, exactly one")
        if (self.schedule is None) != (self.otherwise is None):
            raise ValueError(f"{self.rule}: a schedule needs an 'otherwise' target, and only then")

    @property
    def what(self) -> str:
        if self.member is not None:
            return f"member {self.member[1]} of group {self.member[0]}"
        if self.hunt_group is not None:
            return f"hunt group {self.hunt_group}"
        if self.menu is not None:
            return f"menu {self.menu}"
        if self.conference is not None:
            return f"conference room {self.conference}"
        return f"extension {self.extension}"

    @property
    def outcome(self) -> str:
        answered = self.menu is not None or self.conference is not None
        return f"answered by {self.what}" if answered else f"rings {self.what}"

    def resolve(self, at: datetime) -> tuple[InboundTarget, str]:
        """The target in force at ``at`` (this one or a fallback) and why."""
        if self.schedule is None or self.otherwise is None:
            return self, self.outcome
        state = self.schedule.state(at)
        word = "outside" if self.outside else "during"
        if state.open != self.outside:
            return self, f"{word} {self.schedule.key} ({state.why}): {self.outcome}"
        target, why = self.otherwise.resolve(at)
        return target, f"not {word} {self.schedule.key} ({state.why}): otherwise {why}"
