"""An auto attendant menu as a pure state machine.

:class:`MenuRun` is fed :data:`MenuEvent` values (a key press, the end of
a playlist, a timeout), each with the time on the caller's clock, and
answers with actions for the glue (:mod:`pbx.ivr.runner`) to carry out:
:class:`Play`, :class:`StopPlayback`, :class:`CollectDigits` (wait for
keys until a time), :class:`Transfer` or :class:`Hangup`. Nothing here
reads a clock, plays audio or touches a socket: tests drive it with a
hand-held clock.

Rules it keeps:

- keys are heard during the greeting too: the first one stops it
  (barge-in);
- an entry that is an option and cannot grow into a longer option or
  extension number acts at once; one that can (``1`` beside extension
  ``1002`` with dial-by-extension) waits ``digit_timeout`` for more, and
  ``#`` ends an entry at once;
- an entry that can match nothing is invalid at once; no key within
  ``timeout`` after the greeting is no input. Either replays the greeting
  (invalid input says so first), ``retries`` times, then the caller goes
  to the menu's fallback;
- going to another menu starts it afresh (its own greeting and retries);
  more than :data:`MAX_MENUS` menus in one call ends it (a loop in the
  configuration must not keep a caller, or a port, for ever);
- :attr:`MenuRun.path` records every menu and what was keyed in it, for
  the CDR; an entry marked secret (a future account-code prompt) is
  recorded as ``(secret)``, never its digits.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import assert_never

from pbx.media.events import Digit, PlaybackFinished
from pbx.routing.ivr import Destination, IvrMenu

MAX_MENUS = 20
INVALID_PROMPT = "invalid_option"
GOODBYE_PROMPT = "goodbye"
TERMINATOR = "#"


@dataclass(frozen=True, slots=True)
class Timeout:
    """The time the last :class:`CollectDigits` named has come."""

    time: float


MenuEvent = Digit | PlaybackFinished | Timeout


@dataclass(frozen=True, slots=True)
class Play:
    """Play these prompts (names, in the call's language), in order,
    stopping whatever plays."""

    prompts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StopPlayback:
    """The caller keyed during a prompt: stop it."""


@dataclass(frozen=True, slots=True)
class CollectDigits:
    """Keys are wanted until ``until``; then send :class:`Timeout`."""

    until: float
    max_digits: int


@dataclass(frozen=True, slots=True)
class Transfer:
    """Put the caller through to ``destination``, chosen by ``rule``
    (``ivr_menus.main.options.1``, ``ivr_menus.main.fallback`` ...) in
    ``menu``."""

    destination: Destination
    menu: IvrMenu
    rule: str


@dataclass(frozen=True, slots=True)
class Hangup:
    reason: str


MenuAction = Play | StopPlayback | CollectDigits | Transfer | Hangup


@dataclass(frozen=True, slots=True)
class Entry:
    """What the caller did at one prompt: keys, or ``no input``."""

    keys: str
    secret: bool = False
    valid: bool = True

    def text(self) -> str:
        if self.secret:
            return "(secret)"
        if not self.keys:
            return "no input"
        return self.keys if self.valid else f"{self.keys} invalid"


@dataclass(slots=True)
class Visit:
    """One menu the call went through and what was keyed there."""

    menu: str
    entries: list[Entry] = field(default_factory=list)

    def text(self) -> str:
        return f"{self.menu}[{'|'.join(entry.text() for entry in self.entries)}]"


class Phase(enum.Enum):
    GREETING = "greeting"    # the greeting plays; keys barge in
    WAITING = "waiting"      # keys wanted until the deadline
    GOODBYE = "goodbye"      # the farewell plays, then hang up
    DONE = "done"


class MenuRun:
    """One caller in the auto attendant, from the entry menu to a transfer
    or hang-up. ``extensions``: the numbers dial-by-extension may reach.
    ``enter``: the menu that answers for one named by an option (its
    closed-hours menu while its hours are closed)."""

    def __init__(self, menus: Mapping[str, IvrMenu], entry: IvrMenu, *, extensions: Collection[str],
                 enter: Callable[[IvrMenu], IvrMenu] = lambda menu: menu) -> None:
        self._menus = menus
        self._extensions = frozenset(extensions)
        self._enter = enter
        self.menu = entry
        self.phase = Phase.GREETING
        self.visits: list[Visit] = []
        self._buffer = ""
        self._failures = 0
        self._deadline: float | None = None

    # ------------------------------------------------------------ reading

    @property
    def path(self) -> str:
        """``main[5 invalid|1]>sales[no input]``: the CDR's IVR path."""
        return ">".join(visit.text() for visit in self.visits)

    def deadline(self) -> float | None:
        return self._deadline

    # ------------------------------------------------------------ input

    def start(self, now: float) -> list[MenuAction]:
        return self._visit(self.menu, now)

    def handle(self, event: MenuEvent, now: float) -> list[MenuAction]:
        if self.phase is Phase.DONE:
            return []
        match event:
            case Digit():
                return self._on_digit(event.digit, now)
            case PlaybackFinished():
                return self._on_played(event.completed, now)
            case Timeout():
                if self._deadline is None or now < self._deadline or self.phase is not Phase.WAITING:
                    return []
                self._deadline = None
                return self._resolve(now)
            case _:
                assert_never(event)

    def _on_played(self, completed: bool, now: float) -> list[MenuAction]:
        if not completed:
            return []  # stopped by us (a key, a new prompt): nothing ends here
        if self.phase is Phase.GOODBYE:
            self.phase = Phase.DONE
            return [Hangup("menu_hangup")]
        if self.phase is Phase.GREETING:
            self.phase = Phase.WAITING
            return self._collect(now, self.menu.timeout)
        return []

    def _on_digit(self, digit: str, now: float) -> list[MenuAction]:
        if self.phase not in (Phase.GREETING, Phase.WAITING):
            return []
        actions: list[MenuAction] = []
        if self.phase is Phase.GREETING:
            actions.append(StopPlayback())
            self.phase = Phase.WAITING
        if digit == TERMINATOR and (self._buffer or TERMINATOR not in self.menu.options):
            return actions + self._resolve(now)
        self._buffer += digit
        longer = self._longer_possible(self._buffer)
        complete = self._buffer in self.menu.options or self._is_extension(self._buffer)
        if complete and not longer:
            return actions + self._resolve(now)
        if not complete and not longer:
            return actions + self._resolve(now)  # can match nothing: invalid now
        return actions + self._collect(now, self.menu.digit_timeout)

    # ------------------------------------------------------------ deciding

    def _is_extension(self, keys: str) -> bool:
        return self.menu.dial_by_extension and keys in self._extensions

    def _longer_possible(self, keys: str) -> bool:
        candidates = list(self.menu.options)
        if self.menu.dial_by_extension:
            candidates.extend(self._extensions)
        return any(len(c) > len(keys) and c.startswith(keys) for c in candidates)

    def _max_digits(self) -> int:
        lengths = [len(keys) for keys in self.menu.options]
        if self.menu.dial_by_extension:
            lengths.extend(len(number) for number in self._extensions)
        return max(lengths, default=1)

    def _collect(self, now: float, wait: float) -> list[MenuAction]:
        self._deadline = now + wait
        return [CollectDigits(until=self._deadline, max_digits=self._max_digits())]

    def _resolve(self, now: float) -> list[MenuAction]:
        keys, self._buffer = self._buffer, ""
        self._deadline = None
        visit = self.visits[-1]
        menu = self.menu
        if keys in menu.options:
            visit.entries.append(Entry(keys))
            return self._go(menu.options[keys], f"{menu.rule}.options.{keys}", now)
        if keys and self._is_extension(keys):
            visit.entries.append(Entry(keys))
            return self._go(Destination("extension", keys), f"{menu.rule}.dial_by_extension", now)
        visit.entries.append(Entry(keys, valid=False) if keys else Entry(""))
        self._failures += 1
        if self._failures > menu.retries:
            return self._go(menu.fallback, f"{menu.rule}.fallback", now)
        self.phase = Phase.GREETING
        prompts = (INVALID_PROMPT, menu.greeting) if keys else (menu.greeting,)
        return [Play(prompts)]

    def _go(self, destination: Destination, rule: str, now: float) -> list[MenuAction]:
        match destination.kind:
            case "hangup":
                self.phase = Phase.GOODBYE
                return [Play((GOODBYE_PROMPT,))]
            case "menu":
                if len(self.visits) >= MAX_MENUS:
                    self.phase = Phase.DONE
                    return [Hangup("menu_loop")]
                return self._visit(self._enter(self._menus[destination.value]), now)
            case _:
                self.phase = Phase.DONE
                return [Transfer(destination, self.menu, rule)]

    def _visit(self, menu: IvrMenu, now: float) -> list[MenuAction]:
        self.menu = menu
        self.visits.append(Visit(menu.key))
        self._failures = 0
        self._buffer = ""
        self._deadline = None
        self.phase = Phase.GREETING
        return [Play((menu.greeting,))]
