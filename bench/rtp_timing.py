"""What the media benches share: CPU pinning, a UDP socket whose packets
carry the kernel's arrival stamp, and the pacing statistics of RTP streams
received on it."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

PERIOD: Final = 0.020
SO_TIMESTAMPNS: Final = getattr(socket, "SO_TIMESTAMPNS", 35)   # Linux; 35 on every architecture we run
_TIMESPEC: Final = struct.Struct("@qq")
_SPACE: Final = socket.CMSG_SPACE(_TIMESPEC.size)
_SEQ_SSRC: Final = struct.Struct("!H4xI")


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


def stamped_socket(host: str) -> socket.socket:
    """A UDP socket on ``host`` (any port) with a large buffer and kernel
    receive stamps (SO_TIMESTAMPNS: the reader's own scheduling does not count)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((host, 0))
    return sock


def read_stamped(sock: socket.socket) -> tuple[bytes, int, int, int] | None:
    """One RTP packet: (datagram, kernel arrival ns, sequence, SSRC); None
    for a datagram too short to be RTP. Raises what ``recvmsg`` raises."""
    data, ancillary, _, _ = sock.recvmsg(2048, _SPACE)
    if len(data) < 12:
        return None
    stamp = next((_TIMESPEC.unpack(cdata[:_TIMESPEC.size]) for level, kind, cdata in ancillary
                  if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS), None)
    arrival = stamp[0] * 1_000_000_000 + stamp[1] if stamp else time.time_ns()
    sequence, ssrc = _SEQ_SSRC.unpack_from(data, 2)
    return data, arrival, sequence, ssrc


def pacing(arrivals: dict[int, list[tuple[int, int]]]) -> dict[str, float]:
    """Per stream (SSRC → [(arrival ns, sequence)]), the gaps between packets
    one sequence number apart against :data:`PERIOD`: p50, p99 and max of
    |gap - 20 ms| in seconds, packets and the ones lost."""
    deviations: list[float] = []
    lost = packets = 0
    for stream in arrivals.values():
        packets += len(stream)
        for (t0, s0), (t1, s1) in zip(stream, stream[1:]):
            step = (s1 - s0) % 65536
            if step == 1:
                deviations.append(abs((t1 - t0) / 1e9 - PERIOD))
            elif 0 < step < 30000:
                lost += step - 1
    deviations.sort()
    return {"streams": len(arrivals), "packets": packets, "lost": lost,
            "p50": deviations[len(deviations) // 2] if deviations else 0.0,
            "p99": deviations[int(len(deviations) * 0.99)] if deviations else 0.0,
            "max": deviations[-1] if deviations else 0.0}


def usable_loop(kind: str) -> str:
    """``uvloop`` when asked for and installed, else ``asyncio``."""
    if kind == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "asyncio"
    return kind


def run_on(kind: str, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` on a fresh event loop of that kind."""
    if kind == "uvloop":
        import uvloop
        return uvloop.run(work)
    return asyncio.run(work)
