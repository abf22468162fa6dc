"""SIP over WebSocket (RFC 7118), for browser phones (JsSIP, SIP.js).

Each WebSocket message carries exactly one SIP message (§5: no
Content-Length framing, the frame is the message); what we send goes as a
text frame, or binary if it is not UTF-8. The handshake must agree on the
``sip`` subprotocol (§4): a client that does not ask for it is refused
before the upgrade (HTTP 400, by the library), and were one to get through
it is closed (1002). ``wss`` is the same over TLS with the listener's certificate
(:mod:`pbx.transport.tls`), which is what browsers on an https page need.

A browser cannot be connected to: a request for one goes on the connection
it registered over or not at all (the registrar keeps that connection, as
for TCP; its Contact, ``…@xyz.invalid;transport=ws``, names no address we
could use, so :mod:`pbx.registrar.destination` picks the connection).

Limits as for TCP (:class:`pbx.transport.tcp.TcpLimits`): connections in
total and per source (refused with HTTP 503 before the upgrade), the
opening handshake within ``handshake_seconds``, a message at most
``MAX_MESSAGE`` bytes, and a connection nothing relies on (no
registration, no call) closed after ``idle_seconds`` without a message.
The library answers pings and sends its own to find dead peers.
"""

from __future__ import annotations

import asyncio
import http
import ssl
from collections import Counter
from typing import Callable

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from pbx.sip.address import Peer
from pbx.transport.tcp import SWEEP_SECONDS, TcpLimits, next_connection_id

Receiver = Callable[[bytes, Peer], None]
ClosedHook = Callable[[Peer, str], None]

SUBPROTOCOL = Subprotocol("sip")
MAX_MESSAGE = 64 * 1024
"""Bytes in one WebSocket message: more than any SIP message we take."""

log = structlog.get_logger("pbx.transport")


class _Connection:
    __slots__ = ("socket", "peer", "last_message")

    def __init__(self, socket: ServerConnection, peer: Peer, now: float) -> None:
        self.socket, self.peer, self.last_message = socket, peer, now


class WebSocketTransport:
    """A listening WebSocket server and its connections."""

    def __init__(self, receiver: Receiver, on_closed: ClosedHook | None = None, *, secure: bool = False,
                 ssl_context: ssl.SSLContext | None = None, limits: TcpLimits | None = None) -> None:
        self.name = "wss" if secure else "ws"
        self.limits = limits or TcpLimits()
        self.in_use: Callable[[], set[int]] = set
        self.local: tuple[str, int] = ("", 0)
        self._receiver = receiver
        self._closed_hook = on_closed
        self._ssl = ssl_context
        self._server: Server | None = None
        self._connections: dict[int, _Connection] = {}
        self._per_host: Counter[str] = Counter()
        self._refusing: str | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def listen(self, host: str, port: int) -> None:
        self._server = await serve(
            self._serve, host, port, ssl=self._ssl, subprotocols=[SUBPROTOCOL], max_size=MAX_MESSAGE,
            open_timeout=self.limits.handshake_seconds, process_request=self._admit, server_header=None,
        )
        sockname = next(iter(self._server.sockets)).getsockname()
        self.local = (sockname[0], sockname[1])
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """Before the upgrade: over a limit, 503 (logged when a limit starts
        being hit, not for every connection)."""
        host = str(connection.remote_address[0])
        if len(self._connections) >= self.limits.max_connections:
            hit = "max_connections"
        elif self._per_host[host] >= self.limits.max_per_source:
            hit = "max_per_source"
        else:
            self._refusing = None
            return None
        if self._refusing != hit:
            self._refusing = hit
            log.warning("ws_connection_refused", limit=hit, source=host, connections=len(self._connections))
        return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections\n")

    async def _serve(self, socket: ServerConnection) -> None:
        if socket.subprotocol != SUBPROTOCOL:
            # RFC 7118 §4: SIP only over the "sip" subprotocol.
            await socket.close(1002, "the sip subprotocol is required")
            return
        host, port = str(socket.remote_address[0]), int(socket.remote_address[1])
        loop = asyncio.get_running_loop()
        peer = Peer(self.name, host, port, next_connection_id())
        assert peer.connection is not None
        conn = _Connection(socket, peer, loop.time())
        self._connections[peer.connection] = conn
        self._per_host[host] += 1
        reason = "closed"
        try:
            async for message in socket:
                conn.last_message = loop.time()
                data = message.encode() if isinstance(message, str) else bytes(message)
                if data.strip():  # a keep-alive CRLF carries nothing (RFC 7118 §6)
                    self._receiver(data, peer)
        except ConnectionClosed:
            reason = "error"
        finally:
            del self._connections[peer.connection]
            self._per_host[host] -= 1
            if self._per_host[host] <= 0:
                del self._per_host[host]
            if self._closed_hook is not None:
                self._closed_hook(peer, reason)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self.sweep(loop.time())

    def sweep(self, now: float) -> None:
        quiet = now - self.limits.idle_seconds
        idle = [c for c in self._connections.values() if c.last_message < quiet]
        if not idle:
            return
        used = self.in_use()
        idle = [c for c in idle if c.peer.connection not in used]
        for conn in idle:
            asyncio.get_running_loop().create_task(conn.socket.close(1000, "idle"))
        if idle:
            log.info("ws_idle_closed", count=len(idle), seconds=self.limits.idle_seconds)

    def send(self, data: bytes, dest: Peer) -> None:
        """On the connection ``dest`` names; a browser cannot be connected
        to, so without one the send fails (the transaction reports it)."""
        conn = self._connections.get(dest.connection) if dest.connection is not None else None
        if conn is None:
            if self._closed_hook is not None:
                self._closed_hook(dest, "connect_failed")
            return
        try:
            frame: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            frame = data
        asyncio.get_running_loop().create_task(self._send(conn, frame))

    @staticmethod
    async def _send(conn: _Connection, frame: str | bytes) -> None:
        try:
            await conn.socket.send(frame)
        except ConnectionClosed:
            pass  # its end is reported by _serve

    def connection_count(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
