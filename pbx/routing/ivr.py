"""Auto attendant menus (``ivr_menus:``) and media settings (``media:``), as
the dialplan describes them; pure data and the one rule about opening hours.

A menu greets the caller, then maps keys to destinations: an extension, a
member of a short-number group, a hunt group, another menu, an outside number (through a
trunk, with the rights of the menu's own class of service, never the
caller's), or hanging up. With ``dial_by_extension`` the caller may key any
extension number instead. A menu with ``hours`` is replaced by its
``closed`` menu while that schedule is closed; an administrator may force a
schedule open or closed for a while (``pbx hours``, stored in the database),
and :func:`hours_state` applies that override before the schedule.

The running of a menu (greeting, digits, timeouts, retries) is
:mod:`pbx.ivr.menu`; this module only says what a menu is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal

from pbx.routing.calendars import Schedule

DestinationKind = Literal["extension", "member", "hunt_group", "menu", "number", "hangup"]
LANGUAGES: Final = ("vi", "zh", "en")
"""Languages prompts ship in (pbx/ivr/prompts/<language>/)."""
MENU_KEYS: Final = re.compile(r"[0-9*#]{1,8}")
"""What a menu option is keyed by: one key, or a few (``"11"``)."""
ALL_SCHEDULES: Final = "*"
"""The schedule name of an override that covers every schedule."""


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a menu sends the caller. ``value`` is the extension number,
    ``GROUP/SHORT`` of a group member, the hunt group's number, the menu's
    key, the outside number as dialled, or empty for ``hangup``."""

    kind: DestinationKind
    value: str = ""

    def describe(self) -> str:
        if self.kind == "hangup":
            return "hang up"
        if self.kind == "member":
            group, _, short = self.value.partition("/")
            return f"member {short} of group {group}"
        if self.kind == "number":
            return f"outside number {self.value}"
        if self.kind == "hunt_group":
            return f"hunt group {self.value}"
        return f"{self.kind} {self.value}"


HANGUP: Final = Destination("hangup")


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrMenu:
    """One entry of ``ivr_menus:``; times in seconds."""

    key: str
    number: str | None = None
    """Internal number that reaches the menu (``800``); None: only by DID or
    from another menu."""
    greeting: str = "welcome"
    """Prompt name played on entry (pbx/ivr/phrases.py, or an admin's file)."""
    options: Mapping[str, Destination] = field(default_factory=dict)
    dial_by_extension: bool = False
    timeout: float = 5.0
    """Silence after the greeting before it counts as no input."""
    digit_timeout: float = 2.0
    """Between keys of a longer entry (an extension number, ``11``)."""
    retries: int = 2
    """Greetings replayed after invalid or missing input, before the fallback."""
    fallback: Destination = HANGUP
    language: str | None = None
    """Prompt language; None: the caller's, else the plan's."""
    hours: Schedule | None = None
    closed: str | None = None
    """Key of the menu that answers instead while ``hours`` is closed."""
    class_of_service: str | None = None
    """The rights outside-number destinations are checked against."""
    department: str | None = None
    """Whose number plan and routes outside-number destinations use."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        for keys in self.options:
            if not MENU_KEYS.fullmatch(keys):
                raise ValueError(f"menu {self.key!r}: option {keys!r} must be 1 to 8 keys (0-9, *, #)")
        if min(self.timeout, self.digit_timeout) <= 0 or self.retries < 0:
            raise ValueError(f"menu {self.key!r}: timeouts must be positive and retries not negative")
        if (self.hours is None) != (self.closed is None):
            raise ValueError(f"menu {self.key!r}: 'hours' and 'closed' go together")

    @property
    def rule(self) -> str:
        return f"ivr_menus.{self.key}"

    def destinations(self) -> list[tuple[str, Destination]]:
        """(rule, destination) of every option and the fallback."""
        found = [(f"{self.rule}.options.{keys}", target) for keys, target in self.options.items()]
        return [*found, (f"{self.rule}.fallback", self.fallback)]


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaSettings:
    """The ``media:`` section: where RTP may bind, how the PBX speaks."""

    rtp_first: int = 20000
    rtp_last: int = 20999
    language: str = "en"
    """Prompt language when neither the menu nor the caller names one."""
    tones: str = "VN"
    """Country whose ringback cadence a caller hears during a transfer."""
    announce_refusals: bool = True
    """Say why a call is refused (183 with early media, then the final
    response) when the caller's INVITE offered SDP."""
    prompt_dir: str | None = None
    """Directory of an administrator's own recordings (``<dir>/vi/welcome.wav``)."""
    music_on_hold: str | None = None
    """WAV file played to a party on hold and to callers queueing; None: the shipped tune."""

    def __post_init__(self) -> None:
        if not 1024 <= self.rtp_first < self.rtp_last <= 65535:
            raise ValueError("media rtp_ports must be a range within 1024-65535")
        if self.language not in LANGUAGES:
            raise ValueError(f"media language must be one of {', '.join(LANGUAGES)}")


HoursMode = Literal["open", "closed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HoursOverride:
    """An administrator's word on a schedule, from ``pbx hours``."""

    schedule: str
    """A schedule's key, or :data:`ALL_SCHEDULES`."""
    mode: HoursMode
    until: datetime | None = None
    """Aware; None: until ``pbx hours auto``."""

    def applies(self, at: datetime) -> bool:
        return self.until is None or at < self.until


def hours_state(schedule: Schedule, at: datetime,
                overrides: Mapping[str, HoursOverride] = MappingProxyType({})) -> tuple[bool, str]:
    """Whether ``schedule`` counts as open at ``at``, and why: an override
    of that schedule first, then one of every schedule, then the schedule."""
    for name in (schedule.key, ALL_SCHEDULES):
        override = overrides.get(name)
        if override is not None and override.applies(at):
            until = f" until {override.until:%Y-%m-%d %H:%M %Z}" if override.until is not None else ""
            scope = "" if name == schedule.key else " (every schedule)"
            return override.mode == "open", f"{schedule.key} set {override.mode} by an administrator{scope}{until}"
    state = schedule.state(at)
    return state.open, f"{schedule.key} {'open' if state.open else 'closed'} ({state.why})"


def entry_menu(menus: Mapping[str, IvrMenu], menu: IvrMenu, at: datetime,
               overrides: Mapping[str, HoursOverride] = MappingProxyType({})) -> tuple[IvrMenu, str]:
    """The menu that answers for ``menu`` at ``at`` (its closed menu while
    its hours are closed, and so on down), and why."""
    why: list[str] = []
    seen = {menu.key}
    while menu.hours is not None and menu.closed is not None:
        is_open, reason = hours_state(menu.hours, at, overrides)
        if is_open:
            why.append(f"{reason}: menu {menu.key}")
            break
        why.append(f"{reason}: menu {menu.closed} instead of {menu.key}")
        following = menus[menu.closed]
        if following.key in seen:  # the loader refuses such loops; stop anyway
            break
        seen.add(following.key)
        menu = following
    return menu, "; ".join(why) or f"menu {menu.key}"
