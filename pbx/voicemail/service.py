"""The voicemail edge: message files, the store, lamps and e-mail.

Everything here that blocks (writing a WAV file, a query, an argon2 PIN
check, espeak-ng saying a name, SMTP) runs in a thread
(``asyncio.to_thread``); the event loop only schedules it and, when it is
done, tells the presence service that a mailbox changed (its lamps update
within the same turn of the loop).

Files: ``<directory>/<mailbox>/<uuid>.wav`` for messages,
``<directory>/<mailbox>/greeting-<uuid>.wav`` for the owner's greeting
(8 kHz 16-bit mono PCM), ``<directory>/.names/<language>-<hash>.wav`` for
names spoken by espeak-ng. The store (:mod:`pbx.store.voicemail`) holds
the metadata, so nodes sharing one database and one directory (a network
file system) share mailboxes. A node whose own work changed a mailbox's
counts tells the others (``tell``: a NOTIFY on PostgreSQL), which read that
mailbox back at once, so another node's new message lights this node's
phones within milliseconds; every node also reads all counts back every
:data:`REFRESH_INTERVAL` seconds, the safety net.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import tempfile
import uuid
import wave
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import structlog

from pbx.ivr.phrases import VOICES
from pbx.media.audio_file import Audio, AudioFileError, load_wav
from pbx.presence.bodies import MailboxState
from pbx.routing.dialplan import Dialplan
from pbx.routing.voicemail import MailboxSettings
from pbx.store.voicemail import Counts, PinOutcome, StoredMessage, VoicemailStore, pin_matches
from pbx.voicemail.mail import MessageMail, send_mail

log = structlog.get_logger("pbx.voicemail")

REFRESH_INTERVAL: Final = 30.0
PURGE_INTERVAL: Final = 3600.0
SAMPLE_RATE: Final = 8000


def write_wav(path: Path, linear: bytes) -> None:
    """8 kHz 16-bit mono PCM, written under a temporary name then renamed:
    a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(linear)
    partial.replace(path)


class VoicemailService:
    def __init__(self, store: VoicemailStore, plan: Dialplan, *, node: str = "",
                 changed: Callable[[str], None] = lambda mailbox: None,
                 tell: Callable[[list[str]], Coroutine[Any, Any, None]] | None = None) -> None:
        self.store = store
        self.plan = plan
        self.node = node
        self.changed = changed
        """Called with a mailbox whose counts changed (the presence service's lamps)."""
        self.tell = tell
        """Tells the other nodes which mailboxes this node changed (None: alone)."""
        self.counts: dict[str, Counts] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def use_plan(self, plan: Dialplan) -> None:
        self.plan = plan

    @property
    def directory(self) -> Path:
        return Path(self.plan.voicemail.directory)

    def settings(self, mailbox: str) -> MailboxSettings | None:
        """The mailbox's settings; None when the extension has none (or it is off)."""
        extension = self.plan.extension(mailbox)
        if extension is None:
            return None
        settings = self.plan.voicemail.for_extension(extension)
        return settings if settings.enabled else None

    def state(self, mailbox: str) -> MailboxState:
        counts = self.counts.get(mailbox, Counts())
        return MailboxState(counts.new, counts.old)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` without waiting for it (kept until done)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def settled(self) -> None:
        """Wait for the work started so far (messages being kept, lamps)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("voicemail_task_failed", error=repr(task.exception()))

    # ------------------------------------------------------------ counts

    async def recount(self, mailbox: str | None = None, *, tell: bool = True) -> None:
        """Read the counts back from the store; lamps of the mailboxes whose
        counts changed are updated. ``tell``: the change is this node's own
        doing, so the other nodes are told (not when reading back what they
        said, nor on the periodic read)."""
        fresh = await asyncio.to_thread(self.store.counts, mailbox)
        boxes = [mailbox] if mailbox is not None else sorted(set(fresh) | set(self.counts))
        changed = []
        for box in boxes:
            now = fresh.get(box, Counts())
            if self.counts.get(box, Counts()) != now:
                if now == Counts():
                    self.counts.pop(box, None)
                else:
                    self.counts[box] = now
                self.changed(box)
                changed.append(box)
        if tell and changed and self.tell is not None:
            try:
                await self.tell(changed)
            except Exception:  # the others still read it back on their next refresh
                log.exception("voicemail_tell_failed", mailboxes=changed)

    async def run(self) -> None:
        """Read counts back and purge old messages, until cancelled."""
        loop = asyncio.get_running_loop()
        next_purge = loop.time() + 60.0
        while True:
            try:
                await self.recount(tell=False)
                if loop.time() >= next_purge:
                    next_purge = loop.time() + PURGE_INTERVAL
                    await self.purge()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: try again later
                log.exception("voicemail_refresh_failed")
            await asyncio.sleep(REFRESH_INTERVAL)

    async def purge(self, now: datetime | None = None) -> list[StoredMessage]:
        """Delete messages past their mailbox's retention, and their files."""
        def retention(mailbox: str) -> int | None:
            extension = self.plan.extension(mailbox)
            return None if extension is None else self.plan.voicemail.for_extension(extension).retention_days

        gone = await asyncio.to_thread(self.store.purge, now or datetime.now(UTC), retention)
        await asyncio.to_thread(self._remove_files, [m.file for m in gone])
        for mailbox in sorted({m.mailbox for m in gone}):
            await self.recount(mailbox)
        if gone:
            log.info("voicemail_purged", messages=len(gone))
        return gone

    def _remove_files(self, files: list[str]) -> None:
        for name in files:
            (self.directory / name).unlink(missing_ok=True)

    # ------------------------------------------------------------ leaving a message

    def deposit(self, *, mailbox: str, audio: bytes, caller_number: str, caller_name: str | None,
                call_uuid: str) -> None:
        """Keep a message (in the background): file, row, lamps, e-mail."""
        self.spawn(self._deposit(mailbox, audio, caller_number, caller_name, call_uuid))

    async def _deposit(self, mailbox: str, audio: bytes, caller_number: str, caller_name: str | None,
                       call_uuid: str) -> None:
        name = f"{mailbox}/{uuid.uuid4().hex}.wav"
        seconds = len(audio) / (2 * SAMPLE_RATE)
        received = datetime.now(UTC)
        try:
            await asyncio.to_thread(write_wav, self.directory / name, audio)
            message_id = await asyncio.to_thread(lambda: self.store.add(
                mailbox=mailbox, caller_number=caller_number, caller_name=caller_name, call_uuid=call_uuid,
                received_at=received, seconds=seconds, file=name))
        except Exception:
            log.exception("voicemail_not_kept", mailbox=mailbox, call_uuid=call_uuid)
            return
        log.info("voicemail_left", mailbox=mailbox, message_id=message_id, caller=caller_number,
                 seconds=round(seconds, 1), call_uuid=call_uuid)
        await self.recount(mailbox)
        settings = self.settings(mailbox)
        smtp = self.plan.voicemail.smtp
        if settings is not None and settings.email_messages and settings.email and smtp is not None:
            extension = self.plan.extension(mailbox)
            mail = MessageMail(mailbox=mailbox, owner=extension.name if extension is not None else mailbox,
                               to=settings.email, sender=smtp.sender or f"voicemail@{self.plan.domain}",
                               caller_number=caller_number, caller_name=caller_name, received_at=received,
                               seconds=seconds, wav=(self.directory / name))
            try:
                await asyncio.to_thread(send_mail, mail, smtp)
            except Exception as err:  # the message is kept; only the copy by mail failed
                log.warning("voicemail_mail_failed", mailbox=mailbox, message_id=message_id, error=str(err))
            else:
                log.info("voicemail_mailed", mailbox=mailbox, message_id=message_id)

    async def greeting(self, mailbox: str) -> Audio | None:
        """The owner's recorded greeting, if any (None also when its file is unusable)."""
        try:
            name = await asyncio.to_thread(self.store.greeting, mailbox)
            if name is None:
                return None
            return await asyncio.to_thread(load_wav, self.directory / name)
        except AudioFileError as err:
            log.warning("voicemail_greeting_unusable", mailbox=mailbox, error=str(err))
            return None

    async def spoken_name(self, name: str, language: str) -> Audio | None:
        """``name`` said by the shipped voice (espeak-ng, cached on disk);
        None when espeak-ng is not installed or fails."""
        voice = VOICES.get(language, VOICES["en"])
        key = hashlib.sha256(f"{voice}\0{name}".encode()).hexdigest()[:24]
        path = self.directory / ".names" / f"{language}-{key}.wav"

        def make() -> Audio | None:
            if not path.is_file():
                espeak = shutil.which("espeak-ng")
                if espeak is None:
                    return None
                path.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(suffix=".wav", dir=path.parent, delete=False) as tmp:
                    spoken = Path(tmp.name)
                try:
                    # The name goes in as one argument after "--": never a shell, never an option.
                    subprocess.run([espeak, "-v", voice, "-s", "160", "-w", str(spoken), "--", name], check=True,
                                   timeout=10, capture_output=True)
                    spoken.replace(path)
                finally:
                    spoken.unlink(missing_ok=True)
            return load_wav(path)

        try:
            return await asyncio.to_thread(make)
        except (OSError, subprocess.SubprocessError, AudioFileError) as err:
            log.warning("voicemail_name_unspoken", error=str(err))
            return None

    # ------------------------------------------------------------ the owner's menu

    async def check_pin(self, mailbox: str, pin: str) -> PinOutcome:
        extension = self.plan.extension(mailbox)
        settings = self.plan.voicemail.for_extension(extension) if extension is not None else None
        if settings is None or not settings.enabled:
            # No such mailbox: the same answer as a wrong PIN, after as long.
            await asyncio.to_thread(pin_matches, None, pin)
            return "invalid"
        outcome = await asyncio.to_thread(self.store.check_pin, mailbox, pin, datetime.now(UTC),
                                          settings.pin.lockout)
        if outcome != "valid":
            log.warning("voicemail_pin_refused", mailbox=mailbox, outcome=outcome)
        else:
            log.info("voicemail_pin_accepted", mailbox=mailbox)  # who opened a mailbox, for the record
        return outcome

    async def messages(self, mailbox: str) -> list[StoredMessage]:
        return await asyncio.to_thread(self.store.messages, mailbox)

    async def message_audio(self, mailbox: str, message_id: int) -> Audio | None:
        found = await asyncio.to_thread(self.store.message, mailbox, message_id)
        if found is None:
            return None
        try:
            return await asyncio.to_thread(load_wav, self.directory / found.file)
        except AudioFileError as err:
            log.error("voicemail_file_unusable", mailbox=mailbox, message_id=message_id, error=str(err))
            return None

    async def mark_heard(self, mailbox: str, message_id: int) -> None:
        if await asyncio.to_thread(self.store.mark_heard, mailbox, message_id, datetime.now(UTC)):
            await self.recount(mailbox)

    async def delete(self, mailbox: str, message_id: int) -> None:
        gone = await asyncio.to_thread(self.store.delete, mailbox, message_id)
        if gone is not None:
            await asyncio.to_thread(self._remove_files, [gone.file])
            log.info("voicemail_deleted", mailbox=mailbox, message_id=message_id)
            await self.recount(mailbox)

    async def save_greeting(self, mailbox: str, audio: bytes) -> None:
        name = f"{mailbox}/greeting-{uuid.uuid4().hex[:12]}.wav"
        old = await asyncio.to_thread(self.store.greeting, mailbox)
        await asyncio.to_thread(write_wav, self.directory / name, audio)
        await asyncio.to_thread(self.store.set_greeting, mailbox, name, datetime.now(UTC))
        if old is not None:
            await asyncio.to_thread(self._remove_files, [old])
        log.info("voicemail_greeting_recorded", mailbox=mailbox, seconds=round(len(audio) / 16000, 1))

    async def set_pin(self, mailbox: str, pin: str) -> None:
        await asyncio.to_thread(self.store.set_pin, mailbox, pin, datetime.now(UTC))
        log.info("voicemail_pin_changed", mailbox=mailbox)
