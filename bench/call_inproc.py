"""Server CPU per call, in-process: no SIPp, no sockets, no waiting.

The server is the real one (``pbx.server.app.Server``: SIP endpoint, call
controller, routing, registrar, the CDR writer on SQLite, JSON logs at
level info to /dev/null), driven as in ``call_memory.py``: datagrams go
straight into the server, what it sends is answered as SIPp's
``call_uac.xml`` and ``call_uas.xml`` would, on an event loop whose clock
moves only when told. Each call is complete:

    caller: INVITE -> 407, ACK, INVITE with digest -> 100, 180, 200, ACK;
            BYE -> 200
    callee: INVITE -> 180, 200 with SDP; ACK; BYE from the PBX -> 200

and its CDR is written: the PBX answers a BYE once the call's row is
committed, so the writer's thread commits every call before the run ends
(the BYEs of 50 calls wait for it together, as under load). The clock moves
1 ms a call (1,000 calls/s); after the last call it moves 40 s, so every
transaction and call ends (timers J, K, L, M, H): that work counts too.

The phones run in the same process. So each run is followed by the phones
alone: what the server sent them is played back and they build, parse and
answer the same messages without a server. The server's share is the run
less that replay. CPU time is the process's (every thread: the loop, the
CDR writer). For a figure the machine's load does not change, count
instructions with callgrind: the bench marks each run and each replay with
a call callgrind is told to zero before and dump before, so start-up and
warm-up are left out and the bench reads the dumps itself:

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \\
        --zero-before=os_getppid --dump-before=os_getpgrp --separate-threads=yes \\
        python -P bench/call_inproc.py --runs 1 --calls 300 --callgrind /tmp/cg.out

With ``--separate-threads=yes`` only the thread that marks the run (the
event loop's) is counted, and its count repeats from run to run. Without
it the database writer's thread is counted too, but its share depends on
how the calls' writes fall into transactions ("writer batches"), which
follows the clock: under valgrind's slowdown its 5 ms gathering window
holds far fewer calls than on the real machine, so that count overstates
the writer. Its real share is the CPU time outside the loop's thread.

    python bench/call_inproc.py                       # 3 runs of 1,000 calls
    python bench/call_inproc.py --profile /tmp/call.prof   # cProfile one more run
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
for _path in (REPO_ROOT, REPO_ROOT / "bench"):  # this checkout's pbx, and the benches beside this file
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from call_memory import (CALLER, PID, SETTLE_SECONDS, BenchError, Phones, VirtualClockLoop,  # noqa: E402
                         Wire, quiet_stderr, settle, start_server)

from pbx import log as pbx_log  # noqa: E402
from pbx.server.app import Server  # noqa: E402
from pbx.sip.address import Peer  # noqa: E402
from pbx.sip.message import Request, Response  # noqa: E402
from pbx.sip.parser import parse_message  # noqa: E402

CALL_SPACING: Final = 0.001
"""Clock seconds between calls: 1,000 calls/s, the issue's aim."""
BATCH: Final = 50
"""Calls whose BYEs wait for the CDR writer together (its commits and the
server's timers run then)."""


@dataclass(frozen=True, slots=True)
class Cost:
    """What a run took: process CPU seconds, and instructions if counted."""

    cpu_seconds: float
    loop_seconds: float
    """The event loop's thread's CPU (the rest: the database writer's)."""
    instructions: int | None = None
    """Every thread's (only the loop's under ``--separate-threads=yes``)."""
    main_instructions: int | None = None
    """The event loop's thread alone (``--separate-threads=yes``)."""
    batches: int = 0
    """Transactions the database writer committed meanwhile: its thread's
    instructions depend on how the calls' writes fell into them."""


@dataclass(frozen=True, slots=True)
class RunResult:
    calls: int
    run: Cost
    """The whole run: server and phones."""
    phones: Cost
    """The phones alone, replaying the run."""

    def per_call(self, seconds: float) -> float:
        return 1e6 * seconds / self.calls

    @property
    def server_us(self) -> float:
        return self.per_call(self.run.cpu_seconds - self.phones.cpu_seconds)

    @property
    def loop_us(self) -> float:
        """The server's share of the event loop's thread."""
        return self.per_call(self.run.loop_seconds - self.phones.loop_seconds)

    @property
    def server_instructions(self) -> float | None:
        if self.run.instructions is None or self.phones.instructions is None:
            return None
        return (self.run.instructions - self.phones.instructions) / self.calls


class HangingUpPhones(Phones):
    """``call_memory``'s phones, remembering each call's dialog for its BYE:
    the To (with the PBX's tag) and the Contact of its 200."""

    dialog: tuple[str, str] = ("", "")

    def caller_request(self, n: int, method: str, uri: str, branch: str, to: str, cseq: int) -> bytes:
        if method == "ACK" and cseq == 2:  # the ACK of the 200: the dialog is up
            self.dialog = (uri, to)
        return super().caller_request(n, method, uri, branch, to, cseq)

    def bye(self, n: int) -> None:
        uri, to = self.dialog
        self.deliver(self.caller_request(n, "BYE", uri, f"z9hG4bK-{PID}-{n}-6", to, 3), CALLER)


class ReplayWire(Wire):
    """The wire, able to record what each look at it found and to play that
    back: the phones alone, without a server, do the same work again."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[list[bytes]] = []
        self.playback: Iterator[list[bytes]] | None = None

    def take(self, peer: Peer) -> list[Request | Response]:
        if self.playback is not None:
            mine = next(self.playback)
        else:
            mine = [data for dest, data in self.sent if dest.port == peer.port]
            self.sent = [(dest, data) for dest, data in self.sent if dest.port != peer.port]
            self.recorded.append(mine)
        return [parse_message(data) for data in mine]


class Bench:
    """One server and its phones; ``run`` makes complete calls."""

    def __init__(self, server: Server, phones: HangingUpPhones, wire: ReplayWire, dumps: str | None) -> None:
        self.server, self.phones, self.wire = server, phones, wire
        self.number = 0
        self.dumps = dumps
        """callgrind's output file, when counting instructions."""
        self.dumped = 0
        self.replaying = False
        """The phones alone: datagrams go nowhere, the wire plays back."""
        receive = server._on_data

        def deliver(data: bytes, source: Peer) -> None:
            if not self.replaying:
                receive(data, source)

        phones.deliver = deliver  # type: ignore[method-assign]

    async def finish(self, calls: int) -> None:
        """The last ``calls`` calls' BYEs: the PBX answers the caller and
        sends its BYE on once the CDR is durable, so the writer commits
        them (together, as under load), then the callee answers."""
        answered = 0
        while answered < calls:
            if not self.replaying:
                await settle(self.server)
            byes = self.phones.answer_byes()
            if not byes:
                raise BenchError(f"the PBX sent {answered} BYEs for {calls} calls")
            answered += byes
        if not self.replaying:
            await settle(self.server)
        oks = [m for m in self.wire.take(CALLER) if isinstance(m, Response) and m.status == 200]
        if len(oks) != calls:
            raise BenchError(f"{len(oks)} answers to {calls} BYEs")

    async def _calls(self, calls: int, profiler: cProfile.Profile | None) -> Cost:
        server, phones = self.server, self.phones
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        if self.dumps is not None:
            os.getppid()  # callgrind --zero-before=os_getppid: count from here
        cpu, loop_cpu, batches = time.process_time(), time.thread_time(), server.writer.stats().batches
        if profiler is not None:
            profiler.enable()
        pending = 0
        for i in range(calls):
            n = self.number
            self.number += 1
            phones.call(n)
            phones.bye(n)
            pending += 1
            loop.advance(CALL_SPACING)
            if pending == BATCH or i == calls - 1:
                await self.finish(pending)
                pending = 0
        if not self.replaying:
            loop.advance(SETTLE_SECONDS)
            await settle(server)
        if profiler is not None:
            profiler.disable()
        cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
        batches = server.writer.stats().batches - batches
        if self.dumps is None:
            return Cost(cpu, loop_cpu, batches=batches)
        os.getpgrp()  # callgrind --dump-before=os_getpgrp: this run's count
        self.dumped += 1
        total, main = callgrind_counts(f"{self.dumps}.{self.dumped}")
        return Cost(cpu, loop_cpu, total, main, batches)

    async def run(self, calls: int, profiler: cProfile.Profile | None = None) -> RunResult:
        """``calls`` complete calls, then the phones alone doing them again."""
        assert self.server.calls is not None
        self.wire.recorded = []
        whole = await self._calls(calls, profiler)
        self.wire.sent.clear()
        if self.server.calls.active:
            raise BenchError(f"{self.server.calls.active} calls still up after the run")
        self.wire.playback = iter(self.wire.recorded)
        self.number -= calls
        self.replaying = True
        try:
            phones = await self._calls(calls, None)
        finally:
            self.replaying = False
            self.wire.playback = None
        return RunResult(calls, whole, phones)


def callgrind_total(dump: Path) -> int:
    """Instructions in a callgrind dump (its ``totals:`` or ``summary:`` line)."""
    for line in dump.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise BenchError(f"no totals in {dump}")


def callgrind_counts(dump: str) -> tuple[int, int | None]:
    """(every thread's instructions, the main thread's) in the dump named
    ``dump``: one file, or one per thread (``dump-01`` the main thread)
    under ``--separate-threads=yes``."""
    path = Path(dump)
    if path.exists():
        return callgrind_total(path), None
    threads = sorted(path.parent.glob(path.name + "-*"))
    if not threads:
        raise BenchError(f"no callgrind dump {dump}")
    counts = {thread.name.rpartition("-")[2]: callgrind_total(thread) for thread in threads}
    return sum(counts.values()), counts.get("01")


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    wire = ReplayWire()
    server, phones = await start_server(workdir, args.callers, wire, HangingUpPhones)
    try:
        phones.register_callee()
        # Warm-up: HA1s, loggers, the SQL statement cache, interned strings.
        warm = Bench(server, phones, wire, None)
        if args.warmup:
            await warm.run(args.warmup)
        bench = Bench(server, phones, wire, args.callgrind)
        bench.number = warm.number
        print(f"{args.callers} callers, {args.calls} complete calls per run (INVITE, 407, ACK, INVITE with "
              "digest, 180, 200, ACK, BYE, 200; CDR written)")
        print("run | CPU µs/call | phones alone µs/call | server µs/call | of it the loop's thread | writer batches" + (
            " | instructions/call | phones alone | server | server's loop thread" if args.callgrind else ""))
        results: list[RunResult] = []
        for run in range(1, args.runs + 1):
            result = await bench.run(args.calls)
            results.append(result)
            line = (f"{run:>3} | {result.per_call(result.run.cpu_seconds):>11.1f} | "
                    f"{result.per_call(result.phones.cpu_seconds):>20.1f} | {result.server_us:>14.1f} | "
                    f"{result.loop_us:>23.1f} | {result.run.batches:>14}")
            if result.run.instructions is not None and result.phones.instructions is not None:
                line += (f" | {result.run.instructions / args.calls:>17,.0f} | "
                         f"{result.phones.instructions / args.calls:>12,.0f} | {result.server_instructions:>6,.0f}")
                # The phones run on the main thread too: the loop's own share.
                main, phones_main = result.run.main_instructions, result.phones.main_instructions
                if main is not None and phones_main is not None:
                    line += f" | {(main - phones_main) / args.calls:,.0f}"
            print(line)
        # Other processes only ever slow a run down: the best run is the
        # truest figure, the median shows the spread.
        print(f"server µs/call: best {min(r.server_us for r in results):.1f}, "
              f"median {statistics.median(r.server_us for r in results):.1f}; of it the loop's thread: "
              f"best {min(r.loop_us for r in results):.1f}, median {statistics.median(r.loop_us for r in results):.1f}")
        if args.profile:
            profiler = cProfile.Profile(time.thread_time)  # CPU: not the waits for the GIL
            await Bench(server, phones, wire, None).run(args.calls, profiler)
            profiler.dump_stats(args.profile)
            pstats.Stats(args.profile, stream=sys.stdout).sort_stats("tottime").print_stats(args.top)
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1000, help="complete calls per run (default 1000)")
    parser.add_argument("--callers", type=int, default=100, help="calling extensions (default 100)")
    parser.add_argument("--warmup", type=int, default=50, help="calls made before the first run (default 50)")
    parser.add_argument("--callgrind", default=None, metavar="OUT_FILE",
                        help="under valgrind --tool=callgrind --callgrind-out-file=OUT_FILE --zero-before=os_getppid "
                             "--dump-before=os_getpgrp: count each run's instructions from its dumps")
    parser.add_argument("--profile", default=None, help="cProfile one more run (main thread, CPU time) into this file")
    parser.add_argument("--top", type=int, default=40, help="functions shown from the profile (default 40)")
    args = parser.parse_args(argv)
    if min(args.runs, args.calls, args.callers) < 1 or args.warmup < 0:
        parser.error("--runs, --calls and --callers must be positive")
    pbx_log.configure(json=True, level="info")
    with tempfile.TemporaryDirectory(prefix="call-inproc-") as temp, quiet_stderr():
        with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
            runner.run(measure(args, Path(temp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
