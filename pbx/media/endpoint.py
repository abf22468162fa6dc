"""The asyncio edge of the media layer: UDP sockets per stream and one
clock tick for all of them.

:class:`MediaEngine` (one per process) owns the RTP port range and the
tick: a single ``loop.call_at`` chain whose n-th tick is due at
``start + n × 20 ms``, computed from the start rather than from the last
tick, so lateness never accumulates into drift. Each tick asks every open
stream for its packet and sends it (STYLE §11: no task and no sleep per
stream). A tick that comes more than one period late (the loop was
blocked) skips the missed ticks and tells the streams, whose timestamps
jump to match: packets are never sent in a burst to catch up.

:class:`MediaSession` is what the call layer owns for one call: SDP in and
out, a playlist to play (an awaitable that completes when it ends), the
digits the phone sends (a queue, or a callback), and ``close()``, which
sends RTCP BYE, closes the sockets and gives the ports back. Everything
else is decided by the pure :class:`pbx.media.session.MediaStream`.

Blocking work stays off the loop: loading a prompt file runs in a thread
(:meth:`MediaSession.load_prompt`).

How a call uses it (the coordinator in ``pbx/calls`` owns the session)::

    session = await engine.open_session()          # PortsExhausted: answer 503
    try:
        sdp = session.answer(invite_body)          # SdpError: answer 488 with str(err)
        # or, for an INVITE without SDP: session.offer() in the 2xx,
        # then session.accept(ack_body)
        ...send 200 OK (or 183 Session Progress for early media) with sdp...
        audio = await session.load_prompt(lambda: library.load("vi", "welcome"))
        finished = await session.play([Prompt(audio), Silence(0.5)])
        event = await session.next_event()         # Digit(...) from RFC 4733 or in-band
        digit = session.info(content_type, body)   # a SIP INFO: DtmfInfoError.status to answer
    finally:
        session.close()

An announcement before a refusal (early media) is the same with a 183:
answer the offer, send 183 with the SDP, ``await session.play(...)``, then
send the final response and close.
"""

from __future__ import annotations

import asyncio
import collections
import random
import secrets
import socket
import time
from collections.abc import Callable
from typing import Final, Protocol

import structlog

from pbx.media.audio_file import Audio
from pbx.media.events import Address, Digit, MediaEvent, PlaybackFinished, RemoteLatched, SsrcChanged
from pbx.media.player import PlaylistItem
from pbx.media.ports import PortAllocator, PortsExhausted
from pbx.media.sdes import MATERIAL_BYTES, PREFERENCE, MediaEncryption
from pbx.media.sdp import (
    Direction,
    LocalMedia,
    Negotiated,
    SdpError,
    SdpSession,
    SessionDescription,
    accept_answer,
    parse_sdp,
)
from pbx.media.session import MediaStream, StreamSettings

log = structlog.get_logger("pbx.media")

TICK: Final = 0.020
MAX_QUEUED_EVENTS: Final = 64
"""Digits nobody reads are dropped beyond this (a peer may send events as
fast as it likes); the oldest go first."""


class Ticked(Protocol):
    """What the engine's tick drives: a session, or a relay (:mod:`pbx.media.anchor`)."""

    rtp_port: int

    def tick(self, now: float, ticks: int, wallclock: float) -> None: ...

    def close(self) -> object: ...


class MediaEngine:
    """RTP port range, sockets and the shared 20 ms clock for every stream."""

    def __init__(self, *, bind_host: str, ports: PortAllocator, advertise: str | None = None,
                 rng: random.Random | None = None, wallclock: Callable[[], float] = time.time) -> None:
        self.bind_host = bind_host
        self.advertise = advertise or bind_host
        self.ports = ports
        self.rng = rng or random.Random(secrets.randbits(64))
        self.wallclock = wallclock
        self.late_ticks = 0
        """Ticks skipped because the loop was blocked for more than one period."""
        self._sessions: dict[int, Ticked] = {}
        self._tickers: list[Callable[[float], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._tick = 0

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    async def open_session(self, *, settings: StreamSettings = StreamSettings(),
                           on_event: Callable[[MediaEvent], None] | None = None,
                           encryption: MediaEncryption = "none") -> MediaSession:
        """Bind an RTP/RTCP pair from the range; :class:`PortsExhausted`
        when none is free. ``encryption``: SRTP never, when the phone offers
        or takes it, or always (a plain offer is then refused: 488)."""
        loop = self._loop = asyncio.get_running_loop()
        for _ in range(self.ports.capacity):
            rtp_port, rtcp_port = self.ports.allocate()
            session = MediaSession(self, rtp_port, settings=settings, on_event=on_event, encryption=encryption)
            try:
                rtp, _ = await loop.create_datagram_endpoint(lambda: _Receiver(session.on_rtp, session.socket_closed),
                                                             local_addr=(self.bind_host, rtp_port))
            except OSError:
                self.ports.unusable(rtp_port)
                continue
            try:
                rtcp_transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(session.on_rtcp, session.socket_closed),
                                                                        local_addr=(self.bind_host, rtcp_port))
            except OSError:
                rtp.close()
                self.ports.unusable(rtp_port)
                continue
            session.attach(rtp, rtcp_transport)
            return self._ticking(session, loop)
        raise self._exhausted()

    def _ticking(self, session: MediaSession, loop: asyncio.AbstractEventLoop) -> MediaSession:
        """``session`` joins the tick (which starts with the first one)."""
        self._loop = loop
        self.join(session)
        return session

    def _exhausted(self) -> PortsExhausted:
        log.warning("media_ports_exhausted", first=self.ports.first, last=self.ports.last,
                    in_use=self.ports.in_use)
        return PortsExhausted(f"no RTP port pair could be bound in {self.ports.first}-{self.ports.last}")

    def open_session_now(self, *, settings: StreamSettings = StreamSettings(),
                         on_event: Callable[[MediaEvent], None] | None = None,
                         encryption: MediaEncryption = "none") -> MediaSession:
        """:meth:`open_session` without waiting, for a caller that must
        answer at once (the call layer builds its SDP in the same step): the
        sockets are bound here, asyncio takes them over a moment later.
        Packets that arrive meanwhile wait in the socket; ticks before then
        send nothing. :class:`PortsExhausted` when no pair can be bound."""
        loop = self._loop = asyncio.get_running_loop()
        rtp_port, rtp, rtcp = self.bind_pair_now()
        session = MediaSession(self, rtp_port, settings=settings, on_event=on_event, encryption=encryption)
        session.adopting = loop.create_task(session.adopt(rtp, rtcp))
        return self._ticking(session, loop)

    def bind_pair_now(self) -> tuple[int, socket.socket, socket.socket]:
        """An RTP/RTCP pair of the range bound at once (non-blocking
        sockets for asyncio to adopt); :class:`PortsExhausted` when none can be."""
        self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET
        for _ in range(self.ports.capacity):
            rtp_port, rtcp_port = self.ports.allocate()
            sockets: list[socket.socket] = []
            try:
                for port in (rtp_port, rtcp_port):
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                    sockets.append(sock)
                    sock.setblocking(False)
                    sock.bind((self.bind_host, port))
            except OSError:
                for sock in sockets:
                    sock.close()
                self.ports.unusable(rtp_port)
                continue
            return rtp_port, sockets[0], sockets[1]
        raise self._exhausted()

    def add_ticker(self, ticker: Callable[[float], None]) -> None:
        """Call ``ticker(now)`` on every tick, before the streams send: a
        conference mixer fills its members' feeds for the packets of the
        same tick. It runs only while some session is open."""
        if ticker not in self._tickers:
            self._tickers.append(ticker)

    def remove_ticker(self, ticker: Callable[[float], None]) -> None:
        if ticker in self._tickers:
            self._tickers.remove(ticker)

    def join(self, ticked: Ticked) -> None:
        """Something else than a :class:`MediaSession` (a relay) joins the tick."""
        assert self._loop is not None
        self._sessions[ticked.rtp_port] = ticked
        if self._timer is None:
            self._start, self._tick = self._loop.time(), 0
            self._schedule()

    def forget(self, session: Ticked) -> None:
        """A session is closing: no more ticks for it. Its ports go back to
        the range once both sockets are closed (asyncio closes them on the
        next loop turn; binding them again before fails)."""
        self._sessions.pop(session.rtp_port, None)
        if not self._sessions and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        assert self._loop is not None
        self._tick += 1
        self._timer = self._loop.call_at(self._start + self._tick * TICK, self._on_tick)

    def _on_tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        ticks = 1
        behind = int((now - self._start) / TICK) - self._tick
        if behind >= 1:
            # Blocked for over a period: skip, never burst.
            ticks += behind
            self._tick += behind
            self.late_ticks += behind
        wallclock = self.wallclock()
        for ticker in list(self._tickers):
            ticker(now)
        for session in list(self._sessions.values()):
            session.tick(now, ticks, wallclock)
        self._schedule()

    async def close(self) -> None:
        """Close every session; returns once their ports are free."""
        for session in list(self._sessions.values()):
            session.close()
        await asyncio.sleep(0)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, handler: Callable[[bytes, Address], None], lost: Callable[[], None]) -> None:
        self._handler = handler
        self._lost = lost

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._handler(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a phone that hung up: not our error.
        pass


class MediaSession:
    """One call's media, owned by the call coordinator."""

    def __init__(self, engine: MediaEngine, rtp_port: int, *, settings: StreamSettings,
                 on_event: Callable[[MediaEvent], None] | None, encryption: MediaEncryption = "none") -> None:
        self.engine = engine
        self.encryption: MediaEncryption = encryption
        """SRTP for this call's media (the extension's ``media_encryption``)."""
        self.rtp_port = rtp_port
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.stream = MediaStream(rng=engine.rng, now=loop.time(), cname=f"pbx-{rtp_port}@{engine.advertise}",
                                  settings=settings)
        self.sdp = SdpSession(address=engine.advertise, session_id=engine.rng.getrandbits(62))
        self.events: collections.deque[MediaEvent] = collections.deque(maxlen=MAX_QUEUED_EVENTS)
        self._on_event = on_event
        self._event_ready = asyncio.Event()
        self._playbacks: dict[int, asyncio.Future[bool]] = {}
        self._pending_offer: tuple[SessionDescription, LocalMedia] | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._open_sockets = 2
        self.closed = False
        self.adopting: asyncio.Task[None] | None = None
        """Sockets bound by :meth:`MediaEngine.open_session_now` being handed to asyncio."""

    def attach(self, rtp: asyncio.DatagramTransport, rtcp: asyncio.DatagramTransport) -> None:
        self._rtp, self._rtcp = rtp, rtcp

    async def adopt(self, rtp: socket.socket, rtcp: socket.socket) -> None:
        """Hand sockets bound by :meth:`MediaEngine.open_session_now` to
        asyncio; a session closed meanwhile closes them instead."""
        loop = self._loop
        transports: list[asyncio.DatagramTransport] = []

        def protocol(handler: Callable[[bytes, Address], None]) -> Callable[[], _Receiver]:
            return lambda: _Receiver(handler, self.socket_closed)

        try:
            for sock, handler in ((rtp, self.on_rtp), (rtcp, self.on_rtcp)):
                transport, _ = await loop.create_datagram_endpoint(protocol(handler), sock=sock)
                transports.append(transport)
        except OSError as err:
            log.error("media_socket_failed", port=self.rtp_port, error=str(err))
        if len(transports) < 2 or self.closed:
            self.close()  # first: the ports go back once the last socket is closed
            for transport in transports:
                transport.close()
            for sock in (rtp, rtcp)[len(transports):]:
                sock.close()
                self.socket_closed()
            return
        self.attach(transports[0], transports[1])

    @property
    def local(self) -> LocalMedia:
        return self._local(Direction.SENDRECV)

    def _local(self, direction: Direction) -> LocalMedia:
        # A fresh SRTP key for every offer and answer: never one key for two
        # suites or two directions (RFC 4568 §6.1). Drawn here, at the edge.
        material = secrets.token_bytes(MATERIAL_BYTES * len(PREFERENCE)) if self.encryption != "none" else b""
        return LocalMedia(address=self.engine.advertise, port=self.rtp_port, direction=direction,
                          encryption=self.encryption, key_material=material)

    # ------------------------------------------------------------ SDP

    def answer(self, offer: str | bytes, *, direction: Direction = Direction.SENDRECV,
               allowed_hosts: frozenset[str] | None = None) -> str:
        """Our SDP answer to the phone's offer (INVITE, re-INVITE or the ACK
        of a 2xx we sent an offer in is :meth:`accept`). Raises
        :class:`pbx.media.sdp.SdpError`: answer 488 with its text."""
        local = self._local(direction)
        description, negotiated = self.sdp.answer(offer, local)
        self._apply(negotiated, allowed_hosts)
        return description.serialise()

    def offer(self, *, direction: Direction = Direction.SENDRECV) -> str:
        """An SDP offer: for an INVITE that came without one (our 2xx or
        reliable 18x carries it), for hold (``sendonly``) and resume."""
        local = self._local(direction)
        description = self.sdp.offer(local)
        self._pending_offer = (description, local)
        return description.serialise()

    def accept(self, answer: str | bytes, *, allowed_hosts: frozenset[str] | None = None) -> Negotiated:
        """The phone's answer to our last :meth:`offer`; SdpError if unusable."""
        if self._pending_offer is None:
            raise SdpError("an answer without an offer")
        description, local = self._pending_offer
        negotiated = accept_answer(description, parse_sdp(answer), local)
        self._apply(negotiated, allowed_hosts)
        return negotiated

    def _apply(self, negotiated: Negotiated, allowed_hosts: frozenset[str] | None) -> None:
        self.stream.set_negotiated(negotiated, allowed_hosts=allowed_hosts)

    # ------------------------------------------------------------ playing and digits

    def play(self, items: list[PlaylistItem] | tuple[PlaylistItem, ...]) -> asyncio.Future[bool]:
        """Start a playlist (stopping what played); the future resolves True
        when it has all been sent, False if stopped or the session closed."""
        playback = self.stream.play(items, self._loop.time())
        future: asyncio.Future[bool] = self._loop.create_future()
        self._playbacks[playback] = future
        self._flush()
        return future

    def stop_playback(self) -> None:
        self.stream.stop_playback(self._loop.time())
        self._flush()

    async def load_prompt(self, loader: Callable[[], Audio]) -> Audio:
        """Run a blocking prompt load (file read and conversion) in a thread."""
        return await asyncio.to_thread(loader)

    def info(self, content_type: str, body: bytes | str) -> Digit:
        """A SIP INFO's body → its digit (also queued as an event); raises
        :class:`pbx.media.dtmf_info.DtmfInfoError` with the status to answer."""
        digit = self.stream.on_info(content_type, body, self._loop.time())
        self._flush()
        return digit

    def send_digit(self, digit: str, *, duration_ms: int = 100) -> bool:
        return self.stream.send_digit(digit, duration_ms=duration_ms)

    async def next_event(self) -> MediaEvent:
        """The next event (digit, playback end...) when no callback was given."""
        while not self.events:
            self._event_ready.clear()
            await self._event_ready.wait()
        return self.events.popleft()

    # ------------------------------------------------------------ driven by the engine and sockets

    def tick(self, now: float, ticks: int, wallclock: float) -> None:
        packet = self.stream.on_tick(now, ticks)
        if packet is not None and self._rtp is not None:
            destination = self.stream.destination
            if destination is not None:
                self._rtp.sendto(packet, destination)
        report = self.stream.rtcp_report(now, wallclock)
        if report is not None:
            self._send_rtcp(report)
        self._flush()

    def socket_closed(self) -> None:
        self._open_sockets -= 1
        if self._open_sockets == 0 and self.closed:
            self.engine.ports.release(self.rtp_port)

    def on_rtp(self, data: bytes, source: Address) -> None:
        self.stream.on_rtp(data, source, self._loop.time())
        self._flush()

    def on_rtcp(self, data: bytes, source: Address) -> None:
        self.stream.on_rtcp(data, source, self._loop.time())

    def _send_rtcp(self, report: bytes) -> None:
        destination = self.stream.rtcp_destination
        if destination is not None and self._rtcp is not None:
            self._rtcp.sendto(report, destination)

    def _flush(self) -> None:
        events = self.stream.drain_events()
        if not events:
            return
        for event in events:
            if isinstance(event, PlaybackFinished):
                if event.held_back:
                    # The caller heard a gap: the server did not keep time.
                    log.warning("playback_held_back", port=self.rtp_port, completed=event.completed,
                                held_back_ms=round(event.held_back * 1000))
                future = self._playbacks.pop(event.playback_id, None)
                if future is not None and not future.done():
                    future.set_result(event.completed)
            elif isinstance(event, RemoteLatched):
                log.info("media_latched", port=self.rtp_port, address=f"{event.address[0]}:{event.address[1]}",
                         previous=event.previous and f"{event.previous[0]}:{event.previous[1]}")
            elif isinstance(event, SsrcChanged):
                log.info("media_ssrc_changed", port=self.rtp_port, old=event.old, new=event.new)
            if self._on_event is not None:
                self._on_event(event)
            else:
                self.events.append(event)
        if self._on_event is None:
            self._event_ready.set()

    def close(self) -> None:
        """RTCP BYE, sockets closed, ports released (once the loop has run
        the sockets' closing, a turn later); safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self.stream.negotiated is not None:
            bye = self.stream.rtcp_report(self._loop.time(), self.engine.wallclock(), bye=True)
            if bye is not None:
                self._send_rtcp(bye)
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        for future in self._playbacks.values():
            if not future.done():
                future.set_result(False)
        self._playbacks.clear()
        self.engine.forget(self)
        # The owner's handler is a bound method of an object that holds this
        # session: a reference cycle, which would leave the whole call (its
        # dialog, tasks and sockets) to the collector's sweep
        # (pbx/server/gc_tuning.py) instead of reference counting. Nothing
        # comes after close: the engine no longer ticks this session.
        self._on_event = None

    async def __aenter__(self) -> MediaSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
