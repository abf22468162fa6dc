"""Writing recordings off the event loop: one thread for every call's file.

The media tick hands over stereo audio in chunks (:meth:`RecordingWriter.write`,
a queue put, never a file call on the loop); the thread writes 8 kHz 16-bit
stereo WAV. A file is written as ``<name>.part`` and renamed when its call
ends, so a listing or a purge never sees a half-written recording, and a
crash leaves a ``.part`` whose audio is intact (only its header's lengths
are not): at the next start its header is mended and it is renamed into
place. The directory is purged to its retention and size budget at start,
after a file is finished (at most once a minute) and every hour when idle.
Recordings are private: the directory is made 0750, each file 0640.
"""

from __future__ import annotations

import queue
import struct
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

from pbx.media.codecs import SAMPLE_RATE, SAMPLE_WIDTH
from pbx.recording.files import PARTIAL, is_recording, purge

log = structlog.get_logger("pbx.recording")

PURGE_EVERY: Final = 60.0
IDLE_PURGE: Final = 3600.0
_WAV_HEADER: Final = 44
"""The header the wave module writes for PCM: RIFF size at 4, data size at 40."""


@dataclass(frozen=True, slots=True)
class _Open:
    name: str


@dataclass(frozen=True, slots=True)
class _Write:
    name: str
    audio: bytes


@dataclass(frozen=True, slots=True)
class _Close:
    name: str
    done: Callable[[str | None], None] | None


@dataclass(frozen=True, slots=True)
class _Configure:
    directory: Path
    retention_days: int
    max_bytes: int


_Work = _Open | _Write | _Close | _Configure | None


class RecordingWriter:
    def __init__(self, directory: Path, *, retention_days: int, max_bytes: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.retention_days = retention_days
        self.max_bytes = max_bytes
        self._clock = clock
        self._queue: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._files: dict[str, wave.Wave_write] = {}
        self._where: dict[str, Path] = {}
        self._frames: dict[str, int] = {}
        self._last_purge = 0.0
        self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ from the loop

    def configure(self, directory: Path, *, retention_days: int, max_bytes: int) -> None:
        """A reloaded dialplan: files opened from now on go to ``directory``."""
        self._queue.put(_Configure(directory, retention_days, max_bytes))

    def open(self, name: str) -> None:
        self._queue.put(_Open(name))

    def write(self, name: str, audio: bytes) -> None:
        if audio:
            self._queue.put(_Write(name, audio))

    def close(self, name: str, done: Callable[[str | None], None] | None = None) -> None:
        """Finish the file; ``done`` is called (from the writer thread) with
        its name, or None when nothing was recorded or it could not be written."""
        self._queue.put(_Close(name, done))

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued and end the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            self._recover()
            self._purge(force=True)
        except OSError as err:
            log.error("recording_directory_unusable", directory=str(self.directory), error=str(err))
        while True:
            try:
                work = self._queue.get(timeout=IDLE_PURGE)
            except queue.Empty:
                self._purge(force=True)
                continue
            if work is None:
                break
            try:
                self._do(work)
            except OSError as err:
                log.error("recording_write_failed", file=getattr(work, "name", None), error=str(err))
                self._drop(getattr(work, "name", ""))
                if isinstance(work, _Close) and work.done is not None:
                    work.done(None)
        for name in list(self._files):
            self._finish(name)

    def _do(self, work: _Open | _Write | _Close | _Configure) -> None:
        match work:
            case _Configure(directory, retention_days, max_bytes):
                self.directory, self.retention_days, self.max_bytes = directory, retention_days, max_bytes
            case _Open(name):
                self.directory.mkdir(mode=0o750, parents=True, exist_ok=True)
                path = self.directory / (name + PARTIAL)
                out = wave.open(str(path), "wb")
                path.chmod(0o640)
                out.setnchannels(2)
                out.setsampwidth(SAMPLE_WIDTH)
                out.setframerate(SAMPLE_RATE)
                self._files[name], self._frames[name], self._where[name] = out, 0, self.directory
            case _Write(name, audio):
                file = self._files.get(name)
                if file is not None:
                    file.writeframesraw(audio)
                    self._frames[name] += len(audio) // (2 * SAMPLE_WIDTH)
            case _Close(name, done):
                result = self._finish(name)
                if done is not None:
                    done(result)
                self._purge()

    def _purge(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = now
        try:
            gone = purge(self.directory, now=now, retention_days=self.retention_days, max_bytes=self.max_bytes)
        except OSError as err:
            log.error("recording_purge_failed", directory=str(self.directory), error=str(err))
            return
        for stored in gone:
            log.info("recording_purged", file=stored.name, size=stored.size)

    def _recover(self) -> None:
        """Files a crash left half-written: header lengths mended from the
        file's size, renamed into place."""
        if not self.directory.is_dir():
            return
        for partial in self.directory.glob("*" + PARTIAL):
            name = partial.name.removesuffix(PARTIAL)
            if not is_recording(name):
                continue
            size = partial.stat().st_size
            with partial.open("r+b") as file:
                header = file.read(_WAV_HEADER)
                if len(header) < _WAV_HEADER or header[:4] != b"RIFF" or header[36:40] != b"data":
                    log.warning("recording_unrecoverable", file=partial.name)
                    continue
                data = (size - _WAV_HEADER) // (2 * SAMPLE_WIDTH) * (2 * SAMPLE_WIDTH)
                file.seek(4)
                file.write(struct.pack("<I", _WAV_HEADER - 8 + data))
                file.seek(40)
                file.write(struct.pack("<I", data))
            partial.rename(self.directory / name)
            log.info("recording_recovered", file=name, seconds=round(data / (2 * SAMPLE_WIDTH) / SAMPLE_RATE, 1))

    def _finish(self, name: str) -> str | None:
        file = self._files.pop(name, None)
        frames = self._frames.pop(name, 0)
        directory = self._where.pop(name, self.directory)
        if file is None:
            return None
        file.close()
        partial = directory / (name + PARTIAL)
        if frames == 0:
            partial.unlink(missing_ok=True)
            return None
        partial.rename(directory / name)
        log.info("recording_saved", file=name, seconds=round(frames / SAMPLE_RATE, 1))
        return name

    def _drop(self, name: str) -> None:
        file = self._files.pop(name, None)
        self._frames.pop(name, None)
        self._where.pop(name, None)
        if file is not None:
            try:
                file.close()
            except OSError:
                pass
