"""The mailbox menu (``*97``, ``*98``) as a pure state machine.

:class:`MailboxMenu` is fed key presses, the end of what plays and its
deadline (the :mod:`pbx.ivr.menu` events), what the store said
(:class:`PinChecked`, :class:`Loaded`) and, while a greeting is recorded,
audio (:meth:`MailboxMenu.heard`); it answers with actions the glue
(:mod:`pbx.voicemail.session`) carries out. Nothing here plays, reads a
clock, or looks anything up.

The keys (what office users of other PBXs know):

- log in (``*98``): the mailbox number then ``#`` (unless dialled as
  ``*98<mailbox>``), the PIN then ``#``. A wrong PIN is told as wrong
  whether the mailbox exists, has no PIN yet, or the PIN is wrong: a
  guesser learns nothing. :data:`ATTEMPTS` wrong entries: goodbye. A
  locked mailbox: its own announcement, hang up. ``*97`` from one's own
  phone needs no PIN (the phone authenticated);
- main menu: ``1`` listen (new messages first, oldest first, then the
  saved ones), ``0`` mailbox options, ``*`` goodbye;
- after (or during) a message: ``4`` again, ``5`` call the caller back,
  ``6`` next, ``7`` delete, ``9`` save, ``*`` main menu. A message played
  to its end, or cut by a key, has been heard: it is saved (the lamp goes
  out at once when no new message is left), then those choices are said;
- options: ``1`` record the greeting (after the beep, ``#`` ends it),
  ``2`` change the PIN (twice, then ``#``; the policy decides what is
  allowed), ``*`` main menu.

Keys barge in on whatever plays. Keys pressed while the store is asked
(the PIN checked, the messages loaded) are kept and taken, in order, once
the menu listens again: a caller who retypes a PIN at once, or keys ``1``
before the greeting starts, loses nothing. Silence at a menu repeats it; after
:data:`REPEATS` silent turns: goodbye. The PIN digits are held only until
:class:`CheckPin` or :class:`SetPin` hands them over, never in
:attr:`MailboxMenu.path`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from pbx.ivr.menu import Play, StopPlayback, Timeout
from pbx.media.events import Digit, PlaybackFinished
from pbx.routing.voicemail import PinPolicy
from pbx.voicemail.recording import MessageRecording

ATTEMPTS: Final = 3
REPEATS: Final = 3
KEY_WAIT: Final = 8.0
"""Seconds a menu waits for a key after it was said."""
DIGIT_WAIT: Final = 5.0
"""Seconds between the keys of a number or PIN."""
MAX_ENTRY: Final = 12
GREETING_SECONDS: Final = 60.0

PinOutcome = Literal["valid", "invalid", "locked"]


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """A message as the menu knows it."""

    id: int
    caller: str
    """The caller's number, for a call back ("" when not known)."""
    heard: bool


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class PinChecked:
    outcome: PinOutcome


@dataclass(frozen=True, slots=True)
class Loaded:
    """The mailbox's messages, new ones then saved ones, each oldest first."""

    messages: tuple[MessageInfo, ...]


MailboxEvent = Digit | PlaybackFinished | Timeout | PinChecked | Loaded


# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class CheckPin:
    mailbox: str
    pin: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class LoadMessages:
    mailbox: str


@dataclass(frozen=True, slots=True)
class PlayMessage:
    """Play the message (its audio file), after ``prompts``."""

    message_id: int
    prompts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlayBeep:
    """Say ``prompts``, then the beep."""

    prompts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MarkHeard:
    message_id: int


@dataclass(frozen=True, slots=True)
class DeleteMessage:
    message_id: int


@dataclass(frozen=True, slots=True)
class ListenForGreeting:
    """Hand the caller's audio to :meth:`MailboxMenu.heard` from now on."""


@dataclass(frozen=True, slots=True)
class SaveGreeting:
    audio: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SetPin:
    pin: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CallBack:
    """Call ``number`` (a message's caller) with the mailbox owner's rights."""

    number: str


@dataclass(frozen=True, slots=True)
class Hangup:
    reason: str


MailboxAction = (Play | StopPlayback | CheckPin | LoadMessages | PlayMessage | PlayBeep | MarkHeard | DeleteMessage
                 | ListenForGreeting | SaveGreeting | SetPin | CallBack | Hangup)


class Phase(enum.Enum):
    MAILBOX = "mailbox"
    PIN = "pin"
    CHECKING = "checking"
    LOADING = "loading"
    MAIN = "main"
    MESSAGE = "message"
    OPTIONS = "options"
    GREETING = "greeting"          # the instruction and beep play
    RECORDING = "recording"        # the greeting is being recorded
    NEW_PIN = "new_pin"
    REPEAT_PIN = "repeat_pin"
    CLOSING = "closing"            # the last words play, then hang up
    DONE = "done"


ENTRY_PHASES: Final = frozenset({Phase.MAILBOX, Phase.PIN, Phase.NEW_PIN, Phase.REPEAT_PIN})
"""Phases that collect several keys, ended by ``#``."""

WAITING_PHASES: Final = frozenset({Phase.CHECKING, Phase.LOADING})
"""Phases that wait for the store: keys pressed then are kept for after."""


def number_prompts(count: int) -> tuple[str, ...]:
    """A number said digit by digit (``digit_1``, ``digit_2`` for 12)."""
    return tuple(f"digit_{d}" for d in str(max(0, count)))


class MailboxMenu:
    """One caller in a mailbox."""

    def __init__(self, *, mailbox: str | None, authenticated: bool, pin_policy: Callable[[str], PinPolicy],
                 silence_seconds: float = 3.0) -> None:
        """``mailbox``: known (``*97``, ``*98<mailbox>``) or None (ask);
        ``authenticated``: the caller is the owner's own phone (no PIN);
        ``pin_policy``: a mailbox's rules for a new PIN."""
        self.mailbox = mailbox
        self.authenticated = authenticated and mailbox is not None
        self.pin_policy = pin_policy
        self.silence_seconds = silence_seconds
        self.phase = Phase.MAILBOX
        self.messages: list[MessageInfo] = []
        self.index = 0
        self.failures = 0
        self.repeats = 0
        self.recording: MessageRecording | None = None
        self._buffer = ""
        self._new_pin = ""
        self._playing = False
        self._message_playing = False
        """What plays is a message (not the menu after it)."""
        self._deadline: float | None = None
        self._steps: list[str] = []
        self._ahead: list[str] = []
        """Keys pressed while the store was asked (at most MAX_ENTRY + 1)."""

    # ------------------------------------------------------------ reading

    @property
    def path(self) -> str:
        """What the caller did, for the CDR: ``voicemail[2001|listen|delete]``."""
        return f"voicemail[{'|'.join([self.mailbox or '?', *self._steps])}]"

    def deadline(self) -> float | None:
        return None if self._playing else self._deadline

    @property
    def current(self) -> MessageInfo | None:
        return self.messages[self.index] if 0 <= self.index < len(self.messages) else None

    # ------------------------------------------------------------ driving

    def start(self, now: float) -> list[MailboxAction]:
        if self.authenticated:
            assert self.mailbox is not None
            self.phase = Phase.LOADING
            return [LoadMessages(self.mailbox)]
        if self.mailbox is not None:
            return self._say(Phase.PIN, ("vm_enter_pin",))
        return self._say(Phase.MAILBOX, ("vm_enter_mailbox",))

    def handle(self, event: MailboxEvent, now: float) -> list[MailboxAction]:
        if self.phase is Phase.DONE:
            return []
        match event:
            case PlaybackFinished():
                return self._finished(event, now)
            case Digit():
                return self._press(event.digit, now)
            case Timeout():
                return self._timeout(now)
            case PinChecked():
                return self._type_ahead(self._pin_checked(event.outcome), now)
            case Loaded():
                self.messages = list(event.messages)
                self.index = 0
                return self._type_ahead(self._main(greet=True), now)

    def _press(self, digit: str, now: float) -> list[MailboxAction]:
        if self.phase in WAITING_PHASES:
            if len(self._ahead) <= MAX_ENTRY:
                self._ahead.append(digit)
            return []
        actions: list[MailboxAction] = []
        if self._playing and self.phase not in (Phase.CLOSING, Phase.GREETING):
            self._playing = self._message_playing = False
            actions.append(StopPlayback())
            if self.phase is Phase.MESSAGE:
                actions.extend(self._heard_now())
        return actions + self._key(digit, now)

    def _type_ahead(self, actions: list[MailboxAction], now: float) -> list[MailboxAction]:
        """``actions``, then the kept keys pressed into the phase they led
        to (kept again if that phase waits for the store too)."""
        ahead, self._ahead = self._ahead, []
        for digit in ahead:
            if self.phase is Phase.DONE:
                break
            more = self._press(digit, now)
            if more[:1] == [StopPlayback()] and actions and isinstance(actions[-1], Play):
                # Cut before it began: it is not started at all.
                actions, more = actions[:-1], more[1:]
            actions += more
        return actions

    def heard(self, linear: bytes) -> list[MailboxAction]:
        """Audio while a greeting is recorded."""
        if self.phase is not Phase.RECORDING or self.recording is None:
            return []
        if self.recording.feed(linear) is None:
            return []
        return self._greeting_done()

    # ------------------------------------------------------------ pieces

    def _say(self, phase: Phase, prompts: tuple[str, ...]) -> list[MailboxAction]:
        self.phase, self._playing, self._buffer = phase, True, ""
        return [Play(prompts)]

    def _finished(self, event: PlaybackFinished, now: float) -> list[MailboxAction]:
        if not self._playing:
            return []  # a playlist we stopped
        self._playing = False
        match self.phase:
            case Phase.CLOSING:
                self.phase = Phase.DONE
                return [Hangup(self._closing_reason)]
            case Phase.GREETING:
                self.phase = Phase.RECORDING
                self.recording = MessageRecording(max_seconds=GREETING_SECONDS, silence_seconds=self.silence_seconds)
                self._deadline = now + GREETING_SECONDS + 1.0
                return [ListenForGreeting()]
            case Phase.MESSAGE if self._message_playing:
                # The message itself is over: heard (the lamp may go out
                # now), then what can be done with it.
                self._message_playing, self._playing = False, True
                return [*self._heard_now(), Play(("vm_message_menu",))]
        self._deadline = now + (DIGIT_WAIT * 2 if self.phase in ENTRY_PHASES else KEY_WAIT)
        return []

    def _heard_now(self) -> list[MailboxAction]:
        message = self.current
        if message is None or message.heard:
            return []
        self.messages[self.index] = MessageInfo(message.id, message.caller, True)
        return [MarkHeard(message.id)]

    _closing_reason = "voicemail_done"

    def _close(self, reason: str, prompts: tuple[str, ...] = ("goodbye",)) -> list[MailboxAction]:
        self._closing_reason = reason
        self._steps.append(reason.removeprefix("voicemail_"))
        return self._say(Phase.CLOSING, prompts)

    def _timeout(self, now: float) -> list[MailboxAction]:
        self._deadline = None
        if self.phase is Phase.RECORDING:
            return self._greeting_done()
        if self.phase in ENTRY_PHASES and self._buffer:
            return self._entry_done()
        self.repeats += 1
        if self.repeats >= REPEATS:
            return self._close("voicemail_no_input")
        match self.phase:
            case Phase.MAILBOX:
                return self._say(Phase.MAILBOX, ("vm_enter_mailbox",))
            case Phase.PIN:
                return self._say(Phase.PIN, ("vm_enter_pin",))
            case Phase.MAIN:
                return self._main(greet=False)
            case Phase.MESSAGE:
                return self._say(Phase.MESSAGE, ("vm_message_menu",))
            case Phase.OPTIONS | Phase.NEW_PIN | Phase.REPEAT_PIN:
                return self._say(Phase.OPTIONS, ("vm_options_menu",))
        return []

    def _key(self, digit: str, now: float) -> list[MailboxAction]:
        self._deadline = None
        if self.phase in ENTRY_PHASES:
            if digit == "#" or len(self._buffer) + 1 >= MAX_ENTRY:
                if digit != "#":
                    self._buffer += digit
                return self._entry_done()
            if digit != "*":
                self._buffer += digit
            self._deadline = now + DIGIT_WAIT
            return []
        if self.phase is Phase.RECORDING and self.recording is not None:
            return self._greeting_done() if self.recording.key(digit) else []
        self.repeats = 0
        match self.phase:
            case Phase.MAIN:
                return self._main_key(digit)
            case Phase.MESSAGE:
                return self._message_key(digit)
            case Phase.OPTIONS:
                return self._options_key(digit)
        return []

    def _entry_done(self) -> list[MailboxAction]:
        entry, self._buffer = self._buffer, ""
        match self.phase:
            case Phase.MAILBOX:
                if not entry:
                    return self._say(Phase.MAILBOX, ("vm_enter_mailbox",))
                self.mailbox = entry
                return self._say(Phase.PIN, ("vm_enter_pin",))
            case Phase.PIN:
                assert self.mailbox is not None
                self.phase = Phase.CHECKING
                return [CheckPin(self.mailbox, entry)]
            case Phase.NEW_PIN:
                self._new_pin = entry
                return self._say(Phase.REPEAT_PIN, ("vm_repeat_pin",))
            case Phase.REPEAT_PIN:
                chosen, self._new_pin = self._new_pin, ""
                if entry != chosen or not self.pin_policy(self.mailbox or "").allows(entry):
                    self._steps.append("pin_refused")
                    return self._say(Phase.OPTIONS, ("vm_pin_rejected", "vm_options_menu"))
                self._steps.append("pin_changed")
                self.phase, self._playing = Phase.OPTIONS, True
                return [SetPin(entry), Play(("vm_pin_changed", "vm_options_menu"))]
        return []

    def _pin_checked(self, outcome: PinOutcome) -> list[MailboxAction]:
        if self.phase is not Phase.CHECKING:
            return []
        match outcome:
            case "valid":
                assert self.mailbox is not None
                self._steps.append("pin_ok")
                self.phase = Phase.LOADING
                return [LoadMessages(self.mailbox)]
            case "locked":
                return self._close("voicemail_locked", ("vm_locked", "goodbye"))
            case "invalid":
                self.failures += 1
                self._steps.append("pin_wrong")
                if self.failures >= ATTEMPTS:
                    return self._close("voicemail_auth_failed", ("vm_wrong_pin", "goodbye"))
                return self._say(Phase.PIN, ("vm_wrong_pin", "vm_enter_pin"))

    def _counts(self) -> tuple[str, ...]:
        new = sum(1 for m in self.messages if not m.heard)
        saved = len(self.messages) - new
        return ("vm_you_have", *number_prompts(new), "vm_new_messages", "vm_and", *number_prompts(saved),
                "vm_saved_messages")

    def _main(self, *, greet: bool) -> list[MailboxAction]:
        return self._say(Phase.MAIN, (*self._counts(), "vm_main_menu") if greet else ("vm_main_menu",))

    def _main_key(self, digit: str) -> list[MailboxAction]:
        match digit:
            case "1":
                self._steps.append("listen")
                self.index = 0
                return self._play_current(())
            case "0":
                self._steps.append("options")
                return self._say(Phase.OPTIONS, ("vm_options_menu",))
            case "*":
                return self._close("voicemail_done")
        return self._say(Phase.MAIN, ("invalid_option", "vm_main_menu"))

    def _play_current(self, before: tuple[str, ...]) -> list[MailboxAction]:
        message = self.current
        if message is None:
            self.index = 0
            return self._say(Phase.MAIN, (*before, "vm_no_more_messages", "vm_main_menu"))
        self.phase, self._playing, self._message_playing = Phase.MESSAGE, True, True
        header = "vm_saved_message" if message.heard else "vm_new_message"
        return [PlayMessage(message.id, (*before, header))]

    def _message_key(self, digit: str) -> list[MailboxAction]:
        message = self.current
        if message is None:
            return self._main(greet=False)
        match digit:
            case "4":
                return self._play_current(())
            case "5":
                if not message.caller:
                    return self._say(Phase.MESSAGE, ("not_available", "vm_message_menu"))
                self._steps.append("call_back")
                self.phase = Phase.DONE
                return [CallBack(message.caller)]
            case "6":
                self.index += 1
                return self._play_current(())
            case "7":
                self._steps.append("delete")
                del self.messages[self.index]
                return [DeleteMessage(message.id), *self._play_current(("vm_message_deleted",))]
            case "9":
                self._steps.append("save")
                self.index += 1
                return self._play_current(("vm_message_saved",))
            case "*":
                return self._main(greet=True)
        return self._say(Phase.MESSAGE, ("invalid_option", "vm_message_menu"))

    def _options_key(self, digit: str) -> list[MailboxAction]:
        match digit:
            case "1":
                self._steps.append("greeting")
                self.phase, self._playing = Phase.GREETING, True
                return [PlayBeep(("vm_record_greeting",))]
            case "2":
                return self._say(Phase.NEW_PIN, ("vm_new_pin",))
            case "*":
                return self._main(greet=False)
        return self._say(Phase.OPTIONS, ("invalid_option", "vm_options_menu"))

    def _greeting_done(self) -> list[MailboxAction]:
        recording, self.recording = self.recording, None
        self._deadline = None
        if recording is None:
            return []
        recording.stop("max_length")
        if not recording.voiced:
            return self._say(Phase.OPTIONS, ("vm_options_menu",))
        actions: list[MailboxAction] = [SaveGreeting(recording.audio())]
        return actions + self._say(Phase.OPTIONS, ("vm_greeting_saved", "vm_options_menu"))
