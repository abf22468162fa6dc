"""The account code prompt as a pure state machine.

:class:`CodePrompt` is fed key presses, the end of what plays, timeouts
(the :mod:`pbx.ivr.menu` events) and :class:`Checked` (what the store and
the rights said of an entered code), each with the time on the caller's
clock, and answers with the menu's actions (:class:`~pbx.ivr.menu.Play`,
:class:`~pbx.ivr.menu.StopPlayback`, :class:`~pbx.ivr.menu.CollectDigits`,
:class:`~pbx.ivr.menu.Hangup`) plus :class:`CheckCode` (look this entry up)
and :class:`Accepted` (place the call). The glue (:mod:`pbx.ivr.service`)
carries them out; nothing here plays, reads a clock or looks anything up.

Rules it keeps:

- "please enter your account code, then press #" plays first; a key
  stops it (barge-in);
- after the prompt, the first key must come within ``first_digit_timeout``
  and each next one within ``digit_timeout``; ``#`` ends the entry, ``*``
  throws away what was keyed and starts again, and at :data:`MAX_LENGTH`
  keys the entry ends by itself. An entry cut short by the inter-digit
  timeout is checked as it is (a wrong code is a wrong code); no key at all
  is no entry;
- keys typed while an entry is being checked are ignored: nobody keys
  ahead of "the code is not valid";
- a wrong code (or no entry) says "the code is not valid" and asks again,
  until ``attempts`` entries have failed: then "goodbye" and hang up
  (``auth_failed``, ``no_code`` when nothing was ever keyed). A right code
  whose rights do not cover the number: "this call is not allowed", hang
  up (``not_allowed``). A locked phone: its own announcement, hang up
  (``locked``);
- :attr:`CodePrompt.path` tells the CDR what happened, every entry shown as
  ``(secret)``: the digits are held only until :class:`CheckCode` hands
  them over, and never in the path, a log line or an exception.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, Literal, assert_never

from pbx.accountcodes.codes import MAX_LENGTH
from pbx.ivr.menu import CollectDigits, Entry, Hangup, Play, StopPlayback, Timeout, Visit
from pbx.media.events import Digit, PlaybackFinished

ENTER_PROMPT: Final = "enter_account_code"
INVALID_PROMPT: Final = "invalid_code"
NOT_ALLOWED_PROMPT: Final = "not_allowed"
LOCKED_PROMPT: Final = "code_locked"
GOODBYE_PROMPT: Final = "goodbye"
END: Final = "#"
RESTART: Final = "*"

Outcome = Literal["valid", "invalid", "not_allowed", "locked"]


@dataclass(frozen=True, slots=True)
class Checked:
    """What became of the entry last handed over in :class:`CheckCode`."""

    outcome: Outcome


@dataclass(frozen=True, slots=True)
class CheckCode:
    """Look this entry up (the store, then the rights it carries)."""

    digits: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The code is right and covers the call: place it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Words:
    """What the prompt says and how the CDR path names it: an account
    code's by default; a conference PIN has its own."""

    enter: str = ENTER_PROMPT
    invalid: str = INVALID_PROMPT
    locked: str = LOCKED_PROMPT
    visit: str = "account_code"


PromptEvent = Digit | PlaybackFinished | Timeout | Checked
PromptAction = Play | StopPlayback | CollectDigits | CheckCode | Accepted | Hangup


class Phase(enum.Enum):
    PROMPTING = "prompting"    # the request plays; keys barge in
    COLLECTING = "collecting"  # keys wanted until the deadline
    CHECKING = "checking"      # an entry is being looked up
    CLOSING = "closing"        # the last words play, then hang up
    DONE = "done"


class CodePrompt:
    """One caller asked for their account code."""

    def __init__(self, *, attempts: int = 3, first_digit_timeout: float = 8.0, digit_timeout: float = 4.0,
                 words: Words = Words(), empty_entry: bool = False) -> None:
        """``empty_entry``: ``#`` alone (or no key at all) is an entry to
        check, not a failure (a room whose members need no PIN)."""
        if attempts < 1 or first_digit_timeout <= 0 or digit_timeout <= 0:
            raise ValueError("a code prompt needs at least one attempt and positive timeouts")
        self.attempts = attempts
        self.first_digit_timeout = first_digit_timeout
        self.digit_timeout = digit_timeout
        self.phase = Phase.PROMPTING
        self.failures = 0
        """Entries that failed (wrong codes and empty entries)."""
        self.wrong_codes = 0
        """Of those, codes keyed and found wrong."""
        self.words = words
        self.empty_entry = empty_entry
        self._visit = Visit(words.visit)
        self._buffer = ""
        self._deadline: float | None = None
        self._hangup = ""

    @property
    def path(self) -> str:
        """``account_code[(secret)|no input|(secret)]``, for the CDR."""
        return self._visit.text()

    def deadline(self) -> float | None:
        return self._deadline

    def start(self, now: float) -> list[PromptAction]:
        return [Play((self.words.enter,))]

    def handle(self, event: PromptEvent, now: float) -> list[PromptAction]:
        if self.phase is Phase.DONE:
            return []
        match event:
            case Digit():
                return self._on_digit(event.digit, now)
            case PlaybackFinished():
                return self._on_played(event.completed, now)
            case Timeout():
                if self.phase is not Phase.COLLECTING or self._deadline is None or now < self._deadline:
                    return []
                return self._submit()
            case Checked():
                return self._on_checked(event.outcome)
            case _:
                assert_never(event)

    # ------------------------------------------------------------ keys

    def _on_digit(self, digit: str, now: float) -> list[PromptAction]:
        if self.phase not in (Phase.PROMPTING, Phase.COLLECTING):
            return []
        actions: list[PromptAction] = []
        if self.phase is Phase.PROMPTING:
            actions.append(StopPlayback())
            self.phase = Phase.COLLECTING
        if digit == END:
            if not self._buffer and not self.empty_entry:
                return actions + self._collect(now, self.first_digit_timeout)
            return actions + self._submit()
        if digit == RESTART:
            self._buffer = ""
            return actions + self._collect(now, self.first_digit_timeout)
        if not digit.isdigit():
            return actions + self._collect(now, self.digit_timeout)  # A-D: not part of any code
        self._buffer += digit
        if len(self._buffer) >= MAX_LENGTH:
            return actions + self._submit()
        return actions + self._collect(now, self.digit_timeout)

    def _on_played(self, completed: bool, now: float) -> list[PromptAction]:
        if not completed:
            return []  # stopped by a key or by the next prompt
        if self.phase is Phase.CLOSING:
            self.phase = Phase.DONE
            return [Hangup(self._hangup)]
        if self.phase is Phase.PROMPTING:
            self.phase = Phase.COLLECTING
            return self._collect(now, self.first_digit_timeout)
        return []

    def _collect(self, now: float, wait: float) -> list[PromptAction]:
        self._deadline = now + wait
        return [CollectDigits(until=self._deadline, max_digits=MAX_LENGTH)]

    # ------------------------------------------------------------ entries

    def _submit(self) -> list[PromptAction]:
        digits, self._buffer = self._buffer, ""
        self._deadline = None
        if not digits and not self.empty_entry:
            self._visit.entries.append(Entry(""))
            return self._failed("no_code" if self.wrong_codes == 0 else "auth_failed")
        self.phase = Phase.CHECKING
        return [CheckCode(digits)]

    def _on_checked(self, outcome: Outcome) -> list[PromptAction]:
        if self.phase is not Phase.CHECKING:
            return []
        # Digits are gone by now; the entry is recorded for its outcome only.
        self._visit.entries.append(Entry("", secret=True, valid=outcome == "valid"))
        match outcome:
            case "valid":
                self.phase = Phase.DONE
                return [Accepted()]
            case "invalid":
                self.wrong_codes += 1
                return self._failed("auth_failed")
            case "not_allowed":
                return self._close((NOT_ALLOWED_PROMPT,), "not_allowed")
            case "locked":
                return self._close((self.words.locked,), "locked")
            case _:
                assert_never(outcome)

    def _failed(self, reason: str) -> list[PromptAction]:
        self.failures += 1
        if self.failures >= self.attempts:
            return self._close((self.words.invalid, GOODBYE_PROMPT), reason)
        self.phase = Phase.PROMPTING
        return [Play((self.words.invalid, self.words.enter))]

    def _close(self, prompts: tuple[str, ...], reason: str) -> list[PromptAction]:
        self.phase, self._hangup = Phase.CLOSING, reason
        return [Play(prompts)]
