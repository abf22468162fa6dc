"""One media stream, both directions, pure: what to send on each 20 ms
tick, what to make of each datagram received, when to report by RTCP.

:class:`MediaStream` joins the pieces (player, receiver, telephone-event
and in-band detectors, jitter buffer, RTCP statistics) and is driven by
the asyncio edge (:mod:`pbx.media.endpoint`) with the time, the datagrams
and a random source passed in. Tests drive two of them over an in-memory
wire with a hand-held clock.

Rules it keeps:
- while negotiated to send, a packet goes out on every tick: the playlist's
  audio, queued RFC 4733 key presses (they replace audio while they last),
  or silence once the playlist ended, which keeps a phone's NAT binding
  open and its jitter buffer fed. The RTP timestamp advances with the
  clock, packet or not (RFC 3550 §5.1), so a skipped tick shows as a gap;
- packets go to the latched address (symmetric RTP) once the phone has
  sent from one, before that to its SDP address; never to 0.0.0.0;
- in-band detection runs only when telephone-event was not agreed or the
  phone has not sent any: a phone that sends RFC 4733 often leaves the
  tones in the audio too, and a key must not count twice;
- RTCP: SR while we send, RR otherwise, at the §6.2 interval (first one
  after half of it), from the peer's RTCP address only;
- SRTP (when the SDP agreed keys, :mod:`pbx.media.sdes`): every packet out
  is protected, every packet in must pass authentication and the replay
  check before anything else looks at it (a packet that fails counts in
  ``srtp_rejected``). The context survives a re-INVITE that keeps the keys:
  a new one would restart the replay window and the rollover counter.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from dataclasses import dataclass

from pbx.media import rtcp
from pbx.media.codecs import FRAME_MS, FRAME_SAMPLES, Codec
from pbx.media.dtmf_info import parse_dtmf_info
from pbx.media.events import Address, Digit, MediaEvent, PlaybackFinished, RemoteLatched, SsrcChanged
from pbx.media.inband import InbandDetector
from pbx.media.jitter import JitterBuffer
from pbx.media.player import Player, PlaylistItem
from pbx.media.rtp import pack_header
from pbx.media.sdp import Negotiated
from pbx.media.srtp import SrtpContext, renewed
from pbx.media.stream import ReceivePolicy, RtpReceiver
from pbx.media.telephone_event import TelephoneEventReceiver, event_packets

MAX_RECORD_SECONDS = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSettings:
    inband: bool = True
    """Listen for in-band tones when RFC 4733 is not in use."""
    record_seconds: float = 0.0
    """Keep up to this much decoded received audio in :attr:`MediaStream.recorded` (0: none)."""
    jitter_depth: int = 3
    relatch_silence: float = 2.0
    send_silence: bool = True


def rtp_destination(negotiated: Negotiated | None, receiver: RtpReceiver | None) -> Address | None:
    """Where a stream's RTP goes: the latched address once the phone sent
    from one (symmetric RTP), else its SDP address; None when it is not
    to be sent to (not agreed, not sending, port 0 or a hold address)."""
    n = negotiated
    if n is None or not n.direction.sends:
        return None
    if receiver is not None and receiver.remote is not None:
        return receiver.remote
    if n.remote_port == 0 or n.remote_address in ("0.0.0.0", "::"):
        return None
    return (n.remote_address, n.remote_port)


class MediaStream:
    def __init__(self, *, rng: random.Random, now: float, cname: str,
                 settings: StreamSettings = StreamSettings()) -> None:
        self.settings = settings
        self.cname = cname
        self.ssrc = rng.getrandbits(32)
        self._rng = rng
        # RFC 3550 §5.1: random initial sequence number and timestamp.
        self._sequence = rng.getrandbits(16)
        self._timestamp = rng.getrandbits(32)
        self._marker = True
        self.negotiated: Negotiated | None = None
        self.srtp: SrtpContext | None = None
        self.receiver: RtpReceiver | None = None
        self._events_in = TelephoneEventReceiver()
        self._inband = InbandDetector()
        self._jitter = JitterBuffer(settings.jitter_depth)
        self._rfc4733_seen = False
        self._player: Player | None = None
        self._playback_id = 0
        # Ticks the clock skipped while the playlist played: the audio is not
        # skipped with them (no word of a prompt is lost), so it ends that
        # much later than its length.
        self._held_back = 0
        self._digits_out: collections.deque[tuple[bool, int, bytes]] = collections.deque()
        self._event_start = 0
        self._events: list[MediaEvent] = []
        self.recorded = bytearray()
        self.capture: collections.deque[bytes] | None = None
        """When set (:meth:`listen`), every decoded received frame goes here
        (a conference's mixer takes them); bounded, the oldest dropped."""
        self.listener: Callable[[bytes], None] | None = None
        """Given each 20 ms of received audio, decoded (a voicemail recording)."""
        self.packets_sent = 0
        self.octets_sent = 0
        self._sent_since_report = False
        self.rtcp_received = 0
        self.rtcp_dropped = 0
        self._next_report = now + rtcp.report_interval(rng.uniform(0.5, 1.5), initial=True)

    # ------------------------------------------------------------ set-up

    def set_negotiated(self, negotiated: Negotiated, *, allowed_hosts: frozenset[str] | None = None) -> None:
        """Apply an offer/answer result (first or after a re-INVITE)."""
        old = self.negotiated
        self.negotiated = negotiated
        self.srtp = renewed(self.srtp, old.srtp if old is not None else None, negotiated.srtp)
        policy = ReceivePolicy(payload_types=negotiated.payload_types, audio_payload_type=negotiated.payload_type,
                               relatch_silence=self.settings.relatch_silence, allowed_hosts=allowed_hosts)
        if self.receiver is None or old is None or (old.remote_address, old.remote_port) != (
                negotiated.remote_address, negotiated.remote_port):
            # A new peer address (a transfer, a re-INVITE towards another
            # phone): latch afresh.
            self.receiver = RtpReceiver(policy)
            self._events_in.reset()
            self._jitter.reset()
            self._inband.reset()
        else:
            self.receiver.policy = policy
        if self._player is not None and self._player.codec is not negotiated.codec:
            self._player.set_codec(negotiated.codec)

    @property
    def codec(self) -> Codec | None:
        return self.negotiated.codec if self.negotiated else None

    @property
    def destination(self) -> Address | None:
        """Where RTP goes now, or None (nothing to send to)."""
        return rtp_destination(self.negotiated, self.receiver)

    @property
    def rtcp_destination(self) -> Address | None:
        n = self.negotiated
        if n is None:
            return None
        if self.receiver is not None and self.receiver.remote is not None:
            # Symmetric RTCP: the phone's RTCP comes from beside its RTP.
            return (self.receiver.remote[0], self.receiver.remote[1] + 1)
        if n.remote_address in ("0.0.0.0", "::") or n.remote_port == 0:
            return None
        return (n.remote_address, n.remote_rtcp_port)

    # ------------------------------------------------------------ playing

    def play(self, items: list[PlaylistItem] | tuple[PlaylistItem, ...], now: float) -> int:
        """Start a playlist (stopping the one playing); returns its id, which
        the :class:`PlaybackFinished` event names."""
        self.stop_playback(now)
        self._playback_id += 1
        self._player = Player(items, self.codec or Codec.PCMU)
        self._held_back = 0
        return self._playback_id

    def stop_playback(self, now: float) -> None:
        if self._player is not None:
            self._player = None
            self._events.append(PlaybackFinished(playback_id=self._playback_id, completed=False, time=now,
                                                 held_back=self._held_back * FRAME_MS / 1000))

    @property
    def playing(self) -> bool:
        return self._player is not None

    def send_digit(self, digit: str, *, duration_ms: int = 100) -> bool:
        """Queue an RFC 4733 key press; False when telephone-event was not agreed."""
        if self.negotiated is None or self.negotiated.telephone_event is None:
            return False
        self._digits_out.extend(event_packets(digit, duration_ms=duration_ms))
        return True

    def on_tick(self, now: float, ticks: int = 1) -> bytes | None:
        """The packet to send for this 20 ms tick, or None. ``ticks`` > 1
        when the clock skipped ticks: the timestamp jumps to match."""
        self._timestamp = (self._timestamp + FRAME_SAMPLES * ticks) & 0xFFFFFFFF
        n = self.negotiated
        payload: bytes | None = None
        if self._player is not None:
            self._held_back += ticks - 1
            payload = self._player.next_payload()
            if payload is None:
                self._player = None
                self._events.append(PlaybackFinished(playback_id=self._playback_id, completed=True, time=now,
                                                     held_back=self._held_back * FRAME_MS / 1000))
        if n is None or not n.direction.sends:
            return None
        payload_type = n.payload_type
        timestamp = self._timestamp
        marker = False
        if self._digits_out and n.telephone_event is not None:
            start, offset, payload = self._digits_out.popleft()
            if start:
                self._event_start = self._timestamp
            payload_type, marker = n.telephone_event, start
            timestamp = (self._event_start + offset) & 0xFFFFFFFF
        elif payload is None:
            if not self.settings.send_silence:
                self._marker = True       # RFC 3551 §4.1: mark the first packet after a gap
                return None
            payload = bytes([n.codec.silence]) * FRAME_SAMPLES
        if self._marker:
            marker, self._marker = True, False
        self._sequence = (self._sequence + 1) & 0xFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        self._sent_since_report = True
        packet = pack_header(payload_type, self._sequence, timestamp, self.ssrc, marker) + payload
        return self.srtp.protect(packet) if self.srtp is not None else packet

    @property
    def srtp_rejected(self) -> int:
        """SRTP/SRTCP packets dropped: failed authentication or replay check."""
        return self.srtp.rejected if self.srtp is not None else 0

    # ------------------------------------------------------------ receiving

    def on_rtp(self, data: bytes, source: Address, now: float) -> None:
        receiver, n = self.receiver, self.negotiated
        if receiver is None or n is None or not n.direction.receives:
            return
        if self.srtp is not None:
            clear = self.srtp.unprotect(data)
            if clear is None:
                return  # forged, replayed or plain: never latched on, never heard
            data = clear
        received = receiver.receive(data, source, now)
        for event in receiver.drain_events():
            self._events.append(event)
            if isinstance(event, (SsrcChanged, RemoteLatched)):
                self._events_in.reset()
        if received is None:
            return
        if received.restarted:
            self._jitter.reset()
        packet = received.packet
        if packet.payload_type == n.telephone_event:
            self._rfc4733_seen = True
            digit = self._events_in.receive(packet, now)
            if digit is not None:
                self._events.append(digit)
            return
        if not (self._listens_inband or self.settings.record_seconds > 0 or self.capture is not None
                or self.listener is not None):
            return
        for frame in self._jitter.push(received.sequence, packet.payload):
            linear = n.codec.decode(frame if frame is not None else bytes([n.codec.silence]) * FRAME_SAMPLES)
            if self._listens_inband:
                self._events.extend(self._inband.feed(linear, now))
            self._record(linear)
            if self.listener is not None:
                self.listener(linear)
            if self.capture is not None:
                self.capture.append(linear)

    def listen(self, depth: int) -> collections.deque[bytes]:
        """Keep the last ``depth`` decoded received frames (20 ms of 16-bit
        linear each, after the jitter buffer, a lost packet as silence) in
        the deque returned; :meth:`unlisten` stops it. While listening, a
        phone that agreed telephone-event is not searched for in-band keys:
        in a conference that costs more than the rest of a member together,
        and other members' voices would be searched with theirs."""
        self.capture = collections.deque(maxlen=depth)
        return self.capture

    def unlisten(self) -> None:
        self.capture = None

    @property
    def _listens_inband(self) -> bool:
        if self.capture is not None and self.negotiated is not None and self.negotiated.telephone_event is not None:
            return False
        return self.settings.inband and not self._rfc4733_seen

    def _record(self, linear: bytes) -> None:
        limit = int(min(self.settings.record_seconds, MAX_RECORD_SECONDS) * 16000)
        if len(self.recorded) < limit:
            self.recorded += linear[:limit - len(self.recorded)]

    def on_info(self, content_type: str, body: bytes | str, now: float) -> Digit:
        """A key press from a SIP INFO the call layer received; raises
        :class:`pbx.media.dtmf_info.DtmfInfoError` (its ``status`` is the
        answer to the INFO)."""
        digit = parse_dtmf_info(content_type, body, now)
        self._events.append(digit)
        return digit

    def on_rtcp(self, data: bytes, source: Address, now: float) -> None:
        expected = self.rtcp_destination
        if expected is None or source[0] != expected[0]:
            self.rtcp_dropped += 1
            return
        if self.srtp is not None:
            clear = self.srtp.unprotect_rtcp(data)
            if clear is None:
                self.rtcp_dropped += 1
                return
            data = clear
        try:
            packets = rtcp.parse_rtcp(data)
        except rtcp.RtcpError:
            self.rtcp_dropped += 1
            return
        self.rtcp_received += 1
        for packet in packets:
            if isinstance(packet, rtcp.SenderReport) and self.receiver is not None \
                    and packet.ssrc == self.receiver.ssrc:
                self.receiver.on_sender_report(packet.ntp_middle, now)

    def rtcp_report(self, now: float, wallclock: float, *, bye: bool = False) -> bytes | None:
        """A compound RTCP packet when one is due (or ``bye``), else None."""
        if not bye and now < self._next_report:
            return None
        self._next_report = now + rtcp.report_interval(self._rng.uniform(0.5, 1.5))
        block = self.receiver.report_block(now) if self.receiver is not None else None
        blocks = (block,) if block is not None else ()
        report: rtcp.SenderReport | rtcp.ReceiverReport
        if self._sent_since_report:
            report = rtcp.SenderReport(ssrc=self.ssrc, ntp_timestamp=rtcp.ntp_from_unix(wallclock),
                                       rtp_timestamp=self._timestamp, packet_count=self.packets_sent,
                                       octet_count=self.octets_sent, reports=blocks)
        else:
            report = rtcp.ReceiverReport(ssrc=self.ssrc, reports=blocks)
        self._sent_since_report = False
        compound = rtcp.build_compound(report, self.cname, bye=bye)
        return self.srtp.protect_rtcp(compound) if self.srtp is not None else compound

    def drain_events(self) -> list[MediaEvent]:
        events, self._events = self._events, []
        return events
