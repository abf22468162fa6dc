"""UDP transport: datagrams in and out, nothing else (RFC 3261 §18)."""

from __future__ import annotations

import asyncio
import socket
from typing import Callable, Final, cast

from pbx.sip.address import Peer

Receiver = Callable[[bytes, Peer], None]

# Source addresses -> their Peer, so a phone's datagrams share one object
# instead of allocating one each. Bounded: emptied when full.
_PEER_CACHE_MAX: Final = 65_536


class UdpTransport(asyncio.DatagramProtocol):
    """One bound UDP socket. Hands every datagram to ``receiver``."""

    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._transport: asyncio.DatagramTransport | None = None
        self._peers: dict[tuple[str | object, ...], Peer] = {}
        self.local: tuple[str, int] = ("", 0)
        self.sock: socket.socket | None = None
        """The bound socket, for reading its backlog (pbx/server/overload.py)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport,
        # so no isinstance check here; it has the same methods.
        self._transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.local = (sockname[0], sockname[1])

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        peer = self._peers.get(addr)
        if peer is None:
            host, port = addr[0], addr[1]
            assert isinstance(host, str) and isinstance(port, int)
            peer = Peer("udp", host, port)
            if len(self._peers) >= _PEER_CACHE_MAX:
                self._peers.clear()
            self._peers[addr] = peer
        self._receiver(data, peer)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: UDP has no connection to fail;
        # the transaction timers notice the silence (§17.1.1.2 timer B/F).
        pass

    def send(self, data: bytes, dest: Peer) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, (dest.host, dest.port))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


# A burst of REGISTERs arrives faster than one event-loop turn drains the
# socket; the kernel's default buffer (~200 kB) then drops datagrams, which
# the phones see as loss and retransmit. Ask for more (capped by
# net.core.rmem_max; root may force it past that).
RECEIVE_BUFFER = 8 * 1024 * 1024


def _grow_receive_buffer(sock: socket.socket) -> None:
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
            return
        except OSError:
            continue


async def open_udp(host: str, port: int, receiver: Receiver) -> UdpTransport:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        _grow_receive_buffer(sock)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    _, protocol = await loop.create_datagram_endpoint(lambda: UdpTransport(receiver), sock=sock)
    protocol.sock = sock
    return protocol
