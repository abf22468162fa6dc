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
3. ``security.outside_calls``, the company default, which is 4 at once
   and 10 a minute unless the file says otherwise
   (:class:`~pbx.routing.dialplan.SecuritySettings`).

Pure data and lookup; counting needs a clock and lives at the call layer
(:mod:`pbx.calls.limits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pbx.routing.classes_of_service import OutsideCallLimits
from pbx.routing.dialplan import Dialplan, Extension
from pbx.routing.rights import class_of_service_for

LimitName = Literal["simultaneous", "per_minute"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """One cap in force and the rule that sets it."""

    value: int
    rule: str
    """``extensions.1001.outside_calls.per_minute``,
    ``classes_of_service.staff.outside_calls.simultaneous``,
    ``security.outside_calls.per_minute`` (the company default, given or not)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerLimits:
    """The caps on one extension's outside calls."""

    simultaneous: Limit
    per_minute: Limit


def limits_for(plan: Dialplan, person: Extension) -> CallerLimits:
    """The caps on ``person``'s outside calls under ``plan``."""
    places: list[tuple[str, OutsideCallLimits]] = [(f"extensions.{person.number}", person.outside_calls)]
    profile, _ = class_of_service_for(plan, person)
    if profile is not None:
        places.extend((f"classes_of_service.{link.key}", link.outside_calls) for link in profile.chain())
    places.append(("security", plan.security.outside_calls))  # sets both: SecuritySettings checks it

    def find(name: LimitName) -> Limit:
        for where, limits in places:
            value: int | None = getattr(limits, name)
            if value is not None:
                return Limit(value=value, rule=f"{where}.outside_calls.{name}")
        raise AssertionError(f"security.outside_calls.{name} is never unset")

    return CallerLimits(simultaneous=find("simultaneous"), per_minute=find("per_minute"))
