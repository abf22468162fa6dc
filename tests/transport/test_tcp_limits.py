"""The TCP transport's limits on real sockets (127.0.0.1): connections per
source and in total, and a deadline for a message's bytes (slow senders)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import structlog

from pbx.transport.tcp import TcpLimits, TcpTransport

OPTIONS = (b"OPTIONS sip:pbx@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKx\r\n"
           b"From: <sip:a@b>;tag=1\r\nTo: <sip:pbx@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
           b"Content-Length: 0\r\n\r\n")


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True if the server closes the connection within ``within`` seconds."""
    try:
        return await asyncio.wait_for(reader.read(100), within) == b""
    except asyncio.TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_connections_over_the_per_source_limit_are_closed_and_logged_once() -> None:
    async def scenario() -> tuple[list[bool], int, list[MutableMapping[str, Any]]]:
        received: list[bytes] = []
        tcp = TcpTransport(lambda data, peer: received.append(data),
                           limits=TcpLimits(max_connections=100, max_per_source=3, message_seconds=30))
        await tcp.listen("127.0.0.1", 0)
        with structlog.testing.capture_logs() as logs:
            streams = [await asyncio.open_connection(*tcp.local) for _ in range(5)]
            closed = [await closed_by_server(reader, 0.3) for reader, _ in streams]
        # The admitted ones still work.
        streams[0][1].write(OPTIONS)
        await streams[0][1].drain()
        for _ in range(50):
            if received:
                break
            await asyncio.sleep(0.02)
        count = tcp.connection_count()
        for _, writer in streams:
            writer.close()
        tcp.close()
        assert received == [OPTIONS]
        return closed, count, logs

    closed, count, logs = asyncio.run(scenario())
    assert closed == [False, False, False, True, True]
    assert count == 3
    assert [e["limit"] for e in logs if e["event"] == "tcp_connection_refused"] == ["max_per_source"]


def test_total_limit_counts_every_source() -> None:
    async def scenario() -> list[bool]:
        tcp = TcpTransport(lambda data, peer: None, limits=TcpLimits(max_connections=2, max_per_source=10))
        await tcp.listen("127.0.0.1", 0)
        streams = [await asyncio.open_connection(*tcp.local, local_addr=(f"127.0.0.{n}", 0)) for n in (2, 3, 4)]
        closed = [await closed_by_server(reader, 0.3) for reader, _ in streams]
        for _, writer in streams:
            writer.close()
        tcp.close()
        return closed

    assert asyncio.run(scenario()) == [False, False, True]


def test_a_slow_sender_is_cut_off_and_a_prompt_one_is_not() -> None:
    async def scenario() -> tuple[bool, bool, list[bytes]]:
        received: list[bytes] = []
        tcp = TcpTransport(lambda data, peer: received.append(data), limits=TcpLimits(message_seconds=1))
        await tcp.listen("127.0.0.1", 0)
        slow_reader, slow = await asyncio.open_connection(*tcp.local)
        prompt_reader, prompt = await asyncio.open_connection(*tcp.local)
        for _ in range(3):  # a byte every 0.8 s: never a whole message
            slow.write(OPTIONS[:1])
            prompt.write(OPTIONS)  # whole messages, so its clock restarts each time
            await asyncio.sleep(0.8)
        slow_closed = await closed_by_server(slow_reader, 1.5)
        prompt_closed = await closed_by_server(prompt_reader, 0.1)
        slow.close()
        prompt.close()
        tcp.close()
        return slow_closed, prompt_closed, received

    slow_closed, prompt_closed, received = asyncio.run(scenario())
    assert slow_closed and not prompt_closed
    assert received == [OPTIONS] * 3


def test_keep_alive_pings_get_pongs_and_hold_nothing() -> None:
    async def scenario() -> bytes:
        tcp = TcpTransport(lambda data, peer: None)
        await tcp.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*tcp.local)
        writer.write(b"\r\n\r\n")
        pong = await asyncio.wait_for(reader.read(10), 2)
        writer.close()
        tcp.close()
        return pong

    assert asyncio.run(scenario()) == b"\r\n"


def test_idle_connections_nothing_relies_on_are_closed() -> None:
    """2,000 idle connections were all kept; now one that carries no
    registration or call is closed after idle_seconds, one that does stays,
    and a peer that keeps talking is never idle."""

    async def scenario() -> tuple[bool, bool, bool, list[MutableMapping[str, Any]]]:
        peers: list[int] = []
        tcp = TcpTransport(lambda data, peer: peers.append(peer.connection or 0),
                           limits=TcpLimits(idle_seconds=0.6))
        await tcp.listen("127.0.0.1", 0)
        (silent_r, silent_w), (bound_r, bound_w), (chatty_r, chatty_w) = [
            await asyncio.open_connection(*tcp.local) for _ in range(3)]
        bound_w.write(OPTIONS)  # say, a REGISTER: the registrar now relies on it
        await bound_w.drain()
        for _ in range(50):
            if peers:
                break
            await asyncio.sleep(0.02)
        tcp.in_use = lambda: set(peers)
        with structlog.testing.capture_logs() as logs:
            for _ in range(6):  # 1.2 s of keep-alives on the chatty one
                chatty_w.write(b"\r\n\r\n")
                await chatty_w.drain()
                await asyncio.sleep(0.2)
            tcp.sweep(asyncio.get_running_loop().time())
            silent = await closed_by_server(silent_r, 0.3)
            bound = await closed_by_server(bound_r, 0.1)
            chatty = await closed_by_server(chatty_r, 0.1)
        for writer in (silent_w, bound_w, chatty_w):
            writer.close()
        tcp.close()
        return silent, bound, chatty, logs

    silent, bound, chatty, logs = asyncio.run(scenario())
    assert (silent, bound, chatty) == (True, False, False)
    assert [e["count"] for e in logs if e["event"] == "tcp_idle_closed"] == [1]


def test_a_connection_that_never_sends_a_message_is_closed_at_the_message_deadline() -> None:
    async def scenario() -> tuple[bool, bool]:
        tcp = TcpTransport(lambda data, peer: None, limits=TcpLimits(message_seconds=0.5, idle_seconds=3600))
        await tcp.listen("127.0.0.1", 0)
        silent_r, silent_w = await asyncio.open_connection(*tcp.local)
        talking_r, talking_w = await asyncio.open_connection(*tcp.local)
        talking_w.write(OPTIONS)
        await talking_w.drain()
        await asyncio.sleep(0.2)
        # The transport's own sweeper runs once a second.
        silent = await closed_by_server(silent_r, 2.5)
        talking = await closed_by_server(talking_r, 0.1)
        for writer in (silent_w, talking_w):
            writer.close()
        tcp.close()
        return silent, talking

    assert asyncio.run(scenario()) == (True, False)


def test_partial_messages_of_all_connections_share_a_byte_budget() -> None:
    """300 connections each holding a 190 KB partial message pinned 50 MB:
    now the framer holds at most one usable message (64 KiB) per connection
    and all connections' partial messages together at most
    ``max_buffered_bytes``; the connection that takes the total past it is
    closed, the others keep theirs, and the hit is logged once."""

    async def scenario() -> tuple[list[bool], list[bytes], list[MutableMapping[str, Any]]]:
        received: list[bytes] = []
        tcp = TcpTransport(lambda data, peer: received.append(data),
                           limits=TcpLimits(max_buffered_bytes=100_000, message_seconds=30))
        await tcp.listen("127.0.0.1", 0)
        head = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 40000")
        partial = head + b"b" * (40_000 - len(head) - 1000)  # 39 KB held, a kilobyte short
        with structlog.testing.capture_logs() as logs:
            streams = [await asyncio.open_connection(*tcp.local, local_addr=(f"127.0.0.{n}", 0))
                       for n in (2, 3, 4, 5)]
            closed = []
            for reader, writer in streams:
                writer.write(partial)
                await writer.drain()
                closed.append(await closed_by_server(reader, 0.3))
        # The first two still finish their messages.
        for reader, writer in streams[:2]:
            writer.write(b"b" * (len(head) + 1000))
            await writer.drain()
        for _ in range(50):
            if len(received) == 2:
                break
            await asyncio.sleep(0.02)
        for _, writer in streams:
            writer.close()
        tcp.close()
        return closed, received, logs

    closed, received, logs = asyncio.run(scenario())
    assert closed == [False, False, True, True]
    whole = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 40000") + b"b" * 40_000
    assert received == [whole, whole]
    assert [e["event"] for e in logs if e["event"] == "tcp_buffer_budget_hit"] == ["tcp_buffer_budget_hit"]
