"""Relaying RTP between the two legs of an anchored call, pure.

A call the PBX must record (or whose legs cannot talk directly: one SRTP,
the other plain RTP) runs its media through two of the PBX's ports, one
per leg. :class:`MediaRelay` decides what becomes of each datagram; the
asyncio edge (:mod:`pbx.media.anchor`) owns the sockets.

Rules it keeps:
- **Forward at once.** A packet is sent on the moment it arrives, so the
  sender's pacing is the pacing the other phone sees; nothing is queued.
- **Each leg is a stream of its own.** Packets go out on a leg with that
  leg's SSRC, sequence numbers and timestamps: the sequence counts what we
  sent; the timestamp is the sender's plus an offset fixed when the sender's
  stream (re)starts (a new SSRC, a sequence jump, our announcement in
  between), chosen so the timestamp moves on with the time that passed.
  A phone that re-INVITEs or is replaced never shows the other side a jump.
- **Payload types are the receiving leg's.** The codec is agreed per leg;
  the call layer offers the B leg the codec A's answer chose, so a payload
  normally passes untouched. If they differ anyway (PCMU and PCMA) the
  payload is converted with ``audioop``, one C call per packet.
- **RFC 4733 events pass through** with the receiving leg's payload type
  (dropped when that leg did not agree telephone-event); they are also
  read here, as keys for on-demand recording (:attr:`MediaRelay.digits`).
- **Latching and SRTP per leg**, as for the PBX's own streams
  (:class:`pbx.media.stream.RtpReceiver`, :class:`pbx.media.srtp.SrtpContext`):
  a leg's packets must pass SRTP authentication and the latching rules
  before anything is forwarded; what goes out is protected with the
  receiving leg's keys, when it has any.
- **Announcements** ("this call is recorded") replace forwarded audio on a
  leg while they last: the 20 ms tick sends them; forwarded packets are
  dropped on that leg meanwhile.

Decoded audio for the recording is handed out per packet
(:attr:`MediaRelay.heard`, one ``audioop`` call each); never a loop over
samples in Python.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import Final

from pbx.media.codecs import FRAME_SAMPLES, Codec
from pbx.media.events import Address, Digit
from pbx.media.player import Player, PlaylistItem
from pbx.media.rtp import pack_header
from pbx.media.sdp import Negotiated
from pbx.media.session import rtp_destination
from pbx.media.srtp import SrtpContext, renewed
from pbx.media.stream import ReceivePolicy, RtpReceiver
from pbx.media.telephone_event import TelephoneEventReceiver

CLOCK_RATE: Final = 8000


class Leg(enum.IntEnum):
    """The caller's leg (A) and the callee's (B)."""

    A = 0
    B = 1

    @property
    def other(self) -> Leg:
        return Leg.B if self is Leg.A else Leg.A


@dataclass(slots=True)
class _Outgoing:
    """What we send on one leg: our SSRC, sequence and timestamp space."""

    ssrc: int
    sequence: int
    last_timestamp: int
    last_sent: float | None = None
    offset: int | None = None
    """Added to the sender's timestamps; None: fix it at the next packet."""
    marker: bool = True


@dataclass(slots=True)
class RelayLeg:
    """One leg of the relay: what was agreed with its phone, and its state."""

    outgoing: _Outgoing
    negotiated: Negotiated | None = None
    srtp: SrtpContext | None = None
    receiver: RtpReceiver | None = None
    events: TelephoneEventReceiver = field(default_factory=TelephoneEventReceiver)
    player: Player | None = None
    forwarded: int = 0
    dropped: int = 0

    def destination(self) -> Address | None:
        return rtp_destination(self.negotiated, self.receiver)


@dataclass(frozen=True, slots=True)
class Heard:
    """20 ms (or what a packet held) of one leg's audio, decoded: 16-bit
    linear mono at 8 kHz, for the recording."""

    leg: Leg
    linear: bytes


class MediaRelay:
    """Both legs of one anchored call."""

    def __init__(self, *, rng: random.Random) -> None:
        self.legs = tuple(RelayLeg(_Outgoing(ssrc=rng.getrandbits(32), sequence=rng.getrandbits(16),
                                             last_timestamp=rng.getrandbits(32))) for _ in Leg)
        self.decode = False
        """Hand out decoded audio (:attr:`heard`): only while recording."""
        self.heard: list[Heard] = []
        self.digits: list[tuple[Leg, Digit]] = []

    def leg(self, leg: Leg) -> RelayLeg:
        return self.legs[leg]

    # ------------------------------------------------------------ set-up

    def set_negotiated(self, leg: Leg, negotiated: Negotiated, *, new_peer: bool = False) -> None:
        """Apply an offer/answer result on one leg (first or a re-INVITE);
        ``new_peer``: another phone takes the leg (a transfer, a pickup):
        latched afresh, and never the old phone's address, whose last
        packets may still arrive."""
        state = self.legs[leg]
        old = state.negotiated
        state.negotiated = negotiated
        state.srtp = renewed(state.srtp, old.srtp if old is not None else None, negotiated.srtp)
        replaced = state.receiver.remote if new_peer and state.receiver is not None else None
        policy = ReceivePolicy(payload_types=negotiated.payload_types, audio_payload_type=negotiated.payload_type,
                               not_from=replaced)
        if new_peer or state.receiver is None or old is None or (old.remote_address, old.remote_port) != (
                negotiated.remote_address, negotiated.remote_port):
            state.receiver = RtpReceiver(policy)   # a new peer: latch afresh
            state.events.reset()
        else:
            state.receiver.policy = policy
        # What we send on the other leg restarts its timestamp offset.
        self.legs[leg.other].outgoing.offset = None

    def play(self, leg: Leg, items: tuple[PlaylistItem, ...]) -> None:
        """Send this playlist on ``leg`` instead of the other side's audio."""
        state = self.legs[leg]
        codec = state.negotiated.codec if state.negotiated is not None else Codec.PCMU
        state.player = Player(items, codec)

    def stop(self, leg: Leg) -> None:
        """Stop what plays on ``leg``: the other side's audio goes on."""
        state = self.legs[leg]
        if state.player is not None:
            state.player = None
            state.outgoing.offset = None

    @property
    def playing(self) -> bool:
        return any(state.player is not None for state in self.legs)

    # ------------------------------------------------------------ packets

    def on_rtp(self, leg: Leg, data: bytes, source: Address, now: float) -> tuple[bytes, Address] | None:
        """A datagram from ``leg``'s phone: the packet to send on the other
        leg and where to, or None (dropped, or nowhere to send)."""
        state, target = self.legs[leg], self.legs[leg.other]
        n, receiver = state.negotiated, state.receiver
        if n is None or receiver is None or not n.direction.receives:
            state.dropped += 1
            return None
        if state.srtp is not None:
            clear = state.srtp.unprotect(data)
            if clear is None:
                state.dropped += 1
                return None    # forged, replayed or plain: never latched, never passed on
            data = clear
        received = receiver.receive(data, source, now)
        receiver.drain_events()
        if received is None:
            state.dropped += 1
            return None
        packet = received.packet
        if received.restarted:
            target.outgoing.offset = None
            state.events.reset()
        event = packet.payload_type == n.telephone_event
        payload = packet.payload
        if event:
            digit = state.events.receive(packet, now)
            if digit is not None:
                self.digits.append((leg, digit))
        elif self.decode and payload:
            self.heard.append(Heard(leg, n.codec.decode(payload)))
        tn = target.negotiated
        if tn is None or target.player is not None:
            return None
        destination = target.destination()
        if destination is None:
            return None
        if event:
            if tn.telephone_event is None:
                return None
            payload_type = tn.telephone_event
        else:
            payload_type = tn.payload_type
            if tn.codec is not n.codec:
                payload = tn.codec.encode(n.codec.decode(payload))
        out = target.outgoing
        timestamp = self._timestamp(out, packet.timestamp, now)
        out.sequence = (out.sequence + 1) & 0xFFFF
        marker = packet.marker or out.marker
        out.marker = False
        out.last_sent = now
        target.forwarded += 1
        datagram = pack_header(payload_type, out.sequence, timestamp, out.ssrc, marker) + payload
        if target.srtp is not None:
            datagram = target.srtp.protect(datagram)
        return datagram, destination

    @staticmethod
    def _timestamp(out: _Outgoing, incoming: int, now: float) -> int:
        if out.offset is None:
            # RFC 3550 §5.1: the timestamp moves on with real time across
            # the restart (at least one frame, so it never repeats).
            elapsed = FRAME_SAMPLES if out.last_sent is None else \
                max(FRAME_SAMPLES, round((now - out.last_sent) * CLOCK_RATE))
            out.offset = (out.last_timestamp + elapsed - incoming) & 0xFFFFFFFF
        out.last_timestamp = (incoming + out.offset) & 0xFFFFFFFF
        return out.last_timestamp

    def on_tick(self, now: float) -> list[tuple[Leg, bytes, Address]]:
        """Announcement packets due on this 20 ms tick."""
        sent: list[tuple[Leg, bytes, Address]] = []
        for leg in Leg:
            state = self.legs[leg]
            if state.player is None:
                continue
            payload = state.player.next_payload()
            n = state.negotiated
            if payload is None or n is None:
                state.player = None
                state.outgoing.offset = None    # forwarding goes on from here
                continue
            destination = state.destination()
            if destination is None:
                continue
            out = state.outgoing
            if out.last_sent is not None:
                out.last_timestamp = (out.last_timestamp +
                                      max(FRAME_SAMPLES, round((now - out.last_sent) * CLOCK_RATE))) & 0xFFFFFFFF
            out.sequence = (out.sequence + 1) & 0xFFFF
            out.last_sent = now
            datagram = pack_header(n.payload_type, out.sequence, out.last_timestamp, out.ssrc, out.marker) + payload
            out.marker = False
            if state.srtp is not None:
                datagram = state.srtp.protect(datagram)
            sent.append((leg, datagram, destination))
        return sent

    def drain(self) -> tuple[list[Heard], list[tuple[Leg, Digit]]]:
        heard, digits = self.heard, self.digits
        self.heard, self.digits = [], []
        return heard, digits

