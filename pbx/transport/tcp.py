"""TCP transport: framing by Content-Length, keep-alives, connection reuse.

Each accepted (or opened) connection gets a number; a message that arrived
on it carries that number in its ``Peer`` so responses, and later requests
to a phone that registered over it, go back on the same connection
(RFC 3261 §18.2.2, RFC 5626 §5). TLS is this class with a listening SSL
context and, for connections it opens, ``client_tls`` saying how to check
the server (:mod:`pbx.transport.tls`). Accepted TLS connections count
against the limits below once their handshake is done; a handshake must be
done within ``handshake_seconds``, so half-open handshakes cannot pile up.

Limits (:class:`TcpLimits`, from the dialplan's ``security`` section), so
one peer cannot take the server's memory or attention: connections accepted
in total and per source address (one over is closed at once; the first
refusal is logged, not every one), a message must be complete within
``message_seconds`` of its first byte (a slow sender is cut off; a new
connection's first message is due that long after it opened), and an
accepted connection that carries nothing the PBX needs (no registration,
no call: the ``in_use`` callback says) is closed after ``idle_seconds``
without a byte (2,000 idle connections once were all kept). The framer
(``StreamFramer``) keeps no keep-alive flood and holds at most one message
the parser could take (64 KiB); and the partial messages of all accepted
connections together may hold ``max_buffered_bytes``: a connection whose
bytes pass that budget is closed at once (it is the one growing), so
many sources each holding a large partial message within the time limit
cannot pin the server's memory either.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections import Counter
from dataclasses import dataclass
from typing import Callable, cast

import structlog

from pbx.sip.address import Peer
from pbx.sip.parser import StreamFramer
from pbx.transport.tls import ClientTls, public_key_pin, verify_failure

Receiver = Callable[[bytes, Peer], None]
ClosedHook = Callable[[Peer, str], None]

# RFC 5626 §3.5.1: a double-CRLF "ping" is answered with a single-CRLF "pong".
PING = b"\r\n\r\n"
PONG = b"\r\n"

_ids = itertools.count(1)
next_connection_id = _ids.__next__
"""Numbers connections of every kind (TCP, TLS, WebSocket) apart: the
registrar and calls keep a connection by its number alone."""
log = structlog.get_logger("pbx.transport")

SWEEP_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class TcpLimits:
    max_connections: int = 4000
    """Accepted connections at once, every source together."""
    max_per_source: int = 200
    """Accepted connections from one address (an office NAT has many phones)."""
    message_seconds: float = 20.0
    """A message must be complete this long after its first byte."""
    idle_seconds: float = 120.0
    """An accepted connection not in use is closed after this long without
    a byte from its peer (a registered phone's keep-alives count)."""
    handshake_seconds: float = 10.0
    """TLS only: a handshake, in or out, must be done this long after the
    connection opened."""
    max_buffered_bytes: int = 64 * 1024 * 1024
    """Bytes of partial messages held for all accepted connections together
    (4,000 phones mid-message hold a few MB; 4,000 attackers at the framer's
    64 KiB would hold 256 MB)."""


class TcpConnection(asyncio.Protocol):
    def __init__(self, owner: "TcpTransport", *, inbound: bool) -> None:
        self._owner = owner
        self._transport: asyncio.Transport | None = None
        self._framer = StreamFramer()
        self.id = next(_ids)
        self.peer: Peer | None = None
        self.inbound = inbound
        self.partial_since: float | None = None
        """When the message now being received began (loop time)."""
        self.last_byte = 0.0
        """When the peer last sent anything (loop time)."""
        self.held = 0
        """Bytes of this inbound connection counted in the transport's budget."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        if self.inbound and not self._owner._admit(host):
            self._transport.abort()  # over a limit: closed before it costs anything
            return
        self.last_byte = asyncio.get_running_loop().time()
        if self.inbound:
            # The first message is due like any other: a connection that
            # never sends one is a slot held for nothing.
            self.partial_since = self.last_byte
        self.peer = Peer(self._owner.name, host, port, self.id)
        self._owner._connections[self.id] = self
        self._owner._by_address[(host, port)] = self.id
        if self.inbound:
            self._owner._per_host[host] += 1

    def data_received(self, data: bytes) -> None:
        if self.peer is None or self._transport is None:
            return  # refused at connection_made
        frames = self._framer.feed(data)
        now = self.last_byte = asyncio.get_running_loop().time()
        # Over the budget with a message of its own under way: the frames it
        # completed are still served, then it is closed.
        over_budget = self.inbound and self._owner._hold(self, self._framer.buffered)
        if self._framer.buffered == 0:
            if frames or not self.inbound:
                self.partial_since = None
        elif self.partial_since is None or frames:
            self.partial_since = now
        for frame in frames:
            if frame == PING:
                self._transport.write(PONG)
            else:
                self._owner._receiver(frame, self.peer)
        broken = self._framer.broken or ("buffer_budget" if over_budget else None)
        if broken is not None:
            # The stream cannot be framed any more (§18.3), or may not grow:
            # the only safe answer is to close the connection.
            self._owner._on_closed(self.peer, broken)
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is None:
            return  # refused at connection_made: never counted
        self._owner._forget(self)
        self._owner._on_closed(self.peer, "closed" if exc is None else "error")

    @property
    def buffered(self) -> int:
        """Bytes of a message not yet complete."""
        return self._framer.buffered

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
        limits: TcpLimits | None = None,
        client_tls: Callable[[Peer], ClientTls | None] | None = None,
    ) -> None:
        self.limits = limits or TcpLimits()
        self.in_use: Callable[[], set[int]] = set
        """Numbers of the connections registrations and calls rely on: never
        closed for idleness. Asked only when some connection is idle."""
        self._per_host: Counter[str] = Counter()
        self._refusing: str | None = None  # the limit being hit, logged once
        self._buffered = 0  # partial-message bytes of accepted connections
        self._over_budget = False  # max_buffered_bytes hit, logged once
        self._sweeper: asyncio.Task[None] | None = None
        self._receiver = receiver
        self._closed_hook = on_closed
        self._connections: dict[int, TcpConnection] = {}
        self._by_address: dict[tuple[str, int], int] = {}
        self._server: asyncio.AbstractServer | None = None
        self._ssl = ssl_context
        self._client_tls = client_tls
        """TLS: how to verify the server of a connection we open to a peer;
        None from it: no TLS connection may be opened there."""
        self._pending: dict[tuple[str, int], asyncio.Task[TcpConnection | None]] = {}
        self.name = name
        self.local: tuple[str, int] = ("", 0)

    async def listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: TcpConnection(self, inbound=True), host, port, ssl=self._ssl, reuse_address=True,
            ssl_handshake_timeout=self.limits.handshake_seconds if self._ssl is not None else None,
        )
        sockname = self._server.sockets[0].getsockname()
        self.local = (sockname[0], sockname[1])
        self._sweeper = loop.create_task(self._sweep())

    def _admit(self, host: str) -> bool:
        """May one more connection from ``host`` be accepted? A refusal is
        logged when a limit starts being hit, not for every connection."""
        limits = self.limits
        accepted = len(self._connections)
        if accepted >= limits.max_connections:
            hit = "max_connections"
        elif self._per_host[host] >= limits.max_per_source:
            hit = "max_per_source"
        else:
            self._refusing = None
            return True
        if self._refusing != hit:
            self._refusing = hit
            log.warning("tcp_connection_refused", limit=hit, source=host, connections=accepted,
                        from_source=self._per_host[host])
        return False

    async def _sweep(self) -> None:
        """Once a second: cut off senders whose message is overdue, and
        close idle connections nothing relies on."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self.sweep(loop.time())

    def sweep(self, now: float) -> None:
        cutoff = now - self.limits.message_seconds
        late = [c for c in self._connections.values()
                if c.inbound and c.partial_since is not None and c.partial_since < cutoff]
        for conn in late:
            conn.close()
        if late:
            log.warning("tcp_slow_senders_closed", count=len(late), seconds=self.limits.message_seconds,
                        sources=sorted({c.peer.host for c in late if c.peer is not None})[:10])
        quiet = now - self.limits.idle_seconds
        idle = [c for c in self._connections.values()
                if c.inbound and c.buffered == 0 and c.last_byte < quiet]
        if idle:
            used = self.in_use()
            idle = [c for c in idle if c.id not in used]
            for conn in idle:
                conn.close()
            if idle:
                log.info("tcp_idle_closed", count=len(idle), seconds=self.limits.idle_seconds,
                         sources=sorted({c.peer.host for c in idle if c.peer is not None})[:10])

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
        tls: ClientTls | None = None
        if self._client_tls is not None:
            tls = self._client_tls(dest)
            if tls is None:
                log.warning("tls_connection_not_allowed", dest=str(dest))
                return None
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: TcpConnection(self, inbound=False), dest.host, dest.port,
                    ssl=tls.context if tls is not None else None,
                    server_hostname=(tls.server_name or dest.host) if tls is not None else None,
                    ssl_handshake_timeout=self.limits.handshake_seconds if tls is not None else None),
                timeout=10 + self.limits.handshake_seconds,
            )
        except (OSError, asyncio.TimeoutError) as err:
            if tls is not None and isinstance(err, ssl.SSLError):
                # The server's certificate is refused: say why, once per try.
                log.error("tls_certificate_refused", dest=str(dest), server_name=tls.server_name or dest.host,
                          reason=verify_failure(err))
            return None
        if tls is not None and tls.pins:
            der = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
            pin = public_key_pin(der) if der else ""
            if pin not in tls.pins:  # pins are normalised lower-case hex
                log.error("tls_certificate_refused", dest=str(dest), server_name=tls.server_name or dest.host,
                          reason="public key not pinned", sha256=pin)
                transport.abort()
                return None
        return protocol

    def _hold(self, conn: TcpConnection, buffered: int) -> bool:
        """Count ``conn`` as holding ``buffered`` bytes now; True when that
        takes all connections past ``max_buffered_bytes`` and ``conn``
        holds some of them (the connection to close)."""
        self._buffered += buffered - conn.held
        conn.held = buffered
        budget = self.limits.max_buffered_bytes
        if self._buffered <= budget:
            if self._buffered <= budget // 2:
                self._over_budget = False  # logged again when it is hit again
            return False
        if buffered == 0:
            return False
        if not self._over_budget:
            self._over_budget = True
            log.warning("tcp_buffer_budget_hit", source=conn.peer.host if conn.peer else None,
                        buffered=self._buffered, budget=self.limits.max_buffered_bytes)
        return True

    def _forget(self, conn: TcpConnection) -> None:
        self._buffered -= conn.held
        conn.held = 0
        if self._connections.pop(conn.id, None) is not None and conn.inbound and conn.peer is not None:
            self._per_host[conn.peer.host] -= 1
            if self._per_host[conn.peer.host] <= 0:
                del self._per_host[conn.peer.host]
        if conn.peer is not None and self._by_address.get((conn.peer.host, conn.peer.port)) == conn.id:
            del self._by_address[(conn.peer.host, conn.peer.port)]

    def _on_closed(self, peer: Peer, reason: str) -> None:
        if self._closed_hook is not None:
            self._closed_hook(peer, reason)

    def connection_count(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections.values()):
            conn.close()
