"""How many relayed (recorded) calls one core carries with steady pacing.

The PBX side (this process, pinned to CPU 0) anchors N calls with
:class:`pbx.media.anchor.MediaAnchor`, exactly as ``pbx serve`` does for a
recorded call: two RTP ports per call, every packet relayed at once with
its SSRC, sequence and timestamp rewritten, each side decoded and written
to a stereo WAV per call by the writer thread (``--no-record``: relay
only; ``--srtp``: the caller's leg SRTP, decrypted and re-encrypted by the
relay, the callee's plain: an SRTP bridge).

The phones (a second process, pinned to CPU 1) are two UDP sockets: "A"
sends every call's caller packets, "B" every callee's, one per call and
side every 20 ms on a clock computed from the start, and both read what
the relay sends back with the kernel's arrival stamp (SO_TIMESTAMPNS, so
the phones' own scheduling does not count). Two measures:

- **pacing**, as a phone hears it: per relayed stream, the gap between
  consecutive packets (sequence numbers one apart) against 20 ms (p99 of
  |gap - 20 ms|). The relay forwards on arrival, so this includes the
  phones' own sending jitter (a Python sender on a shared machine); the
  one-call level is the baseline of that;
- **what the relay adds**: each payload starts with the phone's send time,
  so arrival minus send is the relay's delay; p99 of |delay - median delay|
  is the jitter the relay itself adds.

A level holds when the relay adds at most 2 ms at p99 (so a phone sending
at 20 ± x ms is heard at 20 ± x + 2 ms at worst) and no packet was lost. CPU per call is
the PBX process's CPU time (the writer thread included) over calls ×
seconds, as a share of one core; the last column projects the calls one
core carries at that cost.

    python bench/relay.py                            # 1, 25 … 200 calls, 10 s each
    python bench/relay.py --levels 50,100 --seconds 20 --no-record

Everything runs on 127.0.0.1 and ends by itself; recordings go to a
temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import secrets
import selectors
import socket
import struct
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pbx.media.anchor import MediaAnchor  # noqa: E402
from pbx.media.endpoint import MediaEngine  # noqa: E402
from pbx.media.ports import PortAllocator  # noqa: E402
from pbx.media.sdes import Crypto, SrtpKeys, Suite, offered_cryptos  # noqa: E402
from pbx.media.sdp import parse_sdp  # noqa: E402
from pbx.media.srtp import SrtpContext  # noqa: E402
from pbx.recording.policy import CallRecording, RecordingMode  # noqa: E402
from pbx.recording.writer import RecordingWriter  # noqa: E402

from rtp_timing import PERIOD, pacing, pin, read_stamped, run_on, stamped_socket, usable_loop  # noqa: E402

HOST = "127.0.0.1"
_HEADER = struct.Struct("!BBHII")
_SENT = struct.Struct("!q")
"""The phone's send time (ns), first in the payload: the relay passes payloads on untouched."""


def _socket() -> socket.socket:
    sock = stamped_socket(HOST)
    sock.setblocking(False)
    return sock


def phones(conn: multiprocessing.connection.Connection) -> None:
    """Child process: both sides of every call, sending and timing."""
    pin(1)
    side_a, side_b = _socket(), _socket()
    conn.send((side_a.getsockname()[1], side_b.getsockname()[1]))
    ports: list[tuple[int, int]] = conn.recv()          # each call's anchor (A port, B port)
    keys: list[SrtpKeys | None] = conn.recv()            # each caller's SRTP keys (--srtp), else None
    seconds: float = conn.recv()
    contexts = [SrtpContext(k) if k is not None else None for k in keys]
    by_ssrc: dict[int, SrtpContext] = {}
    payload = b"\xd5" * (160 - _SENT.size)
    selector = selectors.DefaultSelector()
    selector.register(side_a, selectors.EVENT_READ)
    selector.register(side_b, selectors.EVENT_READ)
    arrivals: dict[int, list[tuple[int, int]]] = defaultdict(list)
    delays: list[int] = []
    start = time.perf_counter()
    ticks = int(seconds / PERIOD)
    for tick in range(ticks + 25):                     # the last 0.5 s: drain only
        if tick < ticks:
            for index, (a_port, b_port) in enumerate(ports):
                header_a = _HEADER.pack(0x80, 8, tick & 0xFFFF, tick * 160 & 0xFFFFFFFF, 0x10000 + index)
                header_b = _HEADER.pack(0x80, 8, tick & 0xFFFF, tick * 160 & 0xFFFFFFFF, 0x20000 + index)
                packet_a = header_a + _SENT.pack(time.time_ns()) + payload
                context = contexts[index]
                side_a.sendto(context.protect(packet_a) if context is not None else packet_a, (HOST, a_port))
                side_b.sendto(header_b + _SENT.pack(time.time_ns()) + payload, (HOST, b_port))
        due = start + (tick + 1) * PERIOD
        while (left := due - time.perf_counter()) > 0:
            for key, _ in selector.select(left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                while True:
                    try:
                        packet = read_stamped(sock)
                    except BlockingIOError:
                        break
                    if packet is None:
                        continue
                    data, arrival, sequence, ssrc = packet
                    if sock is side_a and contexts[0] is not None:
                        data = _decrypt(data, ssrc, by_ssrc, contexts)
                        if not data:
                            continue
                    arrivals[ssrc].append((arrival, sequence))
                    delays.append(arrival - _SENT.unpack_from(data, 12)[0])
    result = pacing(arrivals)
    delays.sort()
    if delays:
        median = delays[len(delays) // 2]
        spread = sorted(abs(d - median) for d in delays)
        result.update(delay_p50=median / 1e9, delay_p99=delays[int(len(delays) * 0.99)] / 1e9,
                      added_p99=spread[int(len(spread) * 0.99)] / 1e9)
    conn.send(result)


def _decrypt(data: bytes, ssrc: int, by_ssrc: dict[int, SrtpContext], contexts: list[SrtpContext | None]) -> bytes:
    """An SRTP packet to the caller, decrypted with its call's context (found
    once per stream by trying them: the anchor's SSRCs are its own)."""
    context = by_ssrc.get(ssrc)
    if context is not None:
        return context.unprotect(data) or b""
    for candidate in contexts:
        if candidate is not None and candidate not in by_ssrc.values():
            clear = candidate.unprotect(data)
            if clear is not None:
                by_ssrc[ssrc] = candidate
                return clear
    return b""


async def relay(calls: int, seconds: float, conn: multiprocessing.connection.Connection, first_port: int,
                record: bool, folder: Path, srtp: bool) -> tuple[float, int]:
    """Anchor ``calls`` calls between the phones' two sockets; (CPU s, late ticks)."""
    a_port, b_port = conn.recv()
    engine = MediaEngine(bind_host=HOST, ports=PortAllocator(first_port, first_port + 4 * calls + 400))
    writer = RecordingWriter(folder, retention_days=0, max_bytes=0) if record else None
    mode = RecordingMode.ALWAYS if record else RecordingMode.NEVER
    anchors = []
    keys: list[SrtpKeys | None] = []
    for index in range(calls):
        anchor = MediaAnchor(engine, call_uuid=f"{index:032x}", recording=CallRecording(mode=mode, announce=False),
                             writer=writer, prompts=None)
        if srtp:
            # The caller offers SDES keys (as over TLS); the anchor answers with its own.
            mine = Crypto(1, Suite.AES_CM_128_HMAC_SHA1_80, secrets.token_bytes(30))
            answer = parse_sdp(anchor.answer_a(_offer(a_port, mine), "optional"))
            theirs = offered_cryptos(answer.media[0].attributes)[0]
            keys.append(SrtpKeys(mine.suite, send=mine.material, receive=theirs.material))
        else:
            anchor.answer_a(_offer(a_port), "none")
            keys.append(None)
        anchor.offer_b("none")
        anchor.accept_b(_offer(b_port))
        anchor.start()
        anchors.append(anchor)
    await asyncio.sleep(0.3)          # every socket adopted before the phones start
    conn.send([(a.ports[0], a.ports[1]) for a in anchors])
    conn.send(keys)
    conn.send(seconds)
    engine.late_ticks = 0
    cpu_start = time.process_time()
    await asyncio.sleep(seconds + 0.3)
    for anchor in anchors:
        anchor.close()
    if writer is not None:
        await asyncio.to_thread(writer.stop)
    cpu = time.process_time() - cpu_start
    await engine.close()
    return cpu, engine.late_ticks


def _offer(port: int, crypto: Crypto | None = None) -> bytes:
    keys = f"a=crypto:{crypto.value()}\r\n" if crypto is not None else ""
    return (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} {'RTP/SAVP' if crypto else 'RTP/AVP'} 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\n{keys}").encode()


def run_level(calls: int, seconds: float, loop_kind: str, first_port: int, record: bool,
              srtp: bool) -> dict[str, float]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=phones, args=(child,), daemon=True)
    process.start()
    try:
        with tempfile.TemporaryDirectory(prefix="relay-bench-") as folder:
            work = relay(calls, seconds, parent, first_port, record, Path(folder), srtp)
            cpu, late = run_on(loop_kind, work)
        result: dict[str, float] = parent.recv()
    finally:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
    result.update(cpu=cpu, late=late)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description="relayed (recorded) calls with steady pacing")
    parser.add_argument("--levels", default="1,25,50,100,150,200",
                        help="call counts; 1 is the baseline: what the machine and the phones' sender give")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--first-port", type=int, default=26000)
    parser.add_argument("--no-record", dest="record", action="store_false", help="relay only, write no files")
    parser.add_argument("--srtp", action="store_true",
                        help="the caller's leg SRTP (SDES, AES_CM_128_HMAC_SHA1_80), the callee's plain: an SRTP bridge")
    args = parser.parse_args()
    args.loop = usable_loop(args.loop)
    pin(0)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"{args.seconds:g} s per level, loop {args.loop}, {'recorded' if args.record else 'relay only'}"
          f"{', caller leg SRTP' if args.srtp else ''}, "
          "PBX CPU 0, phones CPU 1; holds: the relay adds <= 2 ms at p99, no loss")
    print(f"{'calls':>5} {'streams':>7} {'received':>9} {'lost':>5} {'gap p50':>7} {'gap p99':>7} "
          f"{'delay p50':>9} {'delay p99':>9} {'added p99':>9} {'CPU/call':>9} {'per core':>8}  holds  (ms)")
    best = 0
    for calls in (int(level) for level in args.levels.split(",")):
        r = run_level(calls, args.seconds, args.loop, args.first_port, args.record, args.srtp)
        share = r["cpu"] / (calls * args.seconds)
        holds = r.get("added_p99", 1.0) <= 0.002 and r["lost"] == 0 and r["streams"] == 2 * calls
        best = calls if holds else best
        print(f"{calls:>5} {int(r['streams']):>7} {int(r['packets']):>9} {int(r['lost']):>5} {r['p50'] * 1000:>7.2f} "
              f"{r['p99'] * 1000:>7.2f} {r.get('delay_p50', 0) * 1000:>9.2f} {r.get('delay_p99', 0) * 1000:>9.2f} "
              f"{r.get('added_p99', 0) * 1000:>9.2f} {share * 100:>8.3f}% "
              f"{int(1 / share) if share else 0:>8}  {'yes' if holds else 'NO'}")
    print(f"highest level that held: {best} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
