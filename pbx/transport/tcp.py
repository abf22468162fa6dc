"""TCP transport: framing by Content-Length, keep-alives, connection reuse.

Each accepted (or opened) connection gets a number; a message that arrived
on it carries that number in its ``Peer`` so responses, and later requests
to a phone that registered over it, go back on the same connection
(RFC 3261 §18.2.2, RFC 5626 §5). TLS will reuse this class with an SSL
context passed to ``open_tcp``/``connect``.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from typing import Callable, cast

from pbx.sip.address import Peer
from pbx.sip.parser import StreamFramer

Receiver = Callable[[bytes, Peer], None]
ClosedHook = Callable[[Peer, str], None]

# RFC 5626 §3.5.1: a double-CRLF "ping" is answered with a single-CRLF "pong".
PING = b"\r\n\r\n"
PONG = b"\r\n"

_ids = itertools.count(1)


class TcpConnection(asyncio.Protocol):
    def __init__(self, owner: "TcpTransport") -> None:
        self._owner = owner
        self._transport: asyncio.Transport | None = None
        self._framer = StreamFramer()
        self.id = next(_ids)
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer(self._owner.name, host, port, self.id)
        self._owner._connections[self.id] = self
        self._owner._by_address[(host, port)] = self.id

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self._transport is not None
        for frame in self._framer.feed(data):
            if frame == PING:
                self._transport.write(PONG)
            else:
                self._owner._receiver(frame, self.peer)
        if self._framer.broken is not None:
            # The stream cannot be framed any more (§18.3): the only safe
            # answer is to close the connection.
            self._owner._on_closed(self.peer, self._framer.broken)
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._forget(self)
        if self.peer is not None:
            self._owner._on_closed(self.peer, "closed" if exc is None else "error")

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class TcpTransport:
    """A listening TCP socket plus every connection it has, in or out."""

    def __init__(
        self,
        receiver: Receiver,
        on_closed: ClosedHook | None = None,
        *,
        name: str = "tcp",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._receiver = receiver
        self._closed_hook = on_closed
        self._connections: dict[int, TcpConnection] = {}
        self._by_address: dict[tuple[str, int], int] = {}
        self._server: asyncio.AbstractServer | None = None
        self._ssl = ssl_context
        self._pending: dict[tuple[str, int], asyncio.Task[TcpConnection | None]] = {}
        self.name = name
        self.local: tuple[str, int] = ("", 0)

    async def listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: TcpConnection(self), host, port, ssl=self._ssl, reuse_address=True
        )
        sockname = self._server.sockets[0].getsockname()
        self.local = (sockname[0], sockname[1])

    def send(self, data: bytes, dest: Peer) -> None:
        """Write on the connection the peer used, or to an open one to its
        address; otherwise open a new connection in the background."""
        conn = None
        if dest.connection is not None:
            conn = self._connections.get(dest.connection)
        if conn is None:
            known = self._by_address.get((dest.host, dest.port))
            conn = self._connections.get(known) if known is not None else None
        if conn is not None:
            conn.write(data)
            return
        asyncio.get_running_loop().create_task(self._connect_and_send(data, dest))

    async def _connect_and_send(self, data: bytes, dest: Peer) -> None:
        key = (dest.host, dest.port)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._connect(dest))
            self._pending[key] = task
        conn = await task
        self._pending.pop(key, None)
        if conn is not None:
            conn.write(data)
        else:
            self._on_closed(dest, "connect_failed")

    async def _connect(self, dest: Peer) -> TcpConnection | None:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: TcpConnection(self), dest.host, dest.port, ssl=self._ssl),
                timeout=10,
            )
        except (OSError, asyncio.TimeoutError):
            return None
        return protocol

    def _forget(self, conn: TcpConnection) -> None:
        self._connections.pop(conn.id, None)
        if conn.peer is not None and self._by_address.get((conn.peer.host, conn.peer.port)) == conn.id:
            del self._by_address[(conn.peer.host, conn.peer.port)]

    def _on_closed(self, peer: Peer, reason: str) -> None:
        if self._closed_hook is not None:
            self._closed_hook(peer, reason)

    def connection_count(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections.values()):
            conn.close()
