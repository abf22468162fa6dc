"""Receiving one RTP stream, pure: which packets to accept, whose address
to answer, and the statistics RTCP reports.

Rules it keeps:

- **Latching (symmetric RTP, RFC 4961).** Media goes back to where the
  phone's packets come from, which behind NAT is not the address in its
  SDP. The first valid packet of an expected payload type fixes that
  address. Another address takes over only when the latched one has been
  silent for ``relatch_silence`` seconds and the newcomer has sent
  ``relatch_packets`` valid packets in a row: a phone whose NAT binding
  changed is followed, while a stranger spraying packets at our port
  during a call (the "RTP bleed" attack) is not. ``allowed_hosts``, when
  given (e.g. the SIP peer's and the SDP's addresses), limits who may be
  latched at all.
- **SSRC.** The first SSRC is locked. A different SSRC replaces it after
  ``ssrc_switch_packets`` packets in sequence with no packet of the locked
  SSRC between them: a phone that restarts its stream (hold, re-INVITE,
  an internal transfer) is followed after a few packets, a stray packet
  now and then never wins.
- **Sequence numbers** as in RFC 3550 §A.1: extended to 32 bits across
  wraps; a jump of more than ``MAX_DROPOUT`` ahead or ``MAX_MISORDER``
  behind is a restart when the next packet confirms it. Duplicates are
  dropped (a window of the last 64 numbers); late packets within the
  window are accepted and counted as reordered.
- **Statistics** for RTCP report blocks: expected/lost (§A.3) and
  interarrival jitter (§A.8), the latter from audio packets only:
  telephone-event packets repeat the timestamp of the event's start.

Dropped packets are counted by reason in :attr:`RtpReceiver.drops`, not
reported one by one (a flood must not become a flood of events).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Final

from pbx.media.events import Address, MediaEvent, RemoteLatched, SsrcChanged
from pbx.media.rtcp import ReportBlock
from pbx.media.rtp import RtpError, RtpPacket, parse_rtp, sequence_delta

MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
SEQ_MOD: Final = 1 << 16
DUPLICATE_WINDOW: Final = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivePolicy:
    payload_types: frozenset[int]
    """Payload types the SDP negotiated (audio codec, telephone-event)."""
    audio_payload_type: int
    clock_rate: int = 8000
    ssrc_switch_packets: int = 3
    relatch_silence: float = 2.0
    relatch_packets: int = 3
    allowed_hosts: frozenset[str] | None = None
    """None: any source may be latched (the phone may be behind any NAT)."""
    not_from: Address | None = None
    """A source never latched: the phone another one replaced on this
    stream (a transfer), whose last packets must not take the place."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """An accepted packet."""

    packet: RtpPacket
    sequence: int
    """Extended sequence number (cycles << 16 | sequence), for ordering."""
    restarted: bool = False
    """The stream restarted (new SSRC or a sequence jump): ordering state
    kept downstream (a jitter buffer) must be reset."""


@dataclass(slots=True)
class _Sequence:
    """RFC 3550 §A.1 state for one SSRC."""

    base: int
    max_seq: int
    cycles: int = 0
    bad_seq: int = SEQ_MOD + 1      # never a real sequence number
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    recent: collections.deque[int] = field(default_factory=lambda: collections.deque(maxlen=DUPLICATE_WINDOW))

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq


class RtpReceiver:
    """Receive side of one media stream."""

    def __init__(self, policy: ReceivePolicy) -> None:
        self.policy = policy
        self.remote: Address | None = None
        self.ssrc: int | None = None
        self.drops: collections.Counter[str] = collections.Counter()
        self.reordered = 0
        self.events: list[MediaEvent] = []
        self._last_from_remote = 0.0
        self._latch_candidate: tuple[Address, int] | None = None   # (address, consecutive packets)
        self._ssrc_candidate: tuple[int, int, int] | None = None   # (ssrc, last sequence, packets)
        self._seq: _Sequence | None = None
        self._jitter = 0.0
        self._transit: int | None = None
        self._last_sr: tuple[int, float] | None = None            # (LSR, arrival)

    def drain_events(self) -> list[MediaEvent]:
        events, self.events = self.events, []
        return events

    # ------------------------------------------------------------ input

    def receive(self, data: bytes, source: Address, now: float) -> Received | None:
        """Accept or drop one datagram; None when dropped (see :attr:`drops`)."""
        try:
            packet = parse_rtp(data)
        except RtpError as err:
            self.drops[err.reason] += 1
            return None
        if packet.payload_type not in self.policy.payload_types:
            self.drops["unexpected_payload_type"] += 1
            return None
        if not self._source_ok(source, now):
            return None
        restarted = False
        if self.ssrc is None:
            self._lock(packet)
            restarted = True
        elif packet.ssrc != self.ssrc:
            if not self._ssrc_switches(packet, now):
                self.drops["other_ssrc"] += 1
                return None
            restarted = True
        else:
            self._ssrc_candidate = None
        assert self._seq is not None
        sequence = self._update_sequence(self._seq, packet.sequence)
        if sequence is None:
            return None
        if sequence < 0:   # §A.1 restart confirmed by two packets in sequence
            self._lock(packet)
            restarted = True
            sequence = self._update_sequence(self._seq, packet.sequence)
            assert sequence is not None and sequence >= 0
        if packet.payload_type == self.policy.audio_payload_type:
            self._update_jitter(packet.timestamp, now)
        return Received(packet=packet, sequence=sequence, restarted=restarted)

    def _source_ok(self, source: Address, now: float) -> bool:
        allowed = self.policy.allowed_hosts
        if allowed is not None and source[0] not in allowed:
            self.drops["source_not_allowed"] += 1
            return False
        if source == self.policy.not_from:
            self.drops["replaced_peer"] += 1
            return False
        if self.remote is None:
            self._latch(source, now)
            return True
        if source == self.remote:
            self._last_from_remote = now
            self._latch_candidate = None
            return True
        if now - self._last_from_remote < self.policy.relatch_silence:
            self.drops["wrong_source"] += 1
            return False
        previous = self._latch_candidate
        count = previous[1] + 1 if previous is not None and previous[0] == source else 1
        if count < self.policy.relatch_packets:
            self._latch_candidate = (source, count)
            self.drops["relatch_pending"] += 1
            return False
        self._latch(source, now)
        return True

    def _latch(self, source: Address, now: float) -> None:
        self.events.append(RemoteLatched(address=source, previous=self.remote, time=now))
        self.remote = source
        self._last_from_remote = now
        self._latch_candidate = None

    def _lock(self, packet: RtpPacket) -> None:
        self.ssrc = packet.ssrc
        self._seq = _Sequence(base=packet.sequence, max_seq=packet.sequence)
        self._transit = None
        self._jitter = 0.0
        self._ssrc_candidate = None

    def _ssrc_switches(self, packet: RtpPacket, now: float) -> bool:
        candidate = self._ssrc_candidate
        if candidate is not None and candidate[0] == packet.ssrc and sequence_delta(packet.sequence, candidate[1]) == 1:
            count = candidate[2] + 1
        else:
            count = 1
        if count < self.policy.ssrc_switch_packets:
            self._ssrc_candidate = (packet.ssrc, packet.sequence, count)
            return False
        old = self.ssrc
        assert old is not None
        self._lock(packet)
        self.events.append(SsrcChanged(old=old, new=packet.ssrc, time=now))
        return True

    def _update_sequence(self, state: _Sequence, sequence: int) -> int | None:
        """Extended sequence number, None to drop (duplicate, or a jump not
        yet confirmed), -1 when a confirmed jump restarts the stream."""
        if state.received == 0:   # §A.1 init_seq: the first packet sets the base
            state.received = 1
            state.recent.append(sequence)
            return sequence
        delta = (sequence - state.max_seq) % SEQ_MOD
        if 0 < delta < MAX_DROPOUT:
            if sequence < state.max_seq:
                state.cycles += SEQ_MOD
            state.max_seq = sequence
            extended = state.cycles + sequence
        elif delta == 0 or delta > SEQ_MOD - MAX_MISORDER:
            # A duplicate or a late packet: below the highest seen.
            back = delta - SEQ_MOD if delta else 0
            extended = state.extended_max + back
            if extended in state.recent:
                self.drops["duplicate"] += 1
                return None
            self.reordered += 1
        else:
            # A big jump: believe it when the next packet follows it.
            if sequence == state.bad_seq:
                return -1
            state.bad_seq = (sequence + 1) % SEQ_MOD
            self.drops["sequence_jump"] += 1
            return None
        state.received += 1
        state.recent.append(extended)
        return extended

    def _update_jitter(self, timestamp: int, now: float) -> None:
        # §A.8: J += (|D| - J) / 16, D the change in transit time.
        arrival = int(now * self.policy.clock_rate)
        transit = (arrival - timestamp) & 0xFFFFFFFF
        if self._transit is not None:
            d = abs(((transit - self._transit + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
            self._jitter += (d - self._jitter) / 16
        self._transit = transit

    # ------------------------------------------------------------ RTCP side

    def on_sender_report(self, ntp_middle: int, now: float) -> None:
        """Remember the peer's last SR for our report's LSR/DLSR."""
        self._last_sr = (ntp_middle, now)

    def report_block(self, now: float) -> ReportBlock | None:
        """A report block about the locked SSRC (§6.4.1, §A.3), or None
        before any packet; resets the 'since last report' counters."""
        state = self._seq
        if state is None or self.ssrc is None:
            return None
        expected = state.extended_max - state.base + 1
        lost = expected - state.received
        expected_interval = expected - state.expected_prior
        received_interval = state.received - state.received_prior
        state.expected_prior, state.received_prior = expected, state.received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        lsr, dlsr = 0, 0
        if self._last_sr is not None:
            lsr = self._last_sr[0]
            dlsr = int((now - self._last_sr[1]) * 65536)
        return ReportBlock(ssrc=self.ssrc, fraction_lost=min(fraction, 255),
                           cumulative_lost=max(-0x800000, min(lost, 0x7FFFFF)),
                           highest_sequence=state.extended_max & 0xFFFFFFFF, jitter=int(self._jitter),
                           last_sr=lsr, delay_since_last_sr=dlsr)

    @property
    def jitter_seconds(self) -> float:
        return self._jitter / self.policy.clock_rate
