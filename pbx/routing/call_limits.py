"""Which caps apply to one person's outside calls, and where each is set.

An outside call is one the PBX places through a trunk for an extension.
Two caps keep a stolen password (or a phone in a loop) from running up a
bill before anyone notices: how many of the extension's outside calls may
be up at once (``simultaneous``) and how many it may start in any 60
seconds (``per_minute``). Each value is looked up on its own; the first
place that sets it wins:

1. the extension's ``outside_calls``;
2. its class of service's (its own, else its department's, as for its
   rights), then the classes of service that one ``extends``, nearest first;
3. ``security.outside_calls``, the company default;
4. :data:`DEFAULT_SIMULTANEOUS` and :data:`DEFAULT_PER_MINUTE`.

Pure data and lookup; counting needs a clock and lives at the call layer
(:mod:`pbx.calls.limits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from pbx.routing.classes_of_service import OutsideCallLimits
from pbx.routing.dialplan import Dialplan, Extension
from pbx.routing.rights import class_of_service_for

DEFAULT_SIMULTANEOUS: Final = 4
"""No one at a desk holds more than a few outside calls at once (a call on
hold, a consultation, a conference); a burst of fraud does."""
DEFAULT_PER_MINUTE: Final = 10
"""Dialling by hand takes seconds per call: ten a minute is a busy
receptionist; a hundred in a second is a machine."""

LimitName = Literal["simultaneous", "per_minute"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """One cap in force and the rule that sets it."""

    value: int
    rule: str
    """``extensions.1001.outside_calls.per_minute``,
    ``classes_of_service.staff.outside_calls.simultaneous``,
    ``security.outside_calls.per_minute`` or ``built-in default``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerLimits:
    """The caps on one extension's outside calls."""

    simultaneous: Limit
    per_minute: Limit

    def describe(self) -> str:
        """``4 at once (built-in default), 10 a minute (security.outside_calls.per_minute)``."""
        return (f"{self.simultaneous.value} at once ({self.simultaneous.rule}),"
                f" {self.per_minute.value} a minute ({self.per_minute.rule})")


BUILT_IN: Final = "built-in default"


def limits_for(plan: Dialplan, person: Extension) -> CallerLimits:
    """The caps on ``person``'s outside calls under ``plan``."""
    places: list[tuple[str, OutsideCallLimits]] = [(f"extensions.{person.number}", person.outside_calls)]
    profile, _ = class_of_service_for(plan, person)
    if profile is not None:
        places.extend((f"classes_of_service.{link.key}", link.outside_calls) for link in profile.chain())
    places.append(("security", plan.security.outside_calls))

    def find(name: LimitName, default: int) -> Limit:
        for where, limits in places:
            value: int | None = getattr(limits, name)
            if value is not None:
                return Limit(value=value, rule=f"{where}.outside_calls.{name}")
        return Limit(value=default, rule=BUILT_IN)

    return CallerLimits(simultaneous=find("simultaneous", DEFAULT_SIMULTANEOUS),
                        per_minute=find("per_minute", DEFAULT_PER_MINUTE))
