"""How many concurrent streams can play a prompt with steady pacing.

The PBX side (this process, pinned to CPU 0) opens N media sessions with
:class:`pbx.media.endpoint.MediaEngine`, negotiates each with an SDP offer
that points at the receiver, and plays the English welcome prompt in a
loop for ``--seconds``. The receiver (a separate process, pinned to CPU 1)
reads every packet on one UDP socket with the kernel's arrival stamp
(SO_TIMESTAMPNS, so the receiver's own scheduling does not count); afterwards,
per stream, the gap between consecutive packets (sequence numbers one
apart) is compared with 20 ms. A level holds when the 99th percentile of
|gap - 20 ms| is at most 2 ms, no packet was lost and the engine skipped
no tick.

The one-stream level is the baseline: on a machine shared with other work
its p99 shows how late the operating system alone wakes the two processes;
a level whose p99 is near the baseline's is limited by the machine, not by
the stream count.

CPU per stream is the sender process's CPU time over the run divided by
streams × seconds, shown as a percentage of one core; the last column
projects how many streams one core carries at that cost.

    python bench/media_streams.py                          # 1, 50 … 500 streams, 10 s each
    python bench/media_streams.py --levels 100,300 --seconds 20 --loop asyncio

Everything runs on 127.0.0.1 and ends by itself: each level takes
``--seconds`` + about 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import socket
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pbx.ivr.prompts import PromptLibrary  # noqa: E402
from pbx.media.endpoint import MediaEngine  # noqa: E402
from pbx.media.player import Prompt  # noqa: E402
from pbx.media.ports import PortAllocator  # noqa: E402
from rtp_timing import pacing, pin, read_stamped, stamped_socket  # noqa: E402

HOST = "127.0.0.1"


def receive_stamped(sock: socket.socket, arrivals: dict[int, list[tuple[int, int]]]) -> None:
    """One datagram from ``sock`` noted under its SSRC: (arrival ns, sequence)."""
    packet = read_stamped(sock)
    if packet is not None:
        _, arrival, sequence, ssrc = packet
        arrivals[ssrc].append((arrival, sequence))


def receiver(conn: multiprocessing.connection.Connection) -> None:
    """Child process: note every packet's arrival until told to stop, then
    report. Arrival times are the kernel's receive stamps (SO_TIMESTAMPNS),
    so how late this process itself gets the CPU does not count."""
    pin(1)
    sock = stamped_socket(HOST)
    sock.settimeout(0.2)
    conn.send(sock.getsockname()[1])
    arrivals: dict[int, list[tuple[int, int]]] = defaultdict(list)
    while not conn.poll():
        try:
            receive_stamped(sock, arrivals)
        except TimeoutError:
            continue
    conn.send(pacing(arrivals))


async def play(streams: int, seconds: float, receiver_port: int, first_port: int) -> tuple[float, int]:
    """Run ``streams`` sessions for ``seconds``; (CPU seconds used, late ticks)."""
    engine = MediaEngine(bind_host=HOST, ports=PortAllocator(first_port, first_port + 2 * streams + 200))
    audio = PromptLibrary().load("en", "welcome")
    loops = int(seconds / audio.seconds) + 2
    offer = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             f"m=audio {receiver_port} RTP/AVP 0\r\n")
    sessions = []
    for _ in range(streams):
        session = await engine.open_session()
        session.answer(offer)
        sessions.append(session)
    await asyncio.sleep(0.2)          # every socket bound before the clock starts counting
    engine.late_ticks = 0
    cpu_start = time.process_time()
    for session in sessions:
        session.play([Prompt(audio)] * loops)
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu_start
    late = engine.late_ticks
    await engine.close()
    return cpu, late


def run_level(streams: int, seconds: float, loop_kind: str, first_port: int) -> dict[str, float]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=receiver, args=(child,), daemon=True)
    process.start()
    try:
        port = parent.recv()
        if loop_kind == "uvloop":
            import uvloop
            cpu, late = uvloop.run(play(streams, seconds, port, first_port))
        else:
            cpu, late = asyncio.run(play(streams, seconds, port, first_port))
        time.sleep(0.3)
        parent.send("stop")
        result: dict[str, float] = parent.recv()
    finally:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
    result.update(cpu=cpu, late=late, offered=streams)
    return result


HEADINGS = (f"{'received':>9} {'lost':>5} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'late':>5} "
            "{:>10} " f"{'per core':>8}  holds")
"""The table's columns after the level's count; ``{}`` is the CPU column's name."""


def level_row(r: dict[str, float], count: int, seconds: float) -> tuple[str, bool]:
    """A level's row under :data:`HEADINGS`, and whether it held: p99 of
    |gap - 20 ms| at most 2 ms, no loss, no skipped tick, every stream heard."""
    share = r["cpu"] / (count * seconds)
    holds = r["p99"] <= 0.002 and r["lost"] == 0 and r["late"] == 0 and r["streams"] == count
    return (f"{int(r['packets']):>9} {int(r['lost']):>5} {r['p50'] * 1000:>7.2f} {r['p99'] * 1000:>7.2f} "
            f"{r['max'] * 1000:>7.2f} {int(r['late']):>5} {share * 100:>9.3f}% {int(1 / share) if share else 0:>8}"
            f"  {'yes' if holds else 'NO'}"), holds


def main() -> int:
    parser = argparse.ArgumentParser(description="concurrent paced media streams")
    parser.add_argument("--levels", default="1,50,100,200,300,400,500",
                        help="stream counts; 1 is the baseline: what the machine's own noise gives")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--first-port", type=int, default=30000)
    args = parser.parse_args()
    if args.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            args.loop = "asyncio"
    pin(0)
    print(f"{args.seconds:g} s per level, loop {args.loop}, sender CPU 0, receiver CPU 1; "
          "holds: p99 |gap - 20 ms| <= 2 ms, no loss, no skipped tick")
    print(f"{'streams':>7} {HEADINGS.format('CPU/stream')}")
    best = 0
    for streams in (int(level) for level in args.levels.split(",")):
        r = run_level(streams, args.seconds, args.loop, args.first_port)
        text, holds = level_row(r, streams, args.seconds)
        best = streams if holds else best
        print(f"{streams:>7} {text}")
    print(f"highest level that held: {best} streams")
    return 0


if __name__ == "__main__":
    sys.exit(main())
