"""Reading the SIP sockets' backlog for the overload gate
(:mod:`pbx.calls.overload` decides; this is its clock and its eyes)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Final

import structlog

from pbx.calls.overload import OverloadGate
from pbx.server.periodic import Periodic

log = structlog.get_logger("pbx.overload")

CHECK_EVERY: Final = 0.02
"""Seconds between two readings of the sockets' backlog."""

REPORT_EVERY: Final = 10.0
"""Seconds between two ``overload_shedding`` lines while refusing."""

_SO_MEMINFO: Final = getattr(socket, "SO_MEMINFO", 55)
"""Linux's SO_MEMINFO (include/uapi/asm-generic/socket.h): nine u32 counters,
the first the bytes queued for reading, the last the datagrams dropped."""
_MEMINFO: Final = struct.Struct("9I")


def queued_bytes(sock: socket.socket) -> int:
    """Bytes waiting to be read in ``sock`` (0 where the kernel cannot tell)."""
    try:
        return int(_MEMINFO.unpack(sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO.size))[0])
    except (OSError, struct.error):
        return 0


def buffer_bytes(sock: socket.socket) -> int | None:
    """The receive buffer of ``sock`` as the kernel counts it (None: unknown)."""
    try:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except OSError:
        return None


class OverloadMonitor:
    """Reads the backlog of ``sockets`` every ``CHECK_EVERY`` on the loop
    and keeps ``gate`` up to date; logs its changes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gate: OverloadGate,
                 sockets: Callable[[], Sequence[socket.socket]], *, every: float = CHECK_EVERY) -> None:
        self._loop = loop
        self.gate = gate
        self._sockets = sockets
        self._report_at = 0.0
        self._periodic = Periodic(loop, every, self._tick)

    def start(self) -> None:
        buffers = [size for sock in self._sockets() if (size := buffer_bytes(sock)) is not None]
        if buffers and self.gate.capped(min(buffers)):
            log.info("overload_mark_lowered", receive_buffer=min(buffers), high_water=self.gate.high,
                     why="the socket's receive buffer is smaller than the mark (net.core.rmem_max)")
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()

    def _tick(self) -> None:
        now = self._loop.time()
        queued = sum(queued_bytes(sock) for sock in self._sockets())
        change = self.gate.observe(now, queued)
        if change is not None and change.kind == "started":
            self._report_at = now + REPORT_EVERY
            log.warning("overload_started", queued_bytes=queued, high_water=self.gate.high)
        elif change is not None:
            log.warning("overload_ended", refused=change.refused, lasted_s=round(change.lasted, 1),
                        refusing_s=round(change.shed, 1))
        elif self.gate.in_episode and now >= self._report_at:
            self._report_at = now + REPORT_EVERY
            log.warning("overload_shedding", refused=self.gate.refused, queued_bytes=queued,
                        refusing=self.gate.shedding)
