"""How many conference members one core mixes with steady pacing.

The PBX side (this process, pinned to CPU 0) runs a
:class:`pbx.media.endpoint.MediaEngine` and a
:class:`pbx.conference.bridge.ConferenceBridge` with N members in rooms of
``--room-size``: every member's stream decodes what it receives, the one
mixing tick mixes every room (numpy), and every stream encodes and sends
its own mix, 20 ms at a time. The phones (a separate process, pinned to
CPU 1) are one UDP socket: every 20 ms it sends each member a PCMU packet
of a tone (from the socket the PBX latches onto and answers to), and it
notes every packet the PBX sends with the kernel's arrival stamp
(SO_TIMESTAMPNS, so its own scheduling does not count). Per member
stream, the gap between consecutive packets is compared with 20 ms. A
level holds when the p99 of |gap - 20 ms| is at most 2 ms, no packet was
lost and the engine skipped no tick.

The smallest level is the baseline: what the machine's own scheduling
noise gives. CPU per member is the PBX process's CPU time ÷ (members ×
seconds), as a share of one core; the last column projects the members one
core carries at that cost.

    python bench/conference.py                            # 3, 30, 60, 120, 240 members, 8 s each
    python bench/conference.py --levels 90,180 --room-size 3 --seconds 20

Everything runs on 127.0.0.1 and ends by itself: each level takes
``--seconds`` + about 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import multiprocessing
import multiprocessing.connection
import socket
import struct
import sys
import time
from collections import defaultdict
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media_streams import HEADINGS, HOST, level_row, receive_stamped  # noqa: E402 (beside)
from rtp_timing import PERIOD, pacing, pin, run_on, stamped_socket  # noqa: E402
from pbx.conference.bridge import ConferenceBridge  # noqa: E402
from pbx.conference.room import Refusal  # noqa: E402
from pbx.media.codecs import Codec  # noqa: E402
from pbx.media.endpoint import MediaEngine  # noqa: E402
from pbx.media.ports import PortAllocator  # noqa: E402
from pbx.routing.conferences import Conference  # noqa: E402

HOST = "127.0.0.1"
_HEADER = struct.Struct("!BBHII")


def tone_frames(frequency: float) -> list[bytes]:
    """One second of a tone as 50 PCMU payloads."""
    linear = b"".join(struct.pack("=h", int(6000 * math.sin(2 * math.pi * frequency * n / 8000)))
                      for n in range(8000))
    encoded = Codec.PCMU.encode(linear)
    return [encoded[i:i + 160] for i in range(0, 8000, 160)]


def phones(conn: multiprocessing.connection.Connection) -> None:
    """Child process: talk to every member port every 20 ms and note when
    each of the PBX's packets arrives, until told to stop; then report."""
    pin(1)
    sock = stamped_socket(HOST)
    sock.setblocking(False)
    conn.send(sock.getsockname()[1])
    ports: list[int] = conn.recv()
    frames = tone_frames(700.0)
    arrivals: dict[int, list[tuple[int, int]]] = defaultdict(list)
    due, tick = time.monotonic(), 0
    while not conn.poll():
        if time.monotonic() >= due:
            payload = frames[tick % len(frames)]
            for index, port in enumerate(ports):
                header = _HEADER.pack(0x80, 0, tick & 0xFFFF, (tick * 160) & 0xFFFFFFFF, 0x10000 + index)
                sock.sendto(header + payload, (HOST, port))
            tick += 1
            due += PERIOD
            continue
        try:
            while True:
                receive_stamped(sock, arrivals)
        except BlockingIOError:
            pass
        time.sleep(max(0.0, min(0.002, due - time.monotonic())))
    conn.send(pacing(arrivals))


async def mix(members: int, room_size: int, seconds: float, conn: multiprocessing.connection.Connection,
              phones_port: int, first_port: int) -> tuple[float, int]:
    """Run ``members`` in rooms for ``seconds``; (CPU seconds used, late ticks)."""
    engine = MediaEngine(bind_host=HOST, ports=PortAllocator(first_port, first_port + 2 * members + 200))
    bridge = ConferenceBridge(engine)
    offer = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             f"m=audio {phones_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    sessions = []
    for index in range(members):
        room = Conference(key=f"room{index // room_size}", number="850", max_members=room_size)
        session = await engine.open_session()
        session.answer(offer)
        seat = bridge.enter(room, session, moderator=False, sounds={}, on_drop=lambda: None)
        if isinstance(seat, Refusal):
            raise RuntimeError(f"{room.key} refused a member: {seat.value}")
        sessions.append(session)
    conn.send([session.rtp_port for session in sessions])
    await asyncio.sleep(0.5)  # the phones are talking, the join tones are over
    engine.late_ticks = 0
    cpu_start = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu_start
    late = engine.late_ticks
    await engine.close()
    return cpu, late


def run_level(members: int, room_size: int, seconds: float, loop_kind: str, first_port: int) -> dict[str, float]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=phones, args=(child,), daemon=True)
    process.start()
    try:
        port = parent.recv()
        cpu, late = run_on(loop_kind, mix(members, room_size, seconds, parent, port, first_port))
        parent.send("stop")
        result: dict[str, float] = parent.recv()
    finally:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
    result.update(cpu=cpu, late=late)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description="conference members mixed with steady pacing")
    parser.add_argument("--levels", default="3,30,60,120,240", help="member counts; the first is the baseline")
    parser.add_argument("--room-size", type=int, default=3, help="members per room (the last room may be smaller)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--first-port", type=int, default=32000)
    args = parser.parse_args()
    if args.room_size < 2:
        parser.error("--room-size must be at least 2")
    if args.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            args.loop = "asyncio"
    pin(0)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"{args.seconds:g} s per level, rooms of {args.room_size}, loop {args.loop}, PBX CPU 0, phones CPU 1;"
          " holds: p99 |gap - 20 ms| <= 2 ms, no loss, no skipped tick")
    print(f"{'members':>7} {'rooms':>5} {HEADINGS.format('CPU/member')}")
    best = 0
    for members in (int(level) for level in args.levels.split(",")):
        r = run_level(members, args.room_size, args.seconds, args.loop, args.first_port)
        text, holds = level_row(r, members, args.seconds)
        best = members if holds else best
        print(f"{members:>7} {-(-members // args.room_size):>5} {text}")
    print(f"highest level that held: {best} members")
    return 0


if __name__ == "__main__":
    sys.exit(main())
