"""The asyncio glue between a call's media and the voicemail machines.

:func:`leave_message` runs a :class:`pbx.voicemail.recording.Deposit`
and :func:`open_mailbox` a :class:`pbx.voicemail.menu.MailboxMenu` on a
call's local media (:class:`pbx.ivr.service.SessionMedia`): what they say
is played, keys, the end of what plays, their deadline and the caller's
audio are fed back, and what the store must do is done through the
:class:`pbx.voicemail.service.VoicemailService` (in threads). What the
call must do (keep the message for the CDR, hang up, call back) goes back
through the callbacks, which the media side runs through ``act``.

The caller's audio arrives in the media stream's listener, outside this
task; what the machine answers to it is queued here and handled in turn
with keys and playback ends, so one task drives each machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from pbx.accountcodes.prompt import Checked
from pbx.ivr.menu import Play, StopPlayback, Timeout
from pbx.media.audio_file import Audio
from pbx.media.events import Digit, PlaybackFinished
from pbx.media.player import PlaylistItem, Prompt, Silence
from pbx.voicemail.menu import (CallBack, CheckPin, DeleteMessage, Hangup, ListenForGreeting, Loaded, LoadMessages,
                                MailboxAction, MailboxMenu, MarkHeard, MessageInfo, Phase, PinChecked, PlayBeep,
                                PlayMessage, SaveGreeting, SetPin, number_prompts)
from pbx.voicemail.recording import (Deposit, DepositAction, HangUp, MessageEnded, PlayGreeting, SayGoodbye,
                                     StartRecording, beep)

if TYPE_CHECKING:
    from pbx.ivr.service import SessionMedia
    from pbx.voicemail.service import VoicemailService

log = structlog.get_logger("pbx.voicemail")

A = TypeVar("A")
BEEP = Audio(beep(), name="beep")


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRequest:
    """A caller about to leave a message in ``mailbox``."""

    mailbox: str
    owner_name: str
    max_seconds: float
    silence_seconds: float
    language: str


@dataclass(frozen=True, slots=True)
class Message:
    """A message left: its audio (8 kHz 16-bit linear) and why it ended."""

    audio: bytes
    seconds: float
    reason: str


class _Listening:
    """The caller's audio into a machine; what it answers, queued for the task."""

    def __init__(self, media: SessionMedia, heard: Callable[[bytes], Sequence[A]],
                 queue: asyncio.Queue[Sequence[A]]) -> None:
        self._media, self._heard, self._queue = media, heard, queue

    def __call__(self, linear: bytes) -> None:
        actions = self._heard(linear)
        if actions:
            self._queue.put_nowait(actions)

    def start(self) -> None:
        self._media.session.stream.listener = self

    def stop(self) -> None:
        if self._media.session.stream.listener is self:
            self._media.session.stream.listener = None


async def _next(media: SessionMedia, heard: asyncio.Queue[Any], playing: asyncio.Future[bool] | None,
                deadline: float | None) -> Digit | PlaybackFinished | Timeout | Sequence[Any]:
    """The first of: a key, actions the audio caused, the end of what plays, the deadline."""
    while True:
        if not heard.empty():
            return heard.get_nowait()  # type: ignore[no-any-return]
        event = await media.next_event(playing, deadline, also=heard)
        if not isinstance(event, Checked):  # an account code's outcome: never sent here
            return event


# ---------------------------------------------------------------- leaving a message


class DepositRun:
    """A deposit in progress; the media side ends it when the call ends."""

    def __init__(self, machine: Deposit, on_message: Callable[[Message], None]) -> None:
        self.machine = machine
        self._on_message = on_message
        self.kept = False

    def ended(self, reason: str) -> None:
        """The message is complete: hand it to the call (once, if voiced)."""
        if self.kept:
            return
        self.kept = True
        recording = self.machine.recording
        if recording.voiced:
            audio = recording.audio()
            self._on_message(Message(audio=audio, seconds=len(audio) / 16000, reason=reason))

    def hangup(self) -> None:
        """The caller hung up (or the call ended): keep what was said."""
        for action in self.machine.hangup():
            if isinstance(action, MessageEnded):
                self.ended(action.reason)


async def leave_message(media: SessionMedia, service: VoicemailService, request: MessageRequest,
                        on_message: Callable[[Message], None], on_done: Callable[[str], None]) -> None:
    """Greeting, beep, the message; ``on_message`` once it is complete
    (voiced), ``on_done`` with the reason once the goodbye was said."""
    loop = asyncio.get_running_loop()
    machine = Deposit(max_seconds=request.max_seconds, silence_seconds=request.silence_seconds)
    run = media.deposit = DepositRun(machine, on_message)
    heard: asyncio.Queue[Sequence[DepositAction]] = asyncio.Queue()
    listening = _Listening(media, machine.heard, heard)
    playing: asyncio.Future[bool] | None = None
    try:
        items = await _greeting(media, service, request)
        actions: Sequence[DepositAction] = machine.start(loop.time())
        while True:
            for action in actions:
                match action:
                    case PlayGreeting():
                        playing = media.session.play(items)
                    case StartRecording():
                        listening.start()
                    case MessageEnded():
                        listening.stop()
                        run.ended(action.reason)
                    case SayGoodbye():
                        playing = media.session.play([Prompt(a) for a in await media.prompts(["goodbye"],
                                                                                             request.language)])
                    case HangUp():
                        media.deposit = None
                        media.finish(lambda: on_done(action.reason))
                        return
            event = await _next(media, heard, playing, machine.deadline())
            if isinstance(event, (Digit, PlaybackFinished, Timeout)):
                if isinstance(event, PlaybackFinished):
                    playing = None
                actions = machine.handle(event, loop.time())
            else:
                actions = event
    except Exception:  # the store or a file failed: keep what was said, end the call
        log.exception("voicemail_deposit_failed", mailbox=request.mailbox)
        media.deposit = None
        run.hangup()
        media.finish(lambda: on_done("voicemail_failed"))
    finally:
        listening.stop()


async def _greeting(media: SessionMedia, service: VoicemailService, request: MessageRequest) -> list[PlaylistItem]:
    """The owner's greeting, else "the person at extension N, name, is not
    available" in the shipped voice; then the beep."""
    own = await service.greeting(request.mailbox)
    if own is not None:
        return [Prompt(own), Silence(0.2), Prompt(BEEP)]
    language = request.language
    before = await media.prompts(["vm_person_at_extension", *number_prompts_of(request.mailbox)], language)
    name = await service.spoken_name(request.owner_name, language) if request.owner_name else None
    after = await media.prompts(["vm_is_not_available"], language)
    items: list[PlaylistItem] = [Prompt(a) for a in before]
    if name is not None:
        items.append(Prompt(name))
    items.extend(Prompt(a) for a in after)
    return [*items, Silence(0.2), Prompt(BEEP)]


def number_prompts_of(digits: str) -> list[str]:
    """An extension number said digit by digit."""
    return [f"digit_{d}" for d in digits if d.isdigit()]


# ---------------------------------------------------------------- the owner's menu


async def open_mailbox(media: SessionMedia, service: VoicemailService, menu: MailboxMenu, language: str,
                       on_call_back: Callable[[str, str], None], on_hangup: Callable[[str], None],
                       on_path: Callable[[str], None]) -> None:
    """Run ``menu`` until it hangs up (``on_hangup``) or calls a caller
    back (``on_call_back(mailbox, number)``)."""
    loop = asyncio.get_running_loop()
    heard: asyncio.Queue[Sequence[MailboxAction]] = asyncio.Queue()
    listening = _Listening(media, menu.heard, heard)
    playing: asyncio.Future[bool] | None = None
    try:
        actions: Sequence[MailboxAction] = menu.start(loop.time())
        while True:
            on_path(menu.path)
            replies: list[PinChecked | Loaded] = []
            for action in actions:
                match action:
                    case Play():
                        playing = media.session.play([Prompt(a) for a in await media.prompts(action.prompts,
                                                                                             language)])
                    case PlayBeep():
                        audio = await media.prompts(action.prompts, language)
                        playing = media.session.play([*(Prompt(a) for a in audio), Silence(0.2), Prompt(BEEP)])
                    case PlayMessage():
                        playing = await _play_message(media, service, menu, action, language)
                    case StopPlayback():
                        media.session.stop_playback()
                        playing = None
                    case CheckPin():
                        replies.append(PinChecked(await service.check_pin(action.mailbox, action.pin)))
                    case LoadMessages():
                        found = await service.messages(action.mailbox)
                        replies.append(Loaded(tuple(MessageInfo(m.id, _callable(m.caller_number), m.heard)
                                                    for m in found)))
                    case MarkHeard():
                        assert menu.mailbox is not None
                        service.spawn(service.mark_heard(menu.mailbox, action.message_id))
                    case DeleteMessage():
                        assert menu.mailbox is not None
                        service.spawn(service.delete(menu.mailbox, action.message_id))
                    case ListenForGreeting():
                        listening.start()
                    case SaveGreeting():
                        listening.stop()
                        assert menu.mailbox is not None
                        service.spawn(service.save_greeting(menu.mailbox, action.audio))
                    case SetPin():
                        assert menu.mailbox is not None
                        service.spawn(service.set_pin(menu.mailbox, action.pin))
                    case CallBack():
                        on_path(menu.path)
                        mailbox = menu.mailbox or ""
                        media.finish(lambda: on_call_back(mailbox, action.number))
                        return
                    case Hangup():
                        on_path(menu.path)
                        media.finish(lambda: on_hangup(action.reason))
                        return
            if replies:
                actions = [a for reply in replies for a in menu.handle(reply, loop.time())]
                continue
            if menu.phase is not Phase.RECORDING:
                listening.stop()
            event = await _next(media, heard, playing, menu.deadline())
            if isinstance(event, (Digit, PlaybackFinished, Timeout)):
                if isinstance(event, PlaybackFinished):
                    playing = None
                actions = menu.handle(event, loop.time())
            else:
                actions = event
    except Exception:  # the store or a file failed: the caller is not left in silence
        log.exception("voicemail_menu_failed", mailbox=menu.mailbox)
        media.finish(lambda: on_hangup("voicemail_failed"))
    finally:
        listening.stop()


def _callable(number: str) -> str:
    """A caller's number fit to call back: digits (a leading +); else ""."""
    bare = number.removeprefix("+")
    return number if bare.isdigit() and 2 <= len(bare) <= 20 else ""


async def _play_message(media: SessionMedia, service: VoicemailService, menu: MailboxMenu, action: PlayMessage,
                        language: str) -> asyncio.Future[bool]:
    """The header prompts, then the message (the menu's next Play says what can be done with it)."""
    assert menu.mailbox is not None
    before = await media.prompts(action.prompts, language)
    audio = await service.message_audio(menu.mailbox, action.message_id)
    items: list[PlaylistItem] = [Prompt(a) for a in before]
    if audio is not None:
        items.append(Prompt(audio))
    items.append(Silence(0.3))
    return media.session.play(items)


__all__ = ["DepositRun", "Message", "MessageRequest", "leave_message", "number_prompts", "open_mailbox"]
