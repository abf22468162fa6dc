"""Facts the media layer reports to whoever owns a media session (the call
coordinator). Frozen dataclasses, as everywhere in the house (STYLE §2)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

Address = tuple[str, int]


class DigitSource(enum.Enum):
    """How a phone sent a key press."""

    RFC4733 = "rfc4733"   # telephone-event RTP packets
    INFO = "info"         # a SIP INFO body (application/dtmf-relay, application/dtmf)
    INBAND = "inband"     # tones in the audio, found by the Goertzel detector


DIGITS = "0123456789*#ABCD"
"""The sixteen DTMF keys, in RFC 4733 event-code order (0-9, 10 = *, 11 = #,
12-15 = A-D)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Digit:
    """One key press, whichever way it came. Each press is reported once."""

    digit: str
    """One of :data:`DIGITS`."""
    source: DigitSource
    time: float
    """When it was recognised, on the clock the caller passed in."""
    duration: float | None = None
    """Seconds the key was held, when the source says (INFO's Duration=);
    None when the digit is reported at its start (RFC 4733, in-band)."""

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in DIGITS:
            raise ValueError(f"not a DTMF digit: {self.digit!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackFinished:
    """A playlist given to ``play`` has been sent to its last frame (or was
    stopped: ``completed`` False). ``held_back``: seconds by which it ran
    late because the media clock skipped ticks (a stalled server); the
    caller heard that much silence somewhere inside it."""

    playback_id: int
    completed: bool
    time: float
    held_back: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteLatched:
    """Symmetric RTP: media now goes to where the phone's packets come from
    (RFC 4961), not only to what its SDP said; e.g. a phone behind NAT."""

    address: Address
    previous: Address | None
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SsrcChanged:
    """The phone's stream changed its SSRC (a re-INVITE, a transfer inside
    the phone) and the receiver now follows the new one."""

    old: int
    new: int
    time: float


MediaEvent = Digit | PlaybackFinished | RemoteLatched | SsrcChanged
