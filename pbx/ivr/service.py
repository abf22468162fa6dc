"""The asyncio glue between the call layer and the media layer: a call's
local media side (:class:`pbx.calls.local.CallMedia`) on a
:class:`pbx.media.endpoint.MediaSession`.

Thin on purpose: the menu's decisions are :class:`pbx.ivr.menu.MenuRun`'s;
here its actions are carried out (prompts loaded in a thread, then played;
playback stopped) and what happens is fed back (keys from RTP, in-band
tones and SIP INFO as one stream, the end of a playlist, the deadline it
asked for). What the call must do (transfer, hang up, refuse after an
announcement) goes back through ``act``, which runs it for the call and
sends what it sent. One task per call at most, cancelled on close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from pbx.accountcodes.prompt import Accepted, CheckCode, Checked, CodePrompt, Outcome, PromptAction, PromptEvent
from pbx.calls.local import Act, CallMedia, MediaUnavailable
from pbx.conference.bridge import MEMBER_PHRASES, ConferenceBridge, Seat
from pbx.conference.room import Refusal
from pbx.ivr.menu import CollectDigits, Hangup, MenuAction, MenuRun, Play, StopPlayback, Timeout, Transfer
from pbx.ivr.prompts import PromptLibrary, PromptNotFound
from pbx.media.audio_file import Audio, AudioFileError
from pbx.media.dtmf_info import DtmfInfoError
from pbx.media.endpoint import MediaEngine, MediaSession
from pbx.media.events import Digit, MediaEvent, PlaybackFinished
from pbx.media.player import Loop, PlaylistItem, Prompt, Silence, Tone
from pbx.media.ports import PortsExhausted
from pbx.media.sdes import MediaEncryption
from pbx.media.sdp import Direction, Origin, SdpError, parse_sdp
from pbx.media.tones import ToneKind, tone_spec
from pbx.routing.conferences import Conference
from pbx.voicemail.menu import MailboxMenu
from pbx.voicemail.service import VoicemailService
from pbx.voicemail.session import DepositRun, Message, MessageRequest, leave_message, open_mailbox

log = structlog.get_logger("pbx.ivr")

ANNOUNCEMENT_TAIL = 0.3
"""Silence after an announcement, so its last word is not cut by the final response."""


class IvrMedia:
    """Local media for the controller (``CallController.media``)."""

    def __init__(self, engine: MediaEngine, prompts: PromptLibrary, *,
                 conferences: ConferenceBridge | None = None, voicemail: VoicemailService | None = None) -> None:
        self.engine = engine
        self.prompts = prompts
        self.conferences = conferences
        self.voicemail = voicemail
        """Mailboxes (messages, greetings, PINs); None: no voicemail."""

    def conference_full(self, room: Conference) -> bool:
        bridge = self.conferences
        return bridge is not None and bridge.refusal(room, moderator=True) is Refusal.FULL

    def open(self, act: Act, encryption: MediaEncryption = "none") -> CallMedia:
        media = SessionMedia(self.prompts, act, conferences=self.conferences, voicemail=self.voicemail)
        try:
            media.session = self.engine.open_session_now(on_event=media.on_event, encryption=encryption)
        except PortsExhausted as err:
            raise MediaUnavailable(str(err)) from None
        return media


class SessionMedia:
    """One call's media side."""

    session: MediaSession

    def __init__(self, prompts: PromptLibrary, act: Act, *, conferences: ConferenceBridge | None = None,
                 voicemail: VoicemailService | None = None) -> None:
        self._prompts = prompts
        self._act = act
        self._conferences = conferences
        self._seat: Seat | None = None
        """The caller's place in a conference room, once in one."""
        self._voicemail = voicemail
        self.deposit: DepositRun | None = None
        """A message being left, ended (and kept) when the call ends."""
        self._digits: asyncio.Queue[Digit | Checked] = asyncio.Queue()
        """Keys, and what the call said of an account code entry."""
        self._task: asyncio.Task[None] | None = None

    def on_event(self, event: MediaEvent) -> None:
        if isinstance(event, Digit):
            if self._seat is not None and self._conferences is not None:
                self._conferences.key(self._seat, event.digit, event.time)
                return
            self._digits.put_nowait(event)

    def code_checked(self, outcome: Outcome) -> None:
        self._digits.put_nowait(Checked(outcome))

    # ------------------------------------------------------------ SDP and INFO

    def answer(self, offer: bytes) -> bytes:
        return self.session.answer(offer).encode()

    def offer(self, *, send_only: bool = False) -> bytes:
        return self.session.offer(direction=Direction.SENDONLY if send_only else Direction.SENDRECV).encode()

    def accept(self, answer: bytes) -> None:
        self.session.accept(answer)

    def info(self, content_type: str, body: bytes) -> int:
        try:
            self.session.info(content_type, body)
        except DtmfInfoError as err:
            return err.status
        return 200

    def reoffer(self, remote: bytes) -> bytes:
        # RFC 3264 §8: an offer in this dialog keeps our o= line (same
        # session id, next version), whatever it now describes.
        ours = self.session.sdp
        try:
            description = parse_sdp(remote)
        except SdpError:
            return remote
        ours.version += 1
        origin = Origin(username=ours.username, session_id=ours.session_id, version=ours.version,
                        address=ours.address)
        return replace(description, origin=origin).serialise().encode()

    # ------------------------------------------------------------ what plays

    def run_menu(self, run: MenuRun, language: str, on_action: Callable[[Transfer | Hangup], None],
                 on_path: Callable[[str], None]) -> None:
        def handle(event: PromptEvent, now: float) -> list[MenuAction | PromptAction]:
            return [] if isinstance(event, Checked) else list(run.handle(event, now))

        def act(action: MenuAction | PromptAction) -> bool:
            if isinstance(action, Transfer | Hangup):
                self._finish(lambda: on_action(action))
                return True
            return False

        self._start(self._drive(run.start, handle, run.deadline, lambda: run.path, language, on_path, act))

    def run_code_prompt(self, prompt: CodePrompt, language: str,
                        on_action: Callable[[CheckCode | Accepted | Hangup], None],
                        on_path: Callable[[str], None]) -> None:
        def handle(event: PromptEvent, now: float) -> list[MenuAction | PromptAction]:
            return list(prompt.handle(event, now))

        def act(action: MenuAction | PromptAction) -> bool:
            if isinstance(action, CheckCode):
                # Handed over at once; the answer comes back as `Checked`.
                self._act(lambda: on_action(action))
            elif isinstance(action, Accepted | Hangup):
                self._finish(lambda: on_action(action))
                return True
            return False

        self._start(self._drive(prompt.start, handle, prompt.deadline, lambda: prompt.path, language, on_path, act))

    def _finish(self, work: Callable[[], None]) -> None:
        """The machine is done: hand its last action to the call."""
        self._task = None
        self._act(work)

    def announce(self, phrase: str | Sequence[str], language: str, then: Callable[[], None]) -> None:
        self._start(self._announce([phrase] if isinstance(phrase, str) else list(phrase), language, then))

    finish = _finish

    def leave_message(self, request: MessageRequest, on_message: Callable[[Message], None],
                      on_done: Callable[[str], None]) -> None:
        if self._voicemail is None:
            self._act(lambda: on_done("voicemail_unavailable"))
            return
        self._start(leave_message(self, self._voicemail, request, lambda message: self._act(
            lambda: on_message(message)), on_done))

    def run_mailbox(self, menu: MailboxMenu, language: str, on_call_back: Callable[[str, str], None],
                    on_hangup: Callable[[str], None], on_path: Callable[[str], None]) -> None:
        if self._voicemail is None:
            self._act(lambda: on_hangup("voicemail_unavailable"))
            return
        self._start(open_mailbox(self, self._voicemail, menu, language, on_call_back, on_hangup, on_path))

    def ringback(self, country: str) -> None:
        self._cancel()
        self.session.play([Tone(tone_spec(country, ToneKind.RINGBACK))])

    def music(self, music: str | None, *, language: str = "en",
              announce: Callable[[], str | None] | None = None, every: float = 0.0) -> None:
        self._start(self._music(music, language, announce, every))

    def join_conference(self, room: Conference, *, moderator: bool, language: str, on_end: Callable[[str], None],
                        music: str | None = None) -> None:
        self._start(self._conference(room, moderator, language, on_end, music))

    async def _conference(self, room: Conference, moderator: bool, language: str, on_end: Callable[[str], None],
                          music: str | None) -> None:
        bridge = self._conferences
        if bridge is None:
            self._finish(lambda: on_end("conference_unavailable"))
            return
        library = self._prompts

        def load() -> dict[str, Audio]:
            sounds = {}
            for phrase in MEMBER_PHRASES:
                try:
                    sounds[phrase] = library.load(language, phrase)
                except (PromptNotFound, AudioFileError) as err:
                    log.error("prompt_missing", prompt=phrase, language=language, error=str(err))
            return sounds

        sounds = await asyncio.to_thread(load)
        tune = await asyncio.to_thread(self._prompts.music, music)
        seat = bridge.enter(room, self.session, moderator=moderator, sounds=sounds, music=tune,
                            on_drop=lambda: self._act(lambda: on_end("conference_dropped")))
        if isinstance(seat, Refusal):
            playing = await self._play([f"conference_{seat.value}"], language, ANNOUNCEMENT_TAIL)
            await playing
            self._finish(lambda: on_end(f"conference_{seat.value}"))
            return
        self._seat = seat
        self._task = None

    def close(self) -> None:
        deposit, self.deposit = self.deposit, None
        if deposit is not None:
            deposit.hangup()  # the caller hung up while speaking: what was said is the message
        self._cancel()
        seat, self._seat = self._seat, None
        if seat is not None and self._conferences is not None:
            self._conferences.leave(seat)
        self.session.close()

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        self._cancel()
        self._task = asyncio.get_running_loop().create_task(work)

    def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _load(self, prompts: Sequence[str], language: str) -> list[Audio]:
        library = self._prompts

        def load() -> list[Audio]:
            found = []
            for name in prompts:
                try:
                    found.append(library.load(language, name))
                except (PromptNotFound, AudioFileError) as err:
                    log.error("prompt_missing", prompt=name, language=language, error=str(err))
            return found

        return await asyncio.to_thread(load)

    prompts = _load

    async def _play(self, prompts: Sequence[str], language: str, tail: float = 0.0) -> asyncio.Future[bool]:
        audio = await self._load(prompts, language)
        items: list[PlaylistItem] = [Prompt(a) for a in audio]
        if tail:
            items.append(Silence(tail))
        return self.session.play(items)

    async def _announce(self, phrases: list[str], language: str, then: Callable[[], None]) -> None:
        playing = await self._play(phrases, language, ANNOUNCEMENT_TAIL)
        await playing
        self._task = None
        self._act(then)

    async def _music(self, music: str | None, language: str, announce: Callable[[], str | None] | None,
                     every: float) -> None:
        tune = await asyncio.to_thread(self._prompts.music, music)
        while True:
            phrase = announce() if announce is not None else None
            items: list[PlaylistItem] = [Prompt(a) for a in await self._load([phrase], language)] if phrase else []
            if tune is not None:
                items.append(Loop(tune))
            self.session.play(items)
            if phrase is None or every <= 0:
                return  # the loop plays until stopped, without this task
            await asyncio.sleep(every)

    async def _drive(self, start: Callable[[float], Sequence[MenuAction | PromptAction]],
                     handle: Callable[[PromptEvent, float], list[MenuAction | PromptAction]],
                     deadline: Callable[[], float | None], path: Callable[[], str], language: str,
                     on_path: Callable[[str], None], act: Callable[[MenuAction | PromptAction], bool]) -> None:
        """Run a menu or a code prompt: play what it says, feed it keys,
        the end of what plays and its deadline, until ``act`` takes an
        action that ends it."""
        loop = asyncio.get_running_loop()
        playing: asyncio.Future[bool] | None = None
        actions = start(loop.time())
        while True:
            on_path(path())
            for action in actions:
                match action:
                    case Play():
                        playing = await self._play(action.prompts, language)
                    case StopPlayback():
                        self.session.stop_playback()
                        playing = None
                    case CollectDigits():
                        pass  # the machine's deadline() says until when
                    case _:
                        if act(action):
                            return
            event = await self._next(playing, deadline())
            if isinstance(event, PlaybackFinished):
                playing = None
            actions = handle(event, loop.time())

    async def _next(self, playing: asyncio.Future[bool] | None, deadline: float | None) -> PromptEvent:
        """The first of: a key (or a code's outcome), the end of what plays, the deadline."""
        event = await self.next_event(playing, deadline)
        assert not isinstance(event, Sequence)
        return event

    async def next_event(self, playing: asyncio.Future[bool] | None, deadline: float | None,
                         also: asyncio.Queue[Sequence[Any]] | None = None) -> PromptEvent | Sequence[Any]:
        """The first of: a key (or a code's outcome), the end of what plays,
        the deadline, or an item of ``also`` (what heard audio caused)."""
        loop = asyncio.get_running_loop()
        if not self._digits.empty():
            return self._digits.get_nowait()
        key: asyncio.Task[Digit | Checked] = loop.create_task(self._digits.get())
        waiting: set[asyncio.Future[Any]] = {key}
        other: asyncio.Task[Sequence[Any]] | None = None
        if also is not None:
            other = loop.create_task(also.get())
            waiting.add(other)
        if playing is not None:
            waiting.add(playing)
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (key, other):
                if task is not None and not task.done():
                    task.cancel()
        if key in done:
            if other is not None and other in done:
                also_result = other.result()
                assert also is not None
                also.put_nowait(also_result)  # not lost: the next call returns it
            return key.result()
        if other is not None and other in done:
            return other.result()
        if playing is not None and playing in done:
            return PlaybackFinished(playback_id=0, completed=playing.result(), time=loop.time())
        return Timeout(loop.time())


def prompt_library(prompt_dir: str | None) -> PromptLibrary:
    return PromptLibrary(Path(prompt_dir) if prompt_dir else None)
