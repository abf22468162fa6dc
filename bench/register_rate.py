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

The reference (issue 18: every figure beside one measured in the same
invocation): with --targets pbx,kamailio (the default) the same ladder runs
next against Kamailio with bench/kamailio/registrar.cfg, a plain
authenticated registrar given the same users and realm (401, then 200 with
the Contacts; bindings in memory), and the summary prints both maxima and
their ratio.  The server under test, `pbx serve` or every Kamailio process,
is pinned to one CPU and SIPp to another (taskset; --no-pin to share them).

    python bench/register_rate.py --rates 500,1000,2000 --duration 30
    python bench/register_rate.py --targets pbx --rates 500,1000   # no reference
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
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final, TextIO

from loop_lag_log import LagLog
from make_users import DEFAULT_DOMAIN, User, ha1_md5, write_users
from procfs import cpu_ticks, group_members, pss_bytes, rss_bytes

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
SCENARIO: Final = REPO_ROOT / "sipp-scenarios" / "register_auth.xml"
KAMAILIO_CONFIG: Final = REPO_ROOT / "bench" / "kamailio" / "registrar.cfg"
TARGETS: Final = ("pbx", "kamailio")
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

    target: str
    """The server under test: "pbx" or "kamailio"."""
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
    """The highest VmRSS seen, summed over the server's processes."""
    server_pss_mb: float
    """The highest proportional set size seen, summed likewise: shared
    memory counted once (Kamailio's processes share one pool)."""
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

    @property
    def cpu_us_per_registration(self) -> float:
        """Server CPU time per completed registration, in microseconds."""
        return 1e4 * self.server_cpu_percent / self.achieved if self.achieved > 0 else 0.0


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
        self.peak_pss = 0
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
        members = group_members(self._server_pgid)
        self.peak_rss = max(self.peak_rss, rss_bytes(members))
        self.peak_pss = max(self.peak_pss, pss_bytes(members))
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


@dataclass(slots=True)
class Pinning:
    """taskset prefixes: the server on one CPU, SIPp on another."""

    server: list[str] = field(default_factory=list)
    sipp: list[str] = field(default_factory=list)

    @classmethod
    def choose(cls, server_cpu: int | None, sipp_cpu: int | None) -> tuple[Pinning, str]:
        taskset = shutil.which("taskset")
        cpus = os.cpu_count() or 1
        if server_cpu is None or taskset is None or cpus < 2:
            why = "not asked" if server_cpu is None else ("no taskset" if taskset is None else "one CPU only")
            return cls(), f"not pinned ({why}): server and SIPp share the CPUs"
        assert sipp_cpu is not None
        return (
            cls(server=[taskset, "-c", str(server_cpu)], sipp=[taskset, "-c", str(sipp_cpu)]),
            f"server on CPU {server_cpu}, SIPp on CPU {sipp_cpu}",
        )


@dataclass(frozen=True, slots=True)
class Running:
    """A server under test, answering on 127.0.0.1:port."""

    process: subprocess.Popen[bytes]
    """It leads the process group whose CPU and memory are measured."""
    port: int
    log: Path | None = None
    """Where it writes ``loop_lag`` lines (ours does)."""


class Pbx:
    name = "pbx"
    label = "pbx serve (one process; registrations written behind to SQLite)"

    def __init__(self, command: list[str], extra: list[str], dialplan: Path) -> None:
        self._command = command
        self._extra = extra
        self._dialplan = dialplan

    @contextmanager
    def running(self, workdir: Path, pinning: Pinning, transport: str) -> Iterator[Running]:
        db_url = f"sqlite:///{workdir / 'pbx.sqlite3'}"
        log = workdir / "server.log"
        command = [*pinning.server, *self._command]
        listen = f"{transport}:127.0.0.1:0"
        with running_server(command, self._extra, self._dialplan, db_url, listen, log) as (process, port):
            yield Running(process, port, log)


def kamailio_binary() -> str | None:
    """Debian puts kamailio in /usr/sbin, which a user's PATH may lack."""
    fallback = "/usr/sbin/kamailio"
    return shutil.which("kamailio") or (fallback if os.access(fallback, os.X_OK) else None)


def write_kamailio_tables(users: Sequence[User], directory: Path, *, domain: str) -> None:
    """The db_text tables bench/kamailio/registrar.cfg reads: `subscriber`
    (auth_db's layout) and `ha1` (htable's), both holding HA1 =
    MD5(user:domain:password) as the PBX's dialplan does, no password."""
    directory.mkdir(parents=True, exist_ok=True)
    ha1 = [(user.extension, ha1_md5(user.extension, domain, user.password)) for user in users]
    # db_text: a header of name(type[,null]) columns, then one row a line,
    # fields split by ':' (neither user names nor HA1s hold one).
    (directory / "version").write_text("table_name(string) table_version(int) \nsubscriber:7\nha1:2\n")
    subscriber = ["id(int,auto) username(string) domain(string) password(string,null) ha1(string) ha1b(string,null) "]
    subscriber += [f"{row}:{name}:{domain}::{digest}:" for row, (name, digest) in enumerate(ha1, 1)]
    (directory / "subscriber").write_text("\n".join(subscriber) + "\n")
    table = ["id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int) "]
    table += [f"{row}:{name}:0:0:{digest}:0" for row, (name, digest) in enumerate(ha1, 1)]
    (directory / "ha1").write_text("\n".join(table) + "\n")


def options_answered(transport: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a SIP OPTIONS to 127.0.0.1:port draws a 200 within timeout."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    branch = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.settimeout(timeout)
        try:
            probe.bind(("127.0.0.1", 0))
            probe.connect(("127.0.0.1", port))
            local = probe.getsockname()[1]
            probe.send((
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:{local};branch=z9hG4bK{branch};rport\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=probe\r\n"
                f"To: <sip:127.0.0.1:{port}>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode())
            return probe.recv(4096).startswith(b"SIP/2.0 200")
        except OSError:  # refused, reset, timed out
            return False


class Kamailio:
    name = "kamailio"

    def __init__(self, binary: str, users: Sequence[User], *, domain: str, children: int) -> None:
        self._binary = binary
        self._users = users
        self._domain = domain
        self._children = children
        self.label = (
            f"Kamailio, {KAMAILIO_CONFIG.relative_to(REPO_ROOT)} ({children} SIP worker{'s' * (children != 1)}, "
            "HA1s in an htable, bindings in memory, stateless replies)"
        )

    @contextmanager
    def running(self, workdir: Path, pinning: Pinning, transport: str) -> Iterator[Running]:
        home = workdir / "kamailio"
        database, run_dir = home / "db", home / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        write_kamailio_tables(self._users, database, domain=self._domain)
        port = free_port(transport)
        # taskset pins the main process; every process it forks inherits it.
        # -m: a 256 MB shared-memory pool (the default 64 MB holds the
        # bench's 20,000 users and their bindings with little to spare);
        # pages never touched count in no memory column.
        argv = [
            *pinning.server, self._binary, "-DD", "-E", "-f", str(KAMAILIO_CONFIG), "-m", "256",
            "-Y", str(run_dir), "-P", str(run_dir / "kamailio.pid"), "-w", str(home),
            "-A", f"LISTEN={transport}:127.0.0.1:{port}", "-A", f'REALM="{self._domain}"',
            "-A", f'DB_URL="text://{database}"', "-A", f"CHILDREN={self._children}",
        ]  # fmt: skip
        log = home / "kamailio.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, cwd=home,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not options_answered(transport, port):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise BenchError(f"kamailio did not start: {shlex.join(argv)}\n{tail}")
                time.sleep(0.1)
            yield Running(process, port)
        finally:
            kill_group(process)


Target = Pbx | Kamailio


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
    target: str,
    sipp: list[str],
    port: int,
    transport: str,
    local_port: int,
    users_csv: Path,
    rate: int,
    duration: int,
    server_pgid: int,
    workdir: Path,
) -> Step:
    """One step: SIPp (`sipp`: its argv prefix, taskset included) registers
    at `rate`/s for `duration` s with the server whose group is `server_pgid`."""
    calls = rate * duration
    name = f"{target}-{rate}"
    stat_file = workdir / f"stat-{name}.csv"
    argv = [
        *sipp, f"127.0.0.1:{port}",
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
    with (workdir / f"sipp-{name}.out").open("wb") as output:
        process = subprocess.Popen(
            argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    drops_before = udp_receive_buffer_errors()
    try:
        sipp_start = cpu_ticks([process.pid])
        with Sampler(server_pgid, process.pid) as sampler:
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
        tail = (workdir / f"sipp-{name}.out").read_text(errors="replace")[-2000:]
        raise BenchError(f"SIPp wrote no statistics (exit {code}):\n{tail}")
    successful = int(stats["SuccessfulCall(C)"])
    outgoing = int(stats["OutgoingCall(C)"])
    retransmissions = int(stats["Retransmissions(C)"])
    elapsed = _epoch(stats["CurrentTime"]) - _epoch(stats["StartTime"])
    return Step(
        target=target,
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
        server_pss_mb=sampler.peak_pss / 2**20,
        sipp_cpu_percent=sipp_cpu,
        udp_drops=drops,
    )


# --- report ---------------------------------------------------------------

HEADER: Final = (
    f"{'target':<8} | {'offered/s':>9} | {'achieved/s':>10} | {'failed':>6} | {'retrans %':>9} | "
    f"{'mean RT ms':>10} | {'server CPU %':>12} | {'CPU µs/reg':>10} | {'RSS MB':>7} | {'PSS MB':>7} | "
    f"{'SIPp CPU %':>10} | {'UDP drops':>9} | counts?"
)


def table_row(step: Step) -> str:
    verdict = "yes" if step.counts else "NO: " + "; ".join(step.problems)
    return (
        f"{step.target:<8} | {step.offered:>9} | {step.achieved:>10.1f} | {step.failed:>6} | "
        f"{step.retrans_percent:>9.3f} | {step.mean_response_ms:>10.1f} | {step.server_cpu_percent:>12.1f} | "
        f"{step.cpu_us_per_registration:>10.0f} | {step.server_rss_mb:>7.1f} | {step.server_pss_mb:>7.1f} | "
        f"{step.sipp_cpu_percent:>10.1f} | {step.udp_drops:>9} | {verdict}"
    )


def best_rate(steps: Sequence[Step]) -> int:
    """The highest offered rate that counted; 0 if none did."""
    return max((step.offered for step in steps if step.counts), default=0)


def lower_bound_reason(steps: Sequence[Step]) -> str | None:
    """Why the ladder may understate the server's limit; None when a step
    failed for the server's own sake."""
    if not steps:
        return None
    last = steps[-1]
    if last.counts:
        return "every step held: give higher --rates"
    if last.sipp_cpu_percent >= SIPP_SATURATED_CPU:
        return f"at {last.offered}/s SIPp used {last.sipp_cpu_percent:.0f} % of its core: the limit may be SIPp's"
    return None


def ratio_text(ours: int, theirs: int, *, ours_bound: bool, theirs_bound: bool) -> str:
    """ours / theirs; a lower bound on either side bounds the ratio."""
    if not ours or not theirs:
        return "n/a (a target held no step)"
    ratio = f"{ours / theirs:.2f}"
    if ours_bound and theirs_bound:
        return ratio + " (both figures are lower bounds: not a real ratio)"
    if ours_bound:
        return "≥ " + ratio
    if theirs_bound:
        return "≤ " + ratio
    return ratio


def summary(ladders: dict[str, list[Step]]) -> tuple[list[str], dict[str, object]]:
    """The closing lines and the figures for the results file.

    With the PBX alone the one line is the same as before the reference
    existed; with a reference, one line per target (≥ N when the ladder
    topped out or SIPp was the limit) and the ratio pbx / reference.
    """
    best = {name: best_rate(steps) for name, steps in ladders.items()}
    reasons = {name: lower_bound_reason(steps) for name, steps in ladders.items()}
    result: dict[str, object] = {
        "max_sustained": best,
        "max_sustained_is_lower_bound": {name: reason is not None for name, reason in reasons.items()},
    }
    if list(ladders) == ["pbx"]:
        return [f"max sustained authenticated REGISTER/s: {best['pbx']}"], result
    lines = ["summary"]
    for name, steps in ladders.items():
        held = [step for step in steps if step.counts and step.offered == best[name]]
        notes = [f"{held[0].cpu_us_per_registration:.0f} µs server CPU per registration there"] if held else []
        if (reason := reasons[name]) is not None:
            notes.insert(0, reason)
        shown = f"≥ {best[name]}" if reasons[name] is not None and best[name] else str(best[name])
        detail = f" ({'; '.join(notes)})" if notes else ""
        lines.append(f"  max sustained authenticated REGISTER/s, {name}: {shown}{detail}")
    if "pbx" in ladders and "kamailio" in ladders:
        ratio = ratio_text(best["pbx"], best["kamailio"], ours_bound=reasons["pbx"] is not None,
                           theirs_bound=reasons["kamailio"] is not None)
        lines.append(f"  pbx / kamailio authenticated REGISTER/s: {ratio}")
        result["ratio_pbx_kamailio"] = best["pbx"] / best["kamailio"] if best["kamailio"] else None
    return lines, result


# --- main -----------------------------------------------------------------


def parse_rates(text: str) -> list[int]:
    try:
        rates = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"rates must be comma-separated integers, got {text!r}") from None
    if not rates or any(rate < 1 for rate in rates):
        raise argparse.ArgumentTypeError("give at least one rate, each at least 1")
    return sorted(set(rates))


def parse_targets(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or any(name not in TARGETS for name in names):
        raise argparse.ArgumentTypeError(f"choose from {', '.join(TARGETS)}; got {text!r}")
    return list(dict.fromkeys(names))


def run_ladder(
    target: Target,
    *,
    args: argparse.Namespace,
    sipp: list[str],
    pinning: Pinning,
    workdir: Path,
    users_csv: Path,
    local_port: int,
    out: TextIO,
) -> list[Step]:
    """The rates of args.rates on one running `target`, up to the first
    step that does not count."""
    steps: list[Step] = []
    with target.running(workdir, pinning, args.transport) as server:
        print(f"\n{target.name}: pid {server.process.pid} on {args.transport}:127.0.0.1:{server.port}", file=out)
        print(HEADER, file=out, flush=True)
        lag = LagLog(server.log) if server.log is not None else None
        for rate in args.rates:
            if lag is not None:
                lag.mark()
            step = run_step(
                target=target.name,
                sipp=sipp,
                port=server.port,
                transport=args.transport,
                local_port=local_port,
                users_csv=users_csv,
                rate=rate,
                duration=args.duration,
                server_pgid=server.process.pid,
                workdir=workdir,
            )
            steps.append(step)
            print(table_row(step), file=out, flush=True)
            if lag is not None and (seen := lag.since_mark()) is not None:
                print(seen.note(), file=out, flush=True)
            if step.sipp_cpu_percent >= SIPP_SATURATED_CPU:
                print(f"  note: SIPp used {step.sipp_cpu_percent:.0f} % of a core: it may be the limit here", file=out)
            if not step.counts:
                break
            if server.process.poll() is not None:
                raise BenchError(f"{target.name} exited with {server.process.returncode} during the {rate}/s step")
    return steps


def run(args: argparse.Namespace, out: TextIO) -> int:
    sipp = shutil.which(args.sipp)
    if sipp is None:
        raise BenchError(f"{args.sipp} not found: run `make deps` (Debian package sip-tester)")
    kamailio = None
    if "kamailio" in args.targets:
        kamailio = shutil.which(args.kamailio) if args.kamailio else kamailio_binary()
        if kamailio is None:
            raise BenchError("kamailio not found: run `make deps` (Debian package kamailio), or --targets pbx")
    command = shlex.split(args.server_command) if args.server_command else [sys.executable, "-m", "pbx"]
    with tempfile.TemporaryDirectory(prefix="register-rate-") as temp:
        # Absolute: Kamailio runs in a directory of its own.
        workdir = Path(args.workdir).resolve() if args.workdir else Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        dialplan, users_csv = workdir / "dialplan.yaml", workdir / "users.csv"
        users = write_users(args.users, dialplan, users_csv, domain=DEFAULT_DOMAIN)
        targets: list[Target] = []
        for name in args.targets:
            if name == "pbx":
                targets.append(Pbx(command, list(args.server_arg), dialplan))
            else:
                assert kamailio is not None
                targets.append(Kamailio(kamailio, users, domain=DEFAULT_DOMAIN, children=args.kamailio_children))
        pinning, pinned = Pinning.choose(args.server_cpu, args.sipp_cpu)
        print(f"{args.users} users, {args.transport}, {args.duration} s per step, rates {args.rates}", file=out)
        print(f"{pinned}; work files in {workdir}", file=out)
        for target in targets:
            print(f"  {target.name}: {target.label}", file=out)
        # One SIPp port for every step of every target: each user keeps one
        # Contact, and later steps refresh it.
        local_port = free_port(args.transport)
        ladders: dict[str, list[Step]] = {}
        for target in targets:
            ladders[target.name] = run_ladder(
                target, args=args, sipp=[*pinning.sipp, sipp], pinning=pinning, workdir=workdir,
                users_csv=users_csv, local_port=local_port, out=out,
            )
        lines, figures = summary(ladders)
        if args.results:
            results = Path(args.results)
            results.parent.mkdir(parents=True, exist_ok=True)
            document = {
                "users": args.users,
                "transport": args.transport,
                "duration_s": args.duration,
                "pinning": pinned,
                "targets": {target.name: target.label for target in targets},
                "steps": [
                    asdict(step) | {"counts": step.counts, "problems": step.problems}
                    for steps in ladders.values() for step in steps
                ],
                **figures,
            }
            results.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        print("", file=out)
        for line in lines:
            print(line, file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--targets", type=parse_targets, default=list(TARGETS),
                        help="pbx,kamailio (default both: the PBX, then Kamailio as the reference)")
    parser.add_argument("--rates", type=parse_rates, default=list(DEFAULT_RATES), help="e.g. 500,1000,2000")
    parser.add_argument("--duration", type=int, default=30, help="seconds per step (default 30)")
    parser.add_argument("--users", type=int, default=20000, help="extensions in the dialplan (default 20000)")
    parser.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    parser.add_argument("--sipp", default="sipp", help="SIPp binary")
    parser.add_argument("--server-command", default=None, help="instead of `python -m pbx`")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra `serve` option, e.g. --server-arg=--log-level=warning"
    )
    parser.add_argument("--kamailio", default=None, help="Kamailio binary (default: kamailio on PATH, /usr/sbin)")
    parser.add_argument("--kamailio-children", type=int, default=1,
                        help="Kamailio's SIP worker processes (default 1: see bench/kamailio/registrar.cfg)")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU for the server under test (default 0)")
    parser.add_argument("--sipp-cpu", type=int, default=1, help="CPU for SIPp (default 1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--workdir", default=None, help="keep logs, statistics and the database here")
    parser.add_argument("--results", default=None, help="write the steps as JSON to this file")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.users < 1 or args.kamailio_children < 1:
        parser.error("--duration, --users and --kamailio-children must be at least 1")
    if args.no_pin:
        args.server_cpu = args.sipp_cpu = None
    try:
        return run(args, sys.stdout)
    except BenchError as error:
        print(f"register_rate: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
