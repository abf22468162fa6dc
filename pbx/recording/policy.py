"""Which calls are recorded, pure: the dialplan's ``recording:`` settings,
the mode a call gets, and the ``*1`` toggle of on-demand recording.

A mode is set per route, hunt group, extension and department
(``always``, ``on_demand``, ``never``). For one call:

- a route's setting (outbound ``routes:`` by name) decides alone: a route
  is where the law of the far end applies (an announcement, a ban);
- otherwise the strongest setting of the hunt group rung, the two
  parties' extensions and, for an extension with no setting of its own,
  its department: ``always`` over ``on_demand`` over ``never`` (a sales
  line that must be recorded is recorded whoever calls it);
- nothing set anywhere: the plan's ``default`` (``never`` unless given).

On demand, only a party that is an extension of ours with on-demand
recording may toggle it (an outside caller cannot start or stop a
recording): ``*`` then ``1`` within :data:`TOGGLE_WINDOW` seconds, sent
as RFC 4733 events on the call's media or in SIP INFO. The keys still
reach the other side (the relay forwards events and INFOs as they come).

The announcement ("this call is recorded") is played to both parties when
recording starts: per route (``announce``), else the plan's ``announce``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final


class RecordingMode(enum.Enum):
    NEVER = "never"
    ON_DEMAND = "on_demand"
    ALWAYS = "always"

    @property
    def strength(self) -> int:
        return _STRENGTH[self]


_STRENGTH: Final = {RecordingMode.NEVER: 0, RecordingMode.ON_DEMAND: 1, RecordingMode.ALWAYS: 2}
MODES: Final = tuple(m.value for m in RecordingMode)
TOGGLE_WINDOW: Final = 2.0
"""Seconds between ``*`` and ``1`` of the toggle."""
ANNOUNCEMENT: Final = "call_recorded"
"""The phrase played when recording starts (pbx/ivr/phrases.py)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRecording:
    mode: RecordingMode
    announce: bool | None = None
    """None: the plan's ``announce``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingSettings:
    """The dialplan's ``recording:`` section."""

    directory: str = "var/recordings"
    retention_days: int = 90
    """Files older than this are purged (0: kept until the size budget needs room)."""
    max_megabytes: int = 10240
    """Size budget of the directory: the oldest files go first beyond it."""
    announce: bool = True
    default: RecordingMode = RecordingMode.NEVER
    extensions: Mapping[str, RecordingMode] = field(default_factory=dict)
    departments: Mapping[str, RecordingMode] = field(default_factory=dict)
    hunt_groups: Mapping[str, RecordingMode] = field(default_factory=dict)
    routes: Mapping[str, RouteRecording] = field(default_factory=dict)
    """By route name (``routes:`` entries' ``name``)."""

    @property
    def enabled(self) -> bool:
        """Any call may be recorded at all (else nothing is anchored for it)."""
        modes = [self.default, *self.extensions.values(), *self.departments.values(),
                 *self.hunt_groups.values(), *(r.mode for r in self.routes.values())]
        return any(mode is not RecordingMode.NEVER for mode in modes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Party:
    """A side of a call as far as recording goes: an extension of ours
    (number and department), or an outside number (both None)."""

    extension: str | None = None
    department: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecording:
    """What a call gets."""

    mode: RecordingMode
    announce: bool
    togglers: frozenset[int] = frozenset()
    """Indices of the parties (0 caller, 1 callee) who may toggle on demand."""
    why: str = ""
    """The setting that decided, for the log: ``routes.abroad``, ``extensions.2001`` ..."""


def _party_mode(settings: RecordingSettings, party: Party) -> tuple[RecordingMode, str] | None:
    if party.extension is None:
        return None
    own = settings.extensions.get(party.extension)
    if own is not None:
        return own, f"extensions.{party.extension}"
    if party.department is not None and party.department in settings.departments:
        return settings.departments[party.department], f"departments.{party.department}"
    return None


def decide(settings: RecordingSettings, *, caller: Party, callee: Party, route: str | None = None,
           hunt_group: str | None = None) -> CallRecording:
    """The recording of a call between ``caller`` and ``callee`` (see the
    module's rules). ``route``: the outbound route's name, if through one."""
    togglers = frozenset(index for index, party in enumerate((caller, callee))
                         if (m := _party_mode(settings, party)) is not None and m[0] is RecordingMode.ON_DEMAND)
    route_setting = settings.routes.get(route) if route is not None else None
    if route_setting is not None:
        announce = settings.announce if route_setting.announce is None else route_setting.announce
        if route_setting.mode is RecordingMode.ON_DEMAND and not togglers:
            # The route allows it on demand: any extension of ours on the call may ask.
            togglers = frozenset(i for i, p in enumerate((caller, callee)) if p.extension is not None)
        return CallRecording(mode=route_setting.mode, announce=announce, togglers=togglers, why=f"routes.{route}")
    found: list[tuple[RecordingMode, str]] = []
    if hunt_group is not None and hunt_group in settings.hunt_groups:
        found.append((settings.hunt_groups[hunt_group], f"hunt_groups.{hunt_group}"))
    for party in (caller, callee):
        if (setting := _party_mode(settings, party)) is not None:
            found.append(setting)
    if not found:
        return CallRecording(mode=settings.default, announce=settings.announce, why="default",
                             togglers=frozenset(i for i, p in enumerate((caller, callee)) if p.extension is not None)
                             if settings.default is RecordingMode.ON_DEMAND else frozenset())
    mode, why = max(found, key=lambda item: item[0].strength)
    if mode is RecordingMode.ON_DEMAND and hunt_group is not None and why.startswith("hunt_groups."):
        togglers = togglers | frozenset(i for i, p in enumerate((caller, callee)) if p.extension is not None)
    return CallRecording(mode=mode, announce=settings.announce, togglers=togglers, why=why)


class Toggle:
    """``*1`` from a party allowed to toggle: a machine fed keys with their
    time, saying when the recording flips."""

    def __init__(self, allowed: Iterable[int]) -> None:
        self.allowed = frozenset(allowed)
        self._star: dict[int, float] = {}

    def key(self, party: int, digit: str, now: float) -> bool:
        """True when this key completes ``*1`` (the recording flips)."""
        if party not in self.allowed:
            return False
        if digit == "*":
            self._star[party] = now
            return False
        star = self._star.pop(party, None)
        return digit == "1" and star is not None and now - star <= TOGGLE_WINDOW
