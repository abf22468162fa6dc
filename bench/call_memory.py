"""Memory per concurrent call, in-process: no SIPp, no sockets, no waiting.

The server is the real one (``pbx.server.app.Server``: SIP endpoint, call
controller, registrar, the CDR writer on SQLite, security, presence), on an
event loop whose clock only moves when told to. Datagrams go straight into
``Server._on_data``; what it sends is caught at its UDP transport and
answered here, as SIPp's ``call_uac.xml`` and ``call_uas.xml`` would:

    caller: INVITE -> 407, ACK, INVITE with digest -> 100, 180, 200, ACK
    callee (registered first): INVITE -> 180, 200 with SDP; ACK

Each call is set up before the next starts, and the client keeps nothing
between calls, so what stays in the process is the server's. Stages:

    answered   N calls up, each just answered: its INVITE transactions still
               in RFC 6026's Accepted state (timers L and M, 64*T1)
    settled    the clock moved 40 s: those transactions ended; what an
               established call costs for the rest of its life
    ended      the caller sent BYE on every call, the clock moved 40 s
               again (LINGER, timer J/K): should be back at the baseline

(The concurrent-call ladder of ``call_rate.py`` holds 60 s calls, so about
half of its calls are "answered" and half "settled" at any time.)

Per stage: bytes per call by tracemalloc (the sum of every traced
allocation still alive, against the baseline taken after warm-up calls),
the top allocation sites, and the live objects per call by type (the
collector's objects and the str/bytes/int/float they hold). ``--rss``
instead runs without tracemalloc (whose own bookkeeping costs more than the
calls) and reports resident memory per call, comparable to ``call_rate.py``.

    python bench/call_memory.py                      # 2,000 calls, tracemalloc
    python bench/call_memory.py --calls 5000 --top 25 --frames 4
    python bench/call_memory.py --rss --calls 10000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO, TypeVar

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
for _path in (REPO_ROOT, REPO_ROOT / "bench"):  # this checkout's pbx, and make_users beside this file
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from make_users import DEFAULT_DOMAIN, User, write_users  # noqa: E402

from pbx import log as pbx_log  # noqa: E402
from pbx.routing.loader import load_dialplan  # noqa: E402
from pbx.server import gc_tuning  # noqa: E402
from pbx.server.app import Server  # noqa: E402
from pbx.sip import digest  # noqa: E402
from pbx.sip.address import Peer  # noqa: E402
from pbx.sip.message import Request, Response  # noqa: E402
from pbx.sip.parser import parse_message  # noqa: E402

CALLER: Final = Peer("udp", "127.0.0.1", 5071)
"""One SIPp caller process: every call from one socket."""
CALLEE: Final = Peer("udp", "127.0.0.1", 5072)
PID: Final = 4242
"""What SIPp's [pid] stands for in tags and Call-IDs."""
SETTLE_SECONDS: Final = 40.0
"""More than 64*T1 (32 s): timers L, M, J, H and the calls' LINGER."""
SDP_LINES: Final = (
    "v=0", "o={who} 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
    "m=audio {port} RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15", "a=sendrecv",
)  # fmt: skip


class BenchError(Exception):
    pass


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` stands still until ``advance``: timers
    (the server's transaction timer, its sweeps) fire only when the bench
    moves the clock past them, whatever the machine's load."""

    def __init__(self) -> None:
        self.virtual_now = 1000.0
        super().__init__()

    def time(self) -> float:
        return self.virtual_now

    def advance(self, seconds: float) -> None:
        self.virtual_now += seconds


def sdp(who: str, port: int) -> bytes:
    return ("\r\n".join(SDP_LINES).format(who=who, port=port) + "\r\n").encode()


def message(start: str, headers: list[str], body: bytes = b"") -> bytes:
    lines = [start, *headers]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def copied(request: Request, to_tag: str | None = None) -> list[str]:
    """SIPp's [last_Via:] [last_From:] [last_To:] [last_Call-ID:] [last_CSeq:]."""
    out = [f"Via: {value}" for name, value in request.headers if name == "via"]
    to = request.get("to") or ""
    out += [f"From: {request.get('from')}", f"To: {to};tag={to_tag}" if to_tag else f"To: {to}",
            f"Call-ID: {request.call_id}", f"CSeq: {request.get('cseq')}"]
    return out


@dataclass
class Wire:
    """What the server sent since the last look, parsed."""

    sent: list[tuple[Peer, bytes]] = field(default_factory=list)

    def send(self, data: bytes, dest: Peer) -> None:
        self.sent.append((dest, data))

    def take(self, peer: Peer) -> list[Request | Response]:
        mine = [parse_message(data) for dest, data in self.sent if dest.port == peer.port]
        self.sent = [(dest, data) for dest, data in self.sent if dest.port != peer.port]
        return mine


def final(messages: list[Request | Response], status: int) -> Response:
    for m in messages:
        if isinstance(m, Response) and m.status == status:
            return m
    raise BenchError(f"expected a {status}, got {[getattr(m, 'status', getattr(m, 'method', '?')) for m in messages]}")


def request_of(messages: list[Request | Response], method: str) -> Request:
    for m in messages:
        if isinstance(m, Request) and m.method == method:
            return m
    raise BenchError(f"expected a {method}, got {[getattr(m, 'status', getattr(m, 'method', '?')) for m in messages]}")


class Phones:
    """SIPp's caller and callee, one call at a time, keeping nothing."""

    def __init__(self, server: Server, wire: Wire, callers: list[User], callee: User, address: str) -> None:
        self.server, self.wire, self.callers, self.callee = server, wire, callers, callee
        self.address = address
        self.uri = f"sip:{callee.extension}@{address}"

    def deliver(self, data: bytes, source: Peer) -> None:
        self.server._on_data(data, source)

    def register_callee(self) -> None:
        user, domain = self.callee, DEFAULT_DOMAIN

        def register(cseq: int, authorization: str | None) -> bytes:
            return message(f"REGISTER sip:{self.address} SIP/2.0", [
                f"Via: SIP/2.0/UDP {CALLEE.host}:{CALLEE.port};branch=z9hG4bK-reg-{cseq};rport",
                "Max-Forwards: 70", f"From: <sip:{user.extension}@{domain}>;tag=reg{PID}",
                f"To: <sip:{user.extension}@{domain}>", f"Call-ID: reg-{PID}@127.0.0.1", f"CSeq: {cseq} REGISTER",
                f"Contact: <sip:{user.extension}@{CALLEE.host}:{CALLEE.port};transport=UDP>", "Expires: 3600",
                *([f"Authorization: {authorization}"] if authorization else []),
            ])  # fmt: skip

        self.deliver(register(1, None), CALLEE)
        challenge = final(self.wire.take(CALLEE), 401)
        value = digest.choose_challenge(challenge.get_all("www-authenticate"))
        if value is None:
            raise BenchError("no usable challenge in the 401")
        authorization = digest.answer_challenge(value, username=user.extension, password=user.password,
                                                method="REGISTER", uri=f"sip:{self.address}", cnonce="c0ffee", nc=1)
        self.deliver(register(2, authorization), CALLEE)
        final(self.wire.take(CALLEE), 200)

    def call(self, n: int) -> None:
        """Call number ``n``: set up and answered, both sides ACKed."""
        user = self.callers[n % len(self.callers)]
        call_id, tag = f"{n}-{PID}@127.0.0.1", f"{PID}SIPpTag00{n}"
        offer = sdp("caller", 6000 + 2 * (n % 1000))

        def invite(cseq: int, branch: str, authorization: str | None) -> bytes:
            return message(f"INVITE {self.uri} SIP/2.0", [
                f"Via: SIP/2.0/UDP {CALLER.host}:{CALLER.port};branch={branch};rport", "Max-Forwards: 70",
                f'From: "Caller {user.extension}" <sip:{user.extension}@{DEFAULT_DOMAIN}>;tag={tag}',
                f"To: <sip:{self.callee.extension}@{DEFAULT_DOMAIN}>", f"Call-ID: {call_id}", f"CSeq: {cseq} INVITE",
                f"Contact: <sip:{user.extension}@{CALLER.host}:{CALLER.port};transport=UDP>",
                *([f"Proxy-Authorization: {authorization}"] if authorization else []),
                "User-Agent: SIPp call_uac",
            ], offer)  # fmt: skip

        first_branch = f"z9hG4bK-{PID}-{n}-0"
        self.deliver(invite(1, first_branch, None), CALLER)
        challenge = final(self.wire.take(CALLER), 407)
        self.deliver(self.caller_request(n, "ACK", self.uri, first_branch, challenge.get("to") or "", 1), CALLER)
        value = digest.choose_challenge(challenge.get_all("proxy-authenticate"))
        if value is None:
            raise BenchError("no usable challenge in the 407")
        authorization = digest.answer_challenge(value, username=user.extension, password=user.password,
                                                method="INVITE", uri=self.uri, cnonce=f"{n:08x}", nc=1)
        self.deliver(invite(2, f"z9hG4bK-{PID}-{n}-2", authorization), CALLER)
        b_invite = request_of(self.wire.take(CALLEE), "INVITE")
        callee_tag = f"{PID}SIPpTag01{n}"
        contact = f"Contact: <sip:{CALLEE.host}:{CALLEE.port};transport=UDP>"
        self.deliver(message("SIP/2.0 180 Ringing", [*copied(b_invite, callee_tag), contact]), CALLEE)
        self.deliver(message("SIP/2.0 200 OK", [*copied(b_invite, callee_tag), contact],
                             sdp("callee", 7000 + 2 * (n % 1000))), CALLEE)
        request_of(self.wire.take(CALLEE), "ACK")
        ok = final(self.wire.take(CALLER), 200)
        self.deliver(self.caller_request(n, "ACK", _uri(ok.get("contact") or ""), f"z9hG4bK-{PID}-{n}-4",
                                         ok.get("to") or "", 2), CALLER)

    def caller_request(self, n: int, method: str, uri: str, branch: str, to: str, cseq: int) -> bytes:
        """An ACK or BYE from the caller of call ``n``, in SIPp's words."""
        user = self.callers[n % len(self.callers)]
        return message(f"{method} {uri} SIP/2.0", [
            f"Via: SIP/2.0/UDP {CALLER.host}:{CALLER.port};branch={branch};rport", "Max-Forwards: 70",
            f'From: "Caller {user.extension}" <sip:{user.extension}@{DEFAULT_DOMAIN}>;tag={PID}SIPpTag00{n}',
            f"To: {to}", f"Call-ID: {n}-{PID}@127.0.0.1", f"CSeq: {cseq} {method}",
        ])  # fmt: skip

    def hang_up(self, n: int, pbx_tag: str, target: str) -> None:
        """The caller's BYE on call ``n``; the callee answers the PBX's BYE."""
        to = f"<sip:{self.callee.extension}@{DEFAULT_DOMAIN}>;tag={pbx_tag}"
        self.deliver(self.caller_request(n, "BYE", target, f"z9hG4bK-{PID}-{n}-6", to, 3), CALLER)

    def answer_byes(self) -> int:
        """The callee's 200 to every BYE the PBX sent it."""
        byes = [m for m in self.wire.take(CALLEE) if isinstance(m, Request) and m.method == "BYE"]
        for bye in byes:
            self.deliver(message("SIP/2.0 200 OK", copied(bye)), CALLEE)
        return len(byes)


def _uri(contact: str) -> str:
    start, end = contact.find("<"), contact.find(">")
    return contact[start + 1:end] if start >= 0 else contact


# ---------------------------------------------------------------- measuring


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def census() -> Counter[str]:
    """Live objects by type: every object the collector tracks, and the
    untracked ones they refer to (str, bytes, int, float ...), each once."""
    tracked = gc.get_objects()
    # Made after the list, so neither is in it (the set of ids would count
    # as thousands of ints).
    counts: Counter[str] = Counter()
    seen: set[int] = set()
    for obj in tracked:
        seen.add(id(obj))
    for obj in tracked:
        counts[type(obj).__qualname__] += 1
        for ref in gc.get_referents(obj):
            if not gc.is_tracked(ref) and id(ref) not in seen:
                seen.add(id(ref))
                counts[type(ref).__qualname__] += 1
    del tracked
    return counts


@dataclass
class Stage:
    name: str
    snapshot_path: Path | None
    objects: Counter[str] | None
    rss: int

    @property
    def snapshot(self) -> tracemalloc.Snapshot | None:
        return None if self.snapshot_path is None else tracemalloc.Snapshot.load(str(self.snapshot_path))


_IGNORED: Final = (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<unknown>"))


def traced_total(snapshot: tracemalloc.Snapshot) -> int:
    return sum(stat.size for stat in snapshot.statistics("filename"))


def report(stages: list[Stage], baseline: Stage, calls: int, top: int, frames: int, out: TextIO) -> None:
    print(f"\n{calls} calls; figures per call, against the baseline taken after warm-up", file=out)
    base_snapshot = baseline.snapshot
    snapshots = [stage.snapshot for stage in stages]
    base_objects = sum(baseline.objects.values()) if baseline.objects is not None else None
    print("stage     | traced bytes/call | objects/call | RSS bytes/call"
          + (" (inflated by tracemalloc's own records)" if base_snapshot is not None else ""), file=out)
    for stage, snapshot in zip(stages, snapshots):
        traced = "-" if snapshot is None or base_snapshot is None else \
            f"{(traced_total(snapshot) - traced_total(base_snapshot)) / calls:,.0f}"
        objects = "-" if stage.objects is None or base_objects is None else \
            f"{(sum(stage.objects.values()) - base_objects) / calls:.1f}"
        print(f"{stage.name:<9} | {traced:>17} | {objects:>12} | {(stage.rss - baseline.rss) / calls:>14,.0f}",
              file=out)
    for stage, snapshot in zip(stages, snapshots):
        if snapshot is not None and base_snapshot is not None:
            key = "traceback" if frames > 1 else "lineno"
            print(f"\n{stage.name}: top allocation sites, bytes per call (blocks per call)", file=out)
            for stat in snapshot.compare_to(base_snapshot, key)[:top]:
                if stat.size_diff <= 0:
                    break
                where = [line.strip() for line in stat.traceback.format(limit=frames, most_recent_first=True)
                         if line.startswith("  File")]
                site = " <- ".join(_short(line) for line in where)
                print(f"  {stat.size_diff / calls:>7,.0f} B {stat.count_diff / calls:>6.2f}  {site}", file=out)
        if stage.objects is not None and baseline.objects is not None:
            before = baseline.objects
            diff = Counter({name: count - before.get(name, 0) for name, count in stage.objects.items()})
            shown = [(name, count) for name, count in diff.most_common(top) if count > 0]
            print(f"\n{stage.name}: live objects per call by type", file=out)
            print("  " + ", ".join(f"{name} {count / calls:.2f}" for name, count in shown), file=out)


def _short(line: str) -> str:
    """``File "/…/pbx/sip/parser.py", line 138`` -> ``pbx/sip/parser.py:138``."""
    path, _, number = line.removeprefix('File "').partition('", line ')
    root = str(REPO_ROOT) + os.sep
    return f"{path.removeprefix(root)}:{number}"


# ---------------------------------------------------------------- running


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """The server's log lines (JSON, level info, as `pbx serve` writes them)
    go to /dev/null: written, so their cost is real, but not shown."""
    saved = sys.stderr
    # Left open: loggers made meanwhile keep writing to it (a collection's
    # log line at exit).
    sys.stderr = open(os.devnull, "w")
    try:
        yield
    finally:
        sys.stderr = saved


async def settle(server: Server) -> None:
    """Let due timers, the CDR writer's commits and their callbacks run,
    until a round submits nothing new to the writer."""
    while True:
        before = server.writer.stats().submitted
        for _ in range(20):
            await asyncio.sleep(0)
        if not await asyncio.to_thread(server.writer.flush, 120.0):
            raise BenchError("the CDR writer did not catch up in 120 s")
        for _ in range(20):  # its commits' callbacks, through call_soon_threadsafe
            await asyncio.sleep(0)
        if server.writer.stats().submitted == before:
            return


PhonesT = TypeVar("PhonesT", bound=Phones)


async def start_server(workdir: Path, callers: int, wire: Wire, phones: type[PhonesT]) -> tuple[Server, PhonesT]:
    """The server on SQLite in ``workdir`` with ``callers`` calling
    extensions and one callee, as ``pbx serve`` starts it; what it sends
    goes onto ``wire``; and ``phones`` to call through it."""
    dialplan = workdir / "dialplan.yaml"
    users = write_users(callers + 1, dialplan, workdir / "users.csv")
    with gc_tuning.paused():
        plan = load_dialplan(dialplan)
    server = Server(plan, [("udp", "127.0.0.1", 0)], f"sqlite:///{workdir / 'pbx.sqlite3'}")
    await server.start()
    gc_tuning.freeze_survivors()
    gc_tuning.tune()
    server.udp[0].send = wire.send  # type: ignore[method-assign]
    host, port = server.udp[0].local
    return server, phones(server, wire, users[1:], users[0], f"{host}:{port}")


async def measure(args: argparse.Namespace, workdir: Path, out: TextIO) -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualClockLoop)
    wire = Wire()
    server, phones = await start_server(workdir, args.callers, wire, Phones)
    try:
        phones.register_callee()
        # Warm-up: the first calls fill caches (HA1s, loggers, the SQL
        # statement cache, interned strings) that later calls share.
        number = 0
        for _ in range(args.warmup):
            phones.call(number)
            number += 1
        await settle(server)
        hang_up_all(server, phones, range(0, number))
        await settle(server)
        while phones.answer_byes():
            await settle(server)
        loop.advance(SETTLE_SECONDS)
        await settle(server)
        if server.calls is not None and server.calls.active:
            raise BenchError(f"{server.calls.active} warm-up calls still up")
        wire.sent.clear()

        stages: list[Stage] = []

        def take(name: str) -> Stage:
            gc.collect()
            size = rss()
            # The census first: a snapshot is made of many tuples, which it
            # would count; snapshots wait on disk for the report. The server
            # freezes what survives each collection, and gc.get_objects does
            # not list frozen objects: thawed for the count (start-up's
            # objects too, in the baseline as in every stage).
            with gc_tuning.thawed():
                objects = census() if args.census else None
            gc.collect()
            path = None
            if args.trace:
                path = workdir / f"{name}.snapshot"
                tracemalloc.take_snapshot().filter_traces(_IGNORED).dump(str(path))
            print(f"{name}: {state(server)}", file=out)
            return Stage(name, path, objects, size)

        if args.trace:
            tracemalloc.start(args.frames)
        baseline = take("baseline")
        first = number
        started = time.perf_counter()
        for _ in range(args.calls):
            phones.call(number)
            number += 1
        placed = time.perf_counter() - started
        await settle(server)
        wire.sent.clear()
        up = server.calls.active if server.calls is not None else 0
        if up != args.calls:
            raise BenchError(f"{up} calls up, expected {args.calls}")
        stages.append(take("answered"))
        loop.advance(SETTLE_SECONDS)
        await settle(server)
        wire.sent.clear()
        stages.append(take("settled"))
        hang_up_all(server, phones, range(first, number))
        await settle(server)
        while phones.answer_byes():
            await settle(server)
        loop.advance(SETTLE_SECONDS)
        await settle(server)
        wire.sent.clear()
        stages.append(take("ended"))
        if args.trace:
            tracemalloc.stop()
        print(f"set-up of {args.calls} calls took {placed:.1f} s (the phones' side included"
              f"{', under tracemalloc' if args.trace else ''})", file=out)
        report(stages, baseline, args.calls, args.top, args.frames, out)
    finally:
        await server.stop()


def state(server: Server) -> str:
    """What the server holds, by count: calls, its indexes, transactions, CDR rows open."""
    calls = server.calls
    assert calls is not None
    writer = server.writer.stats()
    return (f"calls up {calls.active}, dialogs {len(calls.sessions)}, transaction keys {len(calls.by_key)}, "
            f"transactions {len(server.endpoint.transactions)}, CDR rows open {server.cdr.writer.open_calls}, "
            f"writes queued {writer.queued}")


def hang_up_all(server: Server, phones: Phones, numbers: range) -> None:
    """BYE from every caller, with the PBX's tag and Contact of its dialog."""
    assert server.calls is not None
    tags = {call_id: tag for (call_id, tag) in server.calls.sessions}
    target = f"sip:{phones.address}"
    for n in numbers:
        phones.hang_up(n, tags[f"{n}-{PID}@127.0.0.1"], target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="concurrent calls to set up (default 2000)")
    parser.add_argument("--callers", type=int, default=100, help="calling extensions (default 100)")
    parser.add_argument("--warmup", type=int, default=50, help="calls made and ended before the baseline")
    parser.add_argument("--top", type=int, default=15, help="allocation sites and types shown per stage")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc frames per site (more: slower)")
    parser.add_argument("--rss", action="store_true", help="no tracemalloc: resident memory per call only")
    parser.add_argument("--no-census", dest="census", action="store_false", help="skip the objects-by-type count")
    args = parser.parse_args(argv)
    args.trace = not args.rss
    if min(args.calls, args.callers, args.frames) < 1 or args.warmup < 0:
        parser.error("--calls, --callers and --frames must be positive")
    pbx_log.configure(json=True, level="info")
    out = sys.stdout
    with tempfile.TemporaryDirectory(prefix="call-memory-") as temp, quiet_stderr():
        with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
            runner.run(measure(args, Path(temp), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
