"""Highest rate of authenticated REGISTERs one `pbx serve` sustains.

Starts one server on 127.0.0.1 (free port, fresh SQLite database, a generated
dialplan of --users extensions), then drives it with SIPp and
sipp-scenarios/register_auth.xml at a ladder of offered rates.  One SIPp
"call" is one authenticated registration: REGISTER, 401, REGISTER with
digest credentials, 200.

A step COUNTS when, over its whole --duration:
  - SIPp completed every exchange it was asked for and exited 0;
  - no exchange failed;
  - retransmissions were at most 0.1 % of the REGISTERs sent;
  - the mean response time (first REGISTER to 200) was at most 100 ms;
  - the achieved rate (successful / elapsed) was at least 97 % of the offer.
The ladder stops at the first step that does not count; the result is the
highest step that did.

While a step runs, the server's CPU (utime+stime from /proc/PID/stat, summed
over its process group) and resident memory (VmRSS) are sampled, and so is
SIPp's CPU: SIPp is single-threaded, and near 100 % of a core it, not the
server, is what limits the rate.  The growth of the kernel's UDP
receive-buffer errors is shown too: those lost datagrams come back as
retransmissions.

    python bench/register_rate.py --rates 500,1000,2000 --duration 30
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, TextIO

from loop_lag_log import LagLog
from make_users import write_users
from procfs import cpu_ticks, group_members, rss_bytes

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
SCENARIO: Final = REPO_ROOT / "sipp-scenarios" / "register_auth.xml"
DEFAULT_RATES: Final = (500, 1000, 2000, 3000, 4000, 5000, 6000)
REQUESTS_PER_CALL: Final = 2  # two REGISTERs per authenticated registration

MAX_RETRANS_FRACTION: Final = 0.001
MAX_MEAN_RESPONSE_MS: Final = 100.0
MIN_ACHIEVED_FRACTION: Final = 0.97
SIPP_SATURATED_CPU: Final = 90.0  # % of one core

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 10.0


class BenchError(RuntimeError):
    """The benchmark could not run (not: the server was too slow)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One rung of the ladder, as measured."""

    offered: int
    calls: int
    sipp_exit: int
    successful: int
    failed: int
    retransmissions: int
    elapsed_s: float
    achieved: float
    retrans_percent: float
    mean_response_ms: float
    server_cpu_percent: float
    server_rss_mb: float
    sipp_cpu_percent: float
    udp_drops: int
    """Datagrams the kernel dropped for a full receive buffer, host-wide."""

    @property
    def problems(self) -> list[str]:
        """Why this step does not count; empty when it does."""
        found = []
        if self.sipp_exit != 0:
            found.append(f"sipp exit {self.sipp_exit}")
        if self.successful < self.calls:
            found.append(f"{self.calls - self.successful} of {self.calls} not completed")
        if self.failed:
            found.append(f"{self.failed} failed")
        if self.retrans_percent > MAX_RETRANS_FRACTION * 100:
            found.append(f"retransmissions {self.retrans_percent:.3f} %")
        if self.mean_response_ms > MAX_MEAN_RESPONSE_MS:
            found.append(f"mean response {self.mean_response_ms:.1f} ms")
        if self.achieved < MIN_ACHIEVED_FRACTION * self.offered:
            found.append(f"achieved {self.achieved:.0f}/s < {MIN_ACHIEVED_FRACTION:.0%} of offered")
        return found

    @property
    def counts(self) -> bool:
        return not self.problems


def udp_receive_buffer_errors() -> int:
    """Udp RcvbufErrors from /proc/net/snmp (all sockets of this host)."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    except OSError:
        return 0
    if len(lines) < 2 or "RcvbufErrors" not in lines[0]:
        return 0
    return int(lines[1][lines[0].index("RcvbufErrors")])


class Sampler:
    """Samples CPU and RSS of the server's process group and of SIPp."""

    def __init__(self, server_pgid: int, sipp_pid: int, interval: float = 0.5) -> None:
        self._server_pgid = server_pgid
        self._sipp_pid = sipp_pid
        self._interval = interval
        self._stop = threading.Event()
        self.peak_rss = 0
        self._start_wall = time.monotonic()
        self._server_start = cpu_ticks(group_members(server_pgid))
        self._sipp_last = cpu_ticks([sipp_pid])
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        self.peak_rss = max(self.peak_rss, rss_bytes(group_members(self._server_pgid)))
        # SIPp's own ticks vanish with it once it is reaped: keep the last read.
        ticks = cpu_ticks([self._sipp_pid])
        if ticks:
            self._sipp_last = ticks

    def server_cpu_percent(self) -> float:
        wall = time.monotonic() - self._start_wall
        used = cpu_ticks(group_members(self._server_pgid)) - self._server_start
        return 100.0 * used / CLOCK_TICKS / wall if wall > 0 else 0.0

    def sipp_cpu_percent(self, started_ticks: int) -> float:
        wall = time.monotonic() - self._start_wall
        return 100.0 * (self._sipp_last - started_ticks) / CLOCK_TICKS / wall if wall > 0 else 0.0


# --- processes ------------------------------------------------------------


def kill_group(process: subprocess.Popen[bytes], grace: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group the process leads, then SIGKILL if needed."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue


def free_port(transport: str) -> int:
    """A port free on 127.0.0.1 now, for SIPp's own socket."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_server(
    command: Sequence[str], extra: Sequence[str], dialplan: Path, db_url: str, listen: str, log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start `pbx serve`; yield it and the port it reports listening on."""
    argv = [*command, "serve", "--dialplan", str(dialplan), "--db", db_url, "--listen", listen, *extra]
    transport = listen.split(":", 1)[0]
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        port = None
        while port is None:
            for line in log.read_text(errors="replace").splitlines():
                words = line.split()
                if len(words) == 2 and words[0] == "listening" and words[1].startswith(transport + ":"):
                    port = int(words[1].rsplit(":", 1)[1])
            if port is not None:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise BenchError(f"server did not start: {shlex.join(argv)}\n{tail}")
            time.sleep(0.1)
        yield process, port
    finally:
        kill_group(process)


# --- SIPp -----------------------------------------------------------------


def _epoch(field: str) -> float:
    # "2026-11-22<TAB>03:25:15.213706<TAB>1795317915.213706": the last is epoch.
    return float(field.split()[-1])


def _duration_ms(field: str) -> float:
    # "HH:MM:SS:uuuuuu", as SIPp prints ResponseTime and CallLength.
    hours, minutes, seconds, micros = (int(part) for part in field.split(":"))
    return ((hours * 60 + minutes) * 60 + seconds) * 1000.0 + micros / 1000.0


def final_statistics(path: Path) -> dict[str, str]:
    """The last row of a SIPp -trace_stat file, by column name."""
    try:
        with path.open(newline="") as stream:
            rows = [row for row in csv.reader(stream, delimiter=";") if row]
    except OSError:
        return {}
    return dict(zip(rows[0], rows[-1])) if len(rows) >= 2 else {}


def run_step(
    *,
    sipp: str,
    port: int,
    transport: str,
    local_port: int,
    users_csv: Path,
    rate: int,
    duration: int,
    server: subprocess.Popen[bytes],
    workdir: Path,
) -> Step:
    calls = rate * duration
    stat_file = workdir / f"stat-{rate}.csv"
    argv = [
        sipp, f"127.0.0.1:{port}",
        "-sf", str(SCENARIO),
        "-inf", str(users_csv),
        "-t", "u1" if transport == "udp" else "t1",  # one socket: no -max_socket limit
        "-i", "127.0.0.1",
        # The same Contact every step: a refresh, not one binding more per run.
        "-p", str(local_port),
        "-r", str(rate),
        "-m", str(calls),
        "-l", str(max(1000, rate * 5)),  # open exchanges SIPp allows itself
        "-recv_timeout", "10000",        # ms: a lost exchange fails
        "-timeout", str(duration + 60), "-timeout_error",
        "-default_behaviors", "none",
        "-nostdin",
        "-trace_stat", "-stf", str(stat_file), "-fd", "1",
    ]  # fmt: skip
    with (workdir / f"sipp-{rate}.out").open("wb") as output:
        process = subprocess.Popen(
            argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    drops_before = udp_receive_buffer_errors()
    try:
        sipp_start = cpu_ticks([process.pid])
        with Sampler(server.pid, process.pid) as sampler:
            try:
                code = process.wait(timeout=duration + 90)
            except subprocess.TimeoutExpired:
                code = -1
            server_cpu = sampler.server_cpu_percent()
            sipp_cpu = sampler.sipp_cpu_percent(sipp_start)
    finally:
        kill_group(process)
    drops = udp_receive_buffer_errors() - drops_before
    stats = final_statistics(stat_file)
    if not stats:
        tail = (workdir / f"sipp-{rate}.out").read_text(errors="replace")[-2000:]
        raise BenchError(f"SIPp wrote no statistics (exit {code}):\n{tail}")
    successful = int(stats["SuccessfulCall(C)"])
    outgoing = int(stats["OutgoingCall(C)"])
    retransmissions = int(stats["Retransmissions(C)"])
    elapsed = _epoch(stats["CurrentTime"]) - _epoch(stats["StartTime"])
    return Step(
        offered=rate,
        calls=calls,
        sipp_exit=code,
        successful=successful,
        failed=int(stats["FailedCall(C)"]),
        retransmissions=retransmissions,
        elapsed_s=elapsed,
        achieved=successful / elapsed if elapsed > 0 else 0.0,
        retrans_percent=100.0 * retransmissions / max(1, REQUESTS_PER_CALL * outgoing),
        mean_response_ms=_duration_ms(stats["ResponseTime1(C)"]),
        server_cpu_percent=server_cpu,
        server_rss_mb=sampler.peak_rss / 2**20,
        sipp_cpu_percent=sipp_cpu,
        udp_drops=drops,
    )


# --- report ---------------------------------------------------------------

HEADER: Final = (
    f"{'offered/s':>9} | {'achieved/s':>10} | {'failed':>6} | {'retrans %':>9} | {'mean RT ms':>10} | "
    f"{'server CPU %':>12} | {'RSS MB':>7} | {'SIPp CPU %':>10} | {'UDP drops':>9} | counts?"
)


def table_row(step: Step) -> str:
    verdict = "yes" if step.counts else "NO: " + "; ".join(step.problems)
    return (
        f"{step.offered:>9} | {step.achieved:>10.1f} | {step.failed:>6} | {step.retrans_percent:>9.3f} | "
        f"{step.mean_response_ms:>10.1f} | {step.server_cpu_percent:>12.1f} | {step.server_rss_mb:>7.1f} | "
        f"{step.sipp_cpu_percent:>10.1f} | {step.udp_drops:>9} | {verdict}"
    )


def parse_rates(text: str) -> list[int]:
    try:
        rates = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"rates must be comma-separated integers, got {text!r}") from None
    if not rates or any(rate < 1 for rate in rates):
        raise argparse.ArgumentTypeError("give at least one rate, each at least 1")
    return sorted(set(rates))


def run(args: argparse.Namespace, out: TextIO) -> int:
    sipp = shutil.which(args.sipp)
    if sipp is None:
        raise BenchError(f"{args.sipp} not found: run `make deps` (Debian package sip-tester)")
    command = shlex.split(args.server_command) if args.server_command else [sys.executable, "-m", "pbx"]
    with tempfile.TemporaryDirectory(prefix="register-rate-") as temp:
        workdir = Path(args.workdir) if args.workdir else Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        dialplan, users_csv = workdir / "dialplan.yaml", workdir / "users.csv"
        write_users(args.users, dialplan, users_csv)
        db_url = f"sqlite:///{workdir / 'pbx.sqlite3'}"
        listen = f"{args.transport}:127.0.0.1:0"
        print(f"{args.users} users, {args.transport}, {args.duration} s per step, rates {args.rates}", file=out)
        steps: list[Step] = []
        with running_server(command, args.server_arg, dialplan, db_url, listen, workdir / "server.log") as (server, port):
            print(f"server pid {server.pid} on {args.transport}:127.0.0.1:{port}; work files in {workdir}", file=out)
            print(HEADER, file=out, flush=True)
            local_port = free_port(args.transport)
            lag = LagLog(workdir / "server.log")
            for rate in args.rates:
                lag.mark()
                step = run_step(
                    sipp=sipp,
                    port=port,
                    transport=args.transport,
                    local_port=local_port,
                    users_csv=users_csv,
                    rate=rate,
                    duration=args.duration,
                    server=server,
                    workdir=workdir,
                )
                steps.append(step)
                print(table_row(step), file=out, flush=True)
                if (seen := lag.since_mark()) is not None:
                    print(seen.note(), file=out, flush=True)
                if step.sipp_cpu_percent >= SIPP_SATURATED_CPU:
                    print(f"  note: SIPp used {step.sipp_cpu_percent:.0f} % of a core: it may be the limit here", file=out)
                if not step.counts:
                    break
                if server.poll() is not None:
                    raise BenchError(f"the server exited with {server.returncode} during the {rate}/s step")
        best = max((step.offered for step in steps if step.counts), default=0)
        if args.results:
            results = Path(args.results)
            results.parent.mkdir(parents=True, exist_ok=True)
            document = {
                "users": args.users,
                "transport": args.transport,
                "duration_s": args.duration,
                "steps": [asdict(step) | {"counts": step.counts, "problems": step.problems} for step in steps],
                "max_sustained": best,
            }
            results.write_text(json.dumps(document, indent=2) + "\n")
        print(f"max sustained authenticated REGISTER/s: {best}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rates", type=parse_rates, default=list(DEFAULT_RATES), help="e.g. 500,1000,2000")
    parser.add_argument("--duration", type=int, default=30, help="seconds per step (default 30)")
    parser.add_argument("--users", type=int, default=20000, help="extensions in the dialplan (default 20000)")
    parser.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    parser.add_argument("--sipp", default="sipp", help="SIPp binary")
    parser.add_argument("--server-command", default=None, help="instead of `python -m pbx`")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra `serve` option, e.g. --server-arg=--log-level=warning"
    )
    parser.add_argument("--workdir", default=None, help="keep logs, statistics and the database here")
    parser.add_argument("--results", default=None, help="write the steps as JSON to this file")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.users < 1:
        parser.error("--duration and --users must be at least 1")
    try:
        return run(args, sys.stdout)
    except BenchError as error:
        print(f"register_rate: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
