"""How long a dialplan reload holds the server's event loop, seen from outside.

It writes a dialplan of N extensions (bench/make_users.py), starts one
`pbx serve` on it, and sends SIP OPTIONS to it one after another, every
10 ms, timing each answer (a request waits exactly as long as the loop is
held). Then, in turn:

1. **idle**: nothing happens for a few seconds;
2. **stray file**: a file that is not part of the plan is written in the
   plan's folder (as a database's WAL or a load tool's output would be);
   the server must not reload;
3. **reload**: one extension's name is changed in the plan; the server
   reloads (its log says ``dialplan_reloaded``).

For each phase it prints the server's CPU seconds and the slowest and 99th
percentile OPTIONS round trip; the server's own ``loop_lag`` lines, where it
writes them, are summarised too. The machine may be shared: figures are noisy.

    python bench/reload_stall.py                       # 20,000 extensions
    python bench/reload_stall.py --users 5000 --workdir /tmp/stall
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_users import dialplan_yaml, make_users  # noqa: E402
from procfs import cpu_ticks, group_members  # noqa: E402
from register_rate import BenchError, running_server  # noqa: E402

PROBE_EVERY = 0.01
PHASE_SECONDS = 4.0
RELOAD_TIMEOUT = 120.0


class Prober:
    """Sends OPTIONS in sequence and keeps each round trip, in seconds."""

    def __init__(self, port: int) -> None:
        self._server = ("127.0.0.1", port)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(5.0)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._times: list[float] = []
        self.lost = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sock.close()

    def take(self) -> list[float]:
        """The round trips since the last call."""
        with self._lock:
            times, self._times = self._times, []
        return times

    def _request(self, n: int) -> bytes:
        host, port = self._sock.getsockname()[:2]
        return (
            f"OPTIONS sip:{self._server[0]}:{self._server[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@{host}>;tag={n}\r\nTo: <sip:{self._server[0]}>\r\n"
            f"Call-ID: probe-{n}-{secrets.token_hex(4)}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            marker = f"CSeq: {n} OPTIONS".encode()
            sent = time.monotonic()
            self._sock.sendto(self._request(n), self._server)
            try:
                while marker not in self._sock.recv(65535):
                    pass  # a late answer to an earlier probe
            except OSError:
                self.lost += 1
                continue
            took = time.monotonic() - sent
            with self._lock:
                self._times.append(took)
            time.sleep(max(0.0, PROBE_EVERY - took))


@dataclass(frozen=True, slots=True, kw_only=True)
class Phase:
    name: str
    cpu_s: float
    seconds: float
    probes: int
    max_ms: float
    p99_ms: float
    reloaded: bool


def _p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(0.99 * len(ordered))) - 1] if ordered else 0.0


def _log_events(log: Path, name: str) -> list[dict[str, object]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if name in line and line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="reload-stall-"))
    workdir.mkdir(parents=True, exist_ok=True)
    plan = workdir / "plan.yaml"
    plan.write_text(dialplan_yaml(make_users(args.users)), encoding="utf-8")
    command = [sys.executable, "-m", "pbx"]
    log = workdir / "server.log"
    phases: list[Phase] = []
    with running_server(command, [], plan, f"sqlite:///{workdir / 'pbx.db'}", "udp:127.0.0.1:0", log) as (
            server, port), Prober(port) as prober:
        ticks_per_second = os.sysconf("SC_CLK_TCK")

        def phase(name: str, action: str) -> None:
            prober.take()
            before = cpu_ticks(group_members(server.pid))
            reloads = len(_log_events(log, "dialplan_reloaded"))
            start = time.monotonic()
            if action == "stray":
                (workdir / "stray.log").write_text(f"{time.time()}\n")
            elif action == "edit":
                first = plan.read_text(encoding="utf-8")
                plan.write_text(first.replace('name: "User ', 'name: "Reloaded user ', 1), encoding="utf-8")
            deadline = start + (RELOAD_TIMEOUT if action == "edit" else PHASE_SECONDS)
            while time.monotonic() < deadline:
                time.sleep(0.2)
                done = len(_log_events(log, "dialplan_reloaded")) > reloads
                if action == "edit" and done:
                    time.sleep(1.0)  # the apply and its aftermath
                    break
            if action != "edit":
                time.sleep(max(0.0, start + PHASE_SECONDS - time.monotonic()))
            seconds = time.monotonic() - start
            cpu = (cpu_ticks(group_members(server.pid)) - before) / ticks_per_second
            times = prober.take()
            phases.append(Phase(
                name=name, cpu_s=cpu, seconds=seconds, probes=len(times),
                max_ms=max(times, default=0.0) * 1000, p99_ms=_p99(times) * 1000,
                reloaded=len(_log_events(log, "dialplan_reloaded")) > reloads,
            ))

        time.sleep(1.0)  # start-up's aftermath
        phase("idle", "none")
        phase("stray file in the plan's folder", "stray")
        phase(f"reload of {args.users} extensions", "edit")
        lost = prober.lost
    print(f"{args.users} extensions; work files in {workdir}; the machine may be shared: figures are noisy")
    print("| phase | reloaded | server CPU s | wall s | OPTIONS answered | slowest ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for p in phases:
        print(f"| {p.name} | {'yes' if p.reloaded else 'no'} | {p.cpu_s:.2f} | {p.seconds:.1f} | {p.probes} "
              f"| {p.max_ms:.1f} | {p.p99_ms:.1f} |")
    lags = _log_events(log, '"loop_lag"')
    if lags:
        worst = max(float(str(e.get("max_ms", 0))) for e in lags)
        print(f"server loop_lag lines: {len(lags)}, largest max_ms {worst:.1f}")
    if lost:
        print(f"OPTIONS unanswered within 5 s: {lost}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000, help="extensions in the plan (default 20000)")
    parser.add_argument("--workdir", help="keep the plan, database and server log here")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        print(f"reload_stall: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
