"""The overload monitor reading a real socket's backlog
(pbx/server/overload.py): datagrams left unread close the gate, reading
them opens it after the hold; the episode is logged when it starts and
once it has been quiet."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from pbx.calls.overload import OverloadGate
from pbx.server.overload import OverloadMonitor, queued_bytes


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield receiver, sender
    receiver.close()
    sender.close()


def drain(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return count
        count += 1


def test_queued_bytes_counts_what_waits_unread(pair: tuple[socket.socket, socket.socket]) -> None:
    receiver, sender = pair
    assert queued_bytes(receiver) == 0
    for _ in range(50):
        sender.sendto(b"x" * 700, receiver.getsockname())
    waiting = queued_bytes(receiver)
    # The kernel counts each datagram's whole buffer, not its payload.
    assert 50 * 700 < waiting <= 50 * 4352
    assert drain(receiver) == 50
    assert queued_bytes(receiver) == 0


def test_a_closed_socket_reads_as_nothing_waiting() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.close()
    assert queued_bytes(sock) == 0


def test_monitor_closes_the_gate_on_a_backlog_and_opens_it_once_drained(
        pair: tuple[socket.socket, socket.socket]) -> None:
    receiver, sender = pair
    gate = OverloadGate(high=40_000, hold=0.03, quiet=0.15)

    async def scenario() -> tuple[list[MutableMapping[str, Any]], list[bool]]:
        loop = asyncio.get_running_loop()
        monitor = OverloadMonitor(loop, gate, lambda: [receiver], every=0.01)
        seen = []
        with capture_logs() as logs:
            monitor.start()
            await asyncio.sleep(0.05)
            seen.append(gate.shedding)
            for _ in range(60):
                sender.sendto(b"y" * 500, receiver.getsockname())
            await asyncio.sleep(0.05)
            seen.append(gate.shedding)
            gate.refuse()
            drain(receiver)
            await asyncio.sleep(0.05)
            seen.append(gate.shedding)  # drained: open again after the hold
            await asyncio.sleep(0.3)
            seen.append(gate.in_episode)  # and the episode over once quiet
            monitor.stop()
        return logs, seen

    logs, seen = asyncio.run(scenario())
    assert seen == [False, True, False, False]
    events = [(e["event"], e["log_level"]) for e in logs if e["event"] != "overload_mark_lowered"]
    logs = [e for e in logs if e["event"] != "overload_mark_lowered"]
    assert events == [("overload_started", "warning"), ("overload_ended", "warning")]
    assert logs[0]["queued_bytes"] > 40_000 and logs[1]["refused"] == 1
    assert 0 < logs[1]["refusing_s"] <= logs[1]["lasted_s"] + 0.05


def test_monitor_lowers_the_mark_to_what_the_socket_can_hold() -> None:
    small = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 100_000)  # the kernel doubles it
    gate = OverloadGate()

    async def scenario() -> list[MutableMapping[str, Any]]:
        monitor = OverloadMonitor(asyncio.get_running_loop(), gate, lambda: [small])
        with capture_logs() as logs:
            monitor.start()
            monitor.stop()
        return logs

    try:
        logs = asyncio.run(scenario())
    finally:
        small.close()
    assert gate.high == 100_000
    assert [e["event"] for e in logs] == ["overload_mark_lowered"] and logs[0]["receive_buffer"] == 200_000
