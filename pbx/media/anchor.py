"""The asyncio edge of media anchoring: a relay's sockets, its tick, its
recording.

A :class:`MediaAnchor` binds two RTP/RTCP port pairs of the engine's range,
one per leg, and describes each leg's side in SDP (its own o= line per
dialog); the pure :class:`pbx.media.relay.MediaRelay` decides what each
datagram becomes, and what arrives is sent on at once. The engine's 20 ms
tick (shared with every other stream) drives what is paced: the
announcement, music on hold (a phone that holds the other side), and the
recording, one stereo frame per tick
(:class:`pbx.recording.track.StereoTrack`), handed to the writer thread
half a second at a time. RTCP is received and dropped: each phone's
reports describe its leg only, and nothing here acts on them.

``close()`` stops all of it, closes the four sockets and gives both pairs
back to the range once asyncio has closed them.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from dataclasses import replace
from collections.abc import Callable, Coroutine
from typing import Any, Final

import structlog

from pbx.ivr.prompts import PromptLibrary, PromptNotFound
from pbx.media.audio_file import Audio, AudioFileError
from pbx.media.codecs import Codec
from pbx.media.endpoint import MediaEngine, _Receiver
from pbx.media.events import Address
from pbx.media.player import Loop, Prompt, Silence
from pbx.media.relay import Leg, MediaRelay
from pbx.media.sdes import MATERIAL_BYTES, PREFERENCE, MediaEncryption
from pbx.media.sdp import Direction, LocalMedia, SdpError, SdpSession, SessionDescription, accept_answer, parse_sdp
from pbx.recording.files import file_name
from pbx.recording.policy import ANNOUNCEMENT, CallRecording, RecordingMode, Toggle
from pbx.recording.track import StereoTrack
from pbx.recording.writer import RecordingWriter

log = structlog.get_logger("pbx.media")

CHUNK_FRAMES: Final = 25
"""Stereo frames handed to the writer at once (0.5 s)."""


class MediaAnchor:
    """One anchored call's media: leg A (the caller's) and leg B (the callee's)."""

    def __init__(self, engine: MediaEngine, *, call_uuid: str, recording: CallRecording,
                 writer: RecordingWriter | None, prompts: PromptLibrary | None, language: str = "en") -> None:
        self.engine = engine
        self.call_uuid = call_uuid
        self.recording = recording
        self._writer = writer
        self._prompts = prompts
        self._language = language
        self._loop = asyncio.get_running_loop()
        self.relay = MediaRelay(rng=engine.rng)
        self._toggle = Toggle(recording.togglers)
        self.ports: list[int] = []
        self._transports: list[asyncio.DatagramTransport] = []
        self._open_sockets = 0
        self._sdp = tuple(SdpSession(address=engine.advertise, session_id=engine.rng.getrandbits(62)) for _ in Leg)
        self._offers: dict[MediaEncryption, tuple[SessionDescription, LocalMedia]] = {}
        self._b_codec: Codec | None = None
        self.a_answer: bytes | None = None
        """Our answer to the caller's offer (every 18x/2xx to the caller carries it)."""
        self.recorded: str | None = None
        """The file name, once recording started."""
        self.recording_now = False
        self._track = StereoTrack()
        self._chunk = bytearray()
        self._chunk_frames = 0
        self._frames_written = 0
        self._started = False
        self.closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        """Socket adoption, prompt and music loading: kept (a task nobody
        references may be collected mid-way), cancelled on close."""
        self._rtp: dict[Leg, asyncio.DatagramTransport] = {}
        self._holding: set[Leg] = set()
        pairs: list[tuple[int, socket.socket, socket.socket]] = []
        try:
            for _ in Leg:
                pairs.append(engine.bind_pair_now())
        except BaseException:
            for port, *sockets in pairs:      # PortsExhausted: give the first pair back
                for sock in sockets:
                    sock.close()
                engine.ports.release(port)
            raise
        for leg, (port, rtp, rtcp) in zip(Leg, pairs):
            self.ports.append(port)
            self._open_sockets += 2
            self._spawn(self._adopt(leg, rtp, rtcp), name=f"adopt-{port}")
        self.rtp_port = self.ports[0]
        engine.join(self)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str = "anchor") -> None:
        task = self._loop.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _adopt(self, leg: Leg, rtp: socket.socket, rtcp: socket.socket) -> None:
        """Hand the bound sockets to asyncio (a moment after they were bound,
        so the SDP could name their ports at once)."""

        def receiving(sock: socket.socket) -> Callable[[], _Receiver]:
            if sock is rtp:
                return lambda: _Receiver(lambda data, source: self._on_rtp(leg, data, source), self._socket_closed)
            return lambda: _Receiver(lambda data, source: None, self._socket_closed)

        for sock in (rtp, rtcp):
            try:
                transport, _ = await self._loop.create_datagram_endpoint(receiving(sock), sock=sock)
            except OSError as err:
                log.error("media_socket_failed", port=sock.getsockname()[1], error=str(err))
                sock.close()
                self._socket_closed()
                continue
            if self.closed:
                transport.close()
                continue
            self._transports.append(transport)
            if sock is rtp:
                self._rtp[leg] = transport

    # ------------------------------------------------------------ SDP

    def _local(self, leg: Leg, encryption: MediaEncryption, codecs: tuple[Codec, ...] | None = None,
               direction: Direction = Direction.SENDRECV) -> LocalMedia:
        material = secrets.token_bytes(MATERIAL_BYTES * len(PREFERENCE)) if encryption != "none" else b""
        local = LocalMedia(address=self.engine.advertise, port=self.ports[leg], encryption=encryption,
                           key_material=material, direction=direction)
        return local if codecs is None else replace(local, codecs=codecs)

    def answer_a(self, offer: bytes, encryption: MediaEncryption) -> bytes:
        """Our answer to the caller's offer: it fixes the codec the B leg is
        offered. :class:`SdpError` when the offer cannot be anchored."""
        description, negotiated = self._sdp[Leg.A].answer(offer, self._local(Leg.A, encryption))
        self.relay.set_negotiated(Leg.A, negotiated)
        self._b_codec = negotiated.codec
        self.a_answer = description.serialise().encode()
        return self.a_answer

    def offer_b(self, encryption: MediaEncryption) -> bytes:
        """Our offer to the callee's legs (one per kind of encryption: every
        leg of a fork with the same signalling gets the same offer)."""
        pending = self._offers.get(encryption)
        if pending is None:
            local = self._local(Leg.B, encryption, (self._b_codec,) if self._b_codec is not None else None)
            pending = self._offers[encryption] = (self._sdp[Leg.B].offer(local), local)
        return pending[0].serialise().encode()

    def accept_b(self, answer: bytes) -> None:
        """A callee's answer to :meth:`offer_b` (a 2xx, or an 18x's early
        media); :class:`SdpError` when it fits none of our offers."""
        theirs = parse_sdp(answer)
        error: SdpError | None = None
        for description, local in sorted(self._offers.values(), key=lambda o: o[1].encryption == "none"):
            try:
                negotiated = accept_answer(description, theirs, local)
            except SdpError as err:
                error = err
                continue
            self.relay.set_negotiated(Leg.B, negotiated)
            return
        raise error or SdpError("an answer without an offer")

    def answer_leg(self, leg: Leg, offer: bytes, encryption: MediaEncryption, *, new_party: bool = False) -> bytes:
        """A re-INVITE's (or UPDATE's) offer from one leg's phone, answered
        by us: that leg changes (hold, a new address), the other goes on.
        ``new_party``: the offer is another phone's, taking the leg over (a
        transfer target, a picker)."""
        negotiated_before = self.relay.leg(leg).negotiated
        codecs = (negotiated_before.codec,) if negotiated_before is not None else None
        description, negotiated = self._sdp[leg].answer(offer, self._local(leg, encryption, codecs))
        self.relay.set_negotiated(leg, negotiated, new_peer=new_party)
        return description.serialise().encode()

    def offer_leg(self, leg: Leg, encryption: MediaEncryption) -> bytes:
        """An offer for a re-INVITE without one (the phone answers in its ACK)."""
        local = self._local(leg, encryption)
        description = self._sdp[leg].offer(local)
        self._offers[encryption] = (description, local)
        return description.serialise().encode()

    # ------------------------------------------------------------ the call

    def start(self) -> None:
        """The call is answered: relay, and record when the call is ``always``."""
        if self._started:
            return
        self._started = True
        if self.recording.mode is RecordingMode.ALWAYS:
            self._record(True)

    def key(self, leg: Leg, digit: str, at: float) -> None:
        """A key from ``leg``'s phone (RFC 4733 on the relayed stream, or a
        SIP INFO the call layer saw): ``*1`` toggles on-demand recording."""
        if self._started and self.recording.mode is RecordingMode.ON_DEMAND and self._toggle.key(int(leg), digit, at):
            self._record(not self.recording_now)

    def _record(self, on: bool) -> None:
        if on == self.recording_now or self._writer is None:
            return
        self.recording_now = self.relay.decode = on
        if on:
            if self.recorded is None:
                self.recorded = file_name(self.call_uuid)
                self._writer.open(self.recorded)
            if self.recording.announce:
                self._announce()
        log.info("recording_started" if on else "recording_paused", uuid=self.call_uuid, file=self.recorded)

    def _announce(self) -> None:
        prompts = self._prompts
        if prompts is None:
            return
        language = self._language

        def load() -> Audio | None:
            try:
                return prompts.load(language, ANNOUNCEMENT)
            except (PromptNotFound, AudioFileError) as err:
                log.warning("recording_announcement_missing", error=str(err))
                return None

        async def play() -> None:
            audio = await asyncio.to_thread(load)
            if audio is not None and not self.closed:
                for leg in Leg:
                    self.relay.play(leg, (Silence(0.2), Prompt(audio), Silence(0.2)))

        self._spawn(play())

    def hold(self, leg: Leg, holding: bool, music: str | None) -> bool:
        """``leg``'s phone put the other on hold (or resumed): the other
        leg hears ``music`` (None: the shipped tune) meanwhile. True when
        that changed anything (not a session refresh of the same state)."""
        if holding == (leg in self._holding):
            return False
        other = leg.other
        if not holding:
            self._holding.discard(leg)
            self.relay.stop(other)
            return True
        self._holding.add(leg)
        prompts = self._prompts
        if prompts is None:
            return True

        async def play() -> None:
            tune = await asyncio.to_thread(prompts.music, music)
            if tune is not None and leg in self._holding and not self.closed:
                self.relay.play(other, (Loop(tune),))

        self._spawn(play())
        return True

    # ------------------------------------------------------------ driven by sockets and the tick

    def _on_rtp(self, leg: Leg, data: bytes, source: Address) -> None:
        out = self.relay.on_rtp(leg, data, source, self._loop.time())
        if out is not None:
            transport = self._rtp.get(leg.other)
            if transport is not None:
                transport.sendto(out[0], out[1])

    def tick(self, now: float, ticks: int, wallclock: float) -> None:
        for leg, datagram, destination in self.relay.on_tick(now):
            transport = self._rtp.get(leg)
            if transport is not None:
                transport.sendto(datagram, destination)
        heard, digits = self.relay.drain()
        for leg, digit in digits:
            self.key(leg, digit.digit, digit.time)
        if not self.recording_now or self._writer is None or self.recorded is None:
            return
        for item in heard:
            self._track.push(int(item.leg), item.linear)
        for _ in range(ticks):
            self._chunk += self._track.frame()
            self._chunk_frames += 1
        if self._chunk_frames >= CHUNK_FRAMES:
            self._flush()

    def _flush(self) -> None:
        if self._writer is not None and self.recorded is not None and self._chunk:
            self._writer.write(self.recorded, bytes(self._chunk))
            self._frames_written += self._chunk_frames
        self._chunk.clear()
        self._chunk_frames = 0

    def _socket_closed(self) -> None:
        self._open_sockets -= 1
        if self._open_sockets == 0 and self.closed:
            for port in self.ports:
                self.engine.ports.release(port)

    def close(self, done: Callable[[str | None], None] | None = None) -> str | None:
        """Stop relaying and recording, close the sockets; returns the
        recording's file name (None: nothing was recorded). Safe twice."""
        if self.closed:
            return self.recorded if self._frames_written else None
        self.closed = True
        for task in self._tasks:
            if task is not asyncio.current_task() and not task.get_name().startswith("adopt"):
                task.cancel()   # adoption finishes: it closes what it adopts once closed
        self.engine.forget(self)
        a, b = self.relay.leg(Leg.A), self.relay.leg(Leg.B)
        log.info("anchor_closed", uuid=self.call_uuid, to_a=a.forwarded, to_b=b.forwarded, dropped_a=a.dropped,
                 dropped_b=b.dropped, drops_a=dict(a.receiver.drops) if a.receiver else {},
                 drops_b=dict(b.receiver.drops) if b.receiver else {}, recorded_seconds=self._frames_written // 50)
        if self._writer is not None and self.recorded is not None:
            self._flush()
            self._writer.close(self.recorded, done)
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        self._rtp.clear()
        return self.recorded if self._frames_written else None

