"""Leaving a message, as pure state machines.

:class:`MessageRecording` takes the caller's audio (8 kHz 16-bit linear, as
the media stream decodes it) and says when the message ends:

- ``#`` ends it (the key's own tone, if it came in-band, is cut off);
- at ``max_seconds`` it ends by itself;
- ``silence_seconds`` without voice end it (the silence is cut off, but
  for a short tail). Voice is told from silence by the energy of each
  20 ms frame, computed with numpy over whole packets (never sample by
  sample): above :data:`VOICE_RMS` is voice;
- the caller hanging up ends it too: what was said so far is the message.

:class:`Deposit` is the caller's side around it: the greeting plays (keys
are ignored, so a caller cannot stumble into anything), then the beep,
then the recording, then a goodbye. It is fed key presses, the end of what
plays and its deadline (the :mod:`pbx.ivr.menu` events), and audio, and
answers with actions the glue (:mod:`pbx.voicemail.session`) carries out.
Nothing here reads a clock or touches a file.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from pbx.ivr.menu import Timeout
from pbx.media.events import Digit, PlaybackFinished

SAMPLE_RATE: Final = 8000
FRAME: Final = 160
"""Samples in 20 ms, the unit voice is detected in."""
VOICE_RMS: Final = 300.0
"""RMS (of 32768) above which a frame counts as voice: about -40 dBFS,
well above a quiet line's hiss and below soft speech (around -30 dBFS)."""
HASH_TAIL: Final = 0.25
"""Seconds cut from the end of a message ended by ``#`` (its in-band tone)."""
SILENCE_KEPT: Final = 0.5
"""Seconds of the final silence kept, so the message does not end abruptly."""
MIN_VOICED: Final = 0.5
"""A message with less voice than this is no message (a silent hang-up)."""

StopReason = Literal["hash", "max_length", "silence", "hangup"]


class MessageRecording:
    """One message being recorded."""

    def __init__(self, *, max_seconds: float, silence_seconds: float, voice_rms: float = VOICE_RMS) -> None:
        if max_seconds <= 0 or silence_seconds <= 0:
            raise ValueError("a recording needs a positive length and silence limit")
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self.silence_samples = int(silence_seconds * SAMPLE_RATE)
        self.voice_rms = voice_rms
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._pending = np.zeros(0, dtype=np.int16)
        """Samples not yet a whole frame, carried to the next packet."""
        self._silent_run = 0
        self._voiced = 0
        self.stopped: StopReason | None = None

    @property
    def seconds(self) -> float:
        """Length of the message as :meth:`audio` gives it."""
        return len(self.audio()) / (2 * SAMPLE_RATE)

    @property
    def voiced(self) -> bool:
        """Enough voice in it to keep it."""
        return self._voiced >= MIN_VOICED * SAMPLE_RATE

    def feed(self, linear: bytes) -> StopReason | None:
        """Audio heard; the reason the message ends, the first time it does."""
        if self.stopped is not None:
            return None
        samples = np.frombuffer(linear[: len(linear) // 2 * 2], dtype="<i2")
        samples = samples[: self.max_samples - self._samples]
        self._chunks.append(samples)
        self._samples += len(samples)
        pending = np.concatenate((self._pending, samples))
        whole = len(pending) // FRAME * FRAME
        self._pending = pending[whole:]
        if whole:
            frames = pending[:whole].astype(np.float64).reshape(-1, FRAME)
            loud = np.sqrt(np.mean(frames * frames, axis=1)) > self.voice_rms
            count = int(np.count_nonzero(loud))
            self._voiced += count * FRAME
            if count:
                last = int(np.flatnonzero(loud)[-1])
                self._silent_run = (len(loud) - 1 - last) * FRAME
            else:
                self._silent_run += whole
        if self._samples >= self.max_samples:
            return self._stop("max_length")
        if self._silent_run >= self.silence_samples:
            return self._stop("silence")
        return None

    def key(self, digit: str) -> StopReason | None:
        return self._stop("hash") if digit == "#" and self.stopped is None else None

    def stop(self, reason: StopReason) -> StopReason | None:
        """End it from outside (the caller hung up, the deadline passed)."""
        return self._stop(reason) if self.stopped is None else None

    def _stop(self, reason: StopReason) -> StopReason:
        self.stopped = reason
        return reason

    def audio(self) -> bytes:
        """The message: 16-bit little-endian linear at 8 kHz, trimmed."""
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        cut = 0
        if self.stopped == "hash":
            cut = int(HASH_TAIL * SAMPLE_RATE)
        elif self.stopped in ("silence", "hangup"):
            cut = max(0, self._silent_run - int(SILENCE_KEPT * SAMPLE_RATE))
        if cut:
            samples = samples[: max(0, len(samples) - cut)]
        return samples.astype("<i2").tobytes()


def beep(seconds: float = 0.4, frequency: float = 1000.0) -> bytes:
    """The tone before the recording: linear 8 kHz, at about -10 dBFS."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (np.sin(2 * np.pi * frequency * t) * 10000).astype("<i2").tobytes()


# ---------------------------------------------------------------- the caller's side


@dataclass(frozen=True, slots=True)
class PlayGreeting:
    """Play the greeting, then the beep (one playlist)."""


@dataclass(frozen=True, slots=True)
class StartRecording:
    """Hand the caller's audio to :meth:`Deposit.heard` from now on."""


@dataclass(frozen=True, slots=True)
class MessageEnded:
    """The message is complete: keep it (if voiced), then say goodbye."""

    reason: StopReason


@dataclass(frozen=True, slots=True)
class SayGoodbye:
    pass


@dataclass(frozen=True, slots=True)
class HangUp:
    reason: str


DepositAction = PlayGreeting | StartRecording | MessageEnded | SayGoodbye | HangUp
DepositEvent = Digit | PlaybackFinished | Timeout


class Phase(enum.Enum):
    GREETING = "greeting"
    RECORDING = "recording"
    GOODBYE = "goodbye"
    DONE = "done"


class Deposit:
    """A caller leaving a message in one mailbox."""

    def __init__(self, *, max_seconds: float, silence_seconds: float) -> None:
        self.recording = MessageRecording(max_seconds=max_seconds, silence_seconds=silence_seconds)
        self._max_seconds = max_seconds
        self.phase = Phase.GREETING
        self._deadline: float | None = None

    def deadline(self) -> float | None:
        """When to send :class:`Timeout`: the longest message, and a second
        more (audio that stops arriving must not hold the call open)."""
        return self._deadline

    def start(self, now: float) -> list[DepositAction]:
        return [PlayGreeting()]

    def handle(self, event: DepositEvent, now: float) -> list[DepositAction]:
        match self.phase:
            case Phase.GREETING if isinstance(event, PlaybackFinished):
                self.phase = Phase.RECORDING
                self._deadline = now + self._max_seconds + 1.0
                return [StartRecording()]
            case Phase.RECORDING if isinstance(event, Digit):
                return self._ended(self.recording.key(event.digit))
            case Phase.RECORDING if isinstance(event, Timeout):
                return self._ended(self.recording.stop("max_length"))
            case Phase.GOODBYE if isinstance(event, PlaybackFinished):
                self.phase = Phase.DONE
                return [HangUp(f"voicemail_{self.recording.stopped}")]
        return []

    def heard(self, linear: bytes) -> list[DepositAction]:
        if self.phase is not Phase.RECORDING:
            return []
        return self._ended(self.recording.feed(linear))

    def hangup(self) -> list[DepositAction]:
        """The caller hung up: what was recorded is the message (if any)."""
        if self.phase is Phase.RECORDING:
            self.phase = Phase.DONE
            return [MessageEnded(self.recording.stop("hangup") or "hangup")]
        self.phase = Phase.DONE
        return []

    def _ended(self, reason: StopReason | None) -> list[DepositAction]:
        if reason is None:
            return []
        self.phase, self._deadline = Phase.GOODBYE, None
        return [MessageEnded(reason), SayGoodbye()]
