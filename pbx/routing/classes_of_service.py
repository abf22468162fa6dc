"""Classes of service and number lists: what the ``classes_of_service:``
and ``number_lists:`` sections of a dialplan hold.

Data only; :mod:`pbx.routing.rights` applies them to a call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from pbx.routing.calendars import Schedule
from pbx.routing.classes import EMERGENCY
from pbx.routing.patterns import Pattern


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberList:
    """A named list of numbers and patterns (``number_lists:`` section)."""

    key: str
    patterns: tuple[Pattern, ...]

    def find(self, numbers: tuple[str, ...]) -> tuple[int, Pattern, str] | None:
        """(index, entry, number) of the first entry matching one of ``numbers``."""
        for index, pattern in enumerate(self.patterns):
            for number in numbers:
                if pattern.matches(number):
                    return index, pattern, number
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutsideCallLimits:
    """Caps on one extension's outside calls (``outside_calls:``, on an
    extension, a class of service or under ``security:``). None: not set
    here, the next place decides (:mod:`pbx.routing.call_limits`)."""

    simultaneous: int | None = None
    """Outside calls of one extension up at once (ringing or answered)."""
    per_minute: int | None = None
    """Outside calls one extension may start in any 60 seconds."""

    def __post_init__(self) -> None:
        for name in ("simultaneous", "per_minute"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"outside_calls {name} must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedRule:
    """Allow or deny call classes while a schedule is open (``during``) or
    closed (``outside``)."""

    rule: str
    """``class_of_service.<key>.when[<index>]``."""
    schedule: Schedule
    outside: bool = False
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        return f"{'outside' if self.outside else 'during'} {self.schedule.key}"

    def in_force(self, at: datetime) -> tuple[bool, str]:
        state = self.schedule.state(at)
        active = state.open != self.outside
        return active, f"{self.label}: {'in force' if active else 'not in force'} ({state.why})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassOfService:
    """What a department or an extension may dial (``class_of_service:``)."""

    key: str
    description: str = ""
    parent: ClassOfService | None = None
    """The class of service this one ``extends``: its lists and rules apply too."""
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    when: tuple[TimedRule, ...] = ()
    blacklist: tuple[NumberList, ...] = ()
    whitelist: tuple[NumberList, ...] = ()
    whitelist_only: bool | None = None
    """None: as the parent says (default False)."""
    outside_calls: OutsideCallLimits = OutsideCallLimits()
    """Caps for its extensions; unset values come from what it extends."""

    def __post_init__(self) -> None:
        if EMERGENCY in self.deny or any(EMERGENCY in rule.deny for rule in self.when):
            raise ValueError(f"class of service {self.key!r}: emergency calls cannot be denied")

    def chain(self) -> Iterator[ClassOfService]:
        """This class of service, then what it extends, nearest first."""
        current: ClassOfService | None = self
        seen: set[str] = set()
        while current is not None and current.key not in seen:
            seen.add(current.key)
            yield current
            current = current.parent
