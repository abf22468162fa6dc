"""Calls per second and concurrent calls one B2BUA process sustains.

Measures `pbx serve` (one process, pinned to one CPU with taskset; SIPp on
the other), and Sippy B2BUA (the `b2bua` script of the `sippy` package) under
the same SIPp load, and prints both and their ratio.

The load (sipp-scenarios/call_uac.xml and call_uas.xml): the SIPp caller
places short calls, INVITE with SDP, 180, 200, ACK, --talk-ms of talk, BYE,
200; the SIPp callee answers each at once.  The loads are NOT the same work,
and the output says so:

- the PBX challenges every INVITE (407, ACK, INVITE with MD5 digest
  credentials: one round trip and three messages more per call), routes it
  through the dialplan, looks the callee up in the registrar (SIPp's callee
  registers as an extension first), and writes the CDR: three upserts per
  call, the last one committed before the BYE is answered;
- Sippy runs with `-u -A 0` (no RADIUS authentication, no accounting) and a
  static route to the callee: no authentication, no lookup, no records.
  Its log of every SIP message is switched off (SIPLOG_BEND=none): it writes
  whole messages synchronously, which would measure its logger.

Two tests, each a ladder that stops at the first step that fails:

1. calls per second (--rates): each step places RATE x --duration calls on
   one running server.  A step COUNTS when, over the whole step:
     - SIPp exited 0 and completed every call, none failed;
     - retransmissions (caller's and callee's) were at most 0.1 % of calls;
     - mean response times were at most 100 ms: call set-up (first INVITE to
       200) and BYE to 200 (for the PBX this includes the CDR commit);
     - SIPp kept the rate: successful calls / (elapsed - talk time) at least
       97 % of the offer.
2. concurrent calls (--levels): calls of --call-seconds each, started at
   LEVEL / call-seconds per second for call-seconds + --hold-seconds, so
   LEVEL calls are up at once for the hold time.  Each level runs on a fresh
   server, so its resident memory at idle (after start-up) and at the peak
   give the memory per 1,000 concurrent calls.  A level counts under the same
   rules, with "SIPp kept the rate" replaced by: the peak number of calls up
   at once reached 97 % of the level.

CPU and memory come from /proc (utime+stime and VmRSS of each process
group).  SIPp is single-threaded: near 100 % of its core it, not the server,
may be the limit, and a note says so.  Figures from a machine shared with
other work are noisy: the output says when they come from a --quick run.

    python bench/call_rate.py --quick                  # a few minutes, to see it work
    python bench/call_rate.py                          # the full ladders (about an hour)
    python bench/call_rate.py --targets pbx --tests cps --rates 100,200,400
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, TextIO

from loop_lag_log import LagLog
from make_users import DEFAULT_DOMAIN, sipp_csv, write_users
from procfs import cpu_ticks, group_members, rss_bytes
from register_rate import (
    BenchError,
    Pinning,
    free_port,
    kill_group,
    running_server,
    udp_receive_buffer_errors,
)

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
SCENARIOS: Final = REPO_ROOT / "sipp-scenarios"
DEFAULT_RESULTS: Final = REPO_ROOT / "bench" / "results" / "call_rate.json"

DEFAULT_RATES: Final = (50, 100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500)
DEFAULT_LEVELS: Final = (1000, 2000, 5000, 10000, 15000, 20000)
QUICK_RATES: Final = (50, 100, 200)
QUICK_LEVELS: Final = (200, 500)

MAX_RETRANS_FRACTION: Final = 0.001
MAX_MEAN_RESPONSE_MS: Final = 100.0
MIN_KEPT_FRACTION: Final = 0.97
SIPP_SATURATED_CPU: Final = 90.0  # % of one core

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
START_TIMEOUT: Final = 60.0


# --- measures -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SippOutcome:
    """What the caller and callee SIPp said about one step."""

    exit_code: int
    calls: int
    successful: int
    failed: int
    retransmissions: int
    """Sent by both: the caller's requests and the callee's 200s."""
    elapsed_s: float
    setup_ms: float
    bye_ms: float
    peak_concurrent: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """CPU and memory of the server and of SIPp over one step."""

    server_cpu_s: float
    server_cpu_percent: float
    server_peak_rss_mb: float
    sipp_cpu_percent: float
    """Caller and callee SIPp together, in % of one core."""
    udp_drops: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RateStep:
    target: str
    offered: int
    talk_ms: int
    sipp: SippOutcome
    usage: Usage

    @property
    def achieved(self) -> float:
        # Calls are started over (elapsed - one call's length): that is the
        # span over which SIPp kept (or did not keep) the rate.
        span = self.sipp.elapsed_s - self.talk_ms / 1000.0 - self.sipp.setup_ms / 1000.0
        return self.sipp.successful / span if span > 0 else 0.0

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000.0 * self.usage.server_cpu_s / self.sipp.successful if self.sipp.successful else 0.0

    @property
    def problems(self) -> list[str]:
        found = _common_problems(self.sipp)
        if self.achieved < MIN_KEPT_FRACTION * self.offered:
            found.append(f"achieved {self.achieved:.0f}/s < {MIN_KEPT_FRACTION:.0%} of offered")
        return found

    @property
    def counts(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelStep:
    target: str
    level: int
    rate: int
    call_seconds: int
    sipp: SippOutcome
    usage: Usage
    idle_rss_mb: float

    @property
    def mb_per_thousand(self) -> float:
        calls = self.sipp.peak_concurrent
        growth = self.usage.server_peak_rss_mb - self.idle_rss_mb
        return 1000.0 * growth / calls if calls else 0.0

    @property
    def problems(self) -> list[str]:
        found = _common_problems(self.sipp)
        if self.sipp.peak_concurrent < MIN_KEPT_FRACTION * self.level:
            found.append(f"peak {self.sipp.peak_concurrent} calls < {MIN_KEPT_FRACTION:.0%} of {self.level}")
        return found

    @property
    def counts(self) -> bool:
        return not self.problems


def _common_problems(sipp: SippOutcome) -> list[str]:
    found = []
    if sipp.exit_code != 0:
        found.append(f"sipp exit {sipp.exit_code}")
    if sipp.successful < sipp.calls:
        found.append(f"{sipp.calls - sipp.successful} of {sipp.calls} not completed")
    if sipp.failed:
        found.append(f"{sipp.failed} failed")
    if sipp.retransmissions > MAX_RETRANS_FRACTION * sipp.calls:
        found.append(f"retransmissions {100.0 * sipp.retransmissions / max(1, sipp.calls):.3f} % of calls")
    if sipp.setup_ms > MAX_MEAN_RESPONSE_MS:
        found.append(f"mean set-up {sipp.setup_ms:.0f} ms")
    if sipp.bye_ms > MAX_MEAN_RESPONSE_MS:
        found.append(f"mean BYE {sipp.bye_ms:.0f} ms")
    return found


class Sampler:
    """Samples the server's process group (CPU, peak RSS) and the SIPp
    processes' CPU while a step runs."""

    def __init__(self, server_pgid: int, sipp_pids: Sequence[int], interval: float = 0.5) -> None:
        self._server_pgid = server_pgid
        self._sipp_pids = list(sipp_pids)
        self._interval = interval
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._server_start = cpu_ticks(group_members(server_pgid))
        # A reaped SIPp's ticks vanish: keep each one's last reading.
        self._sipp_first = {pid: cpu_ticks([pid]) for pid in self._sipp_pids}
        self._sipp_last = dict(self._sipp_first)
        self.peak_rss = 0
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, rss_bytes(group_members(self._server_pgid)))
        for pid in self._sipp_pids:
            ticks = cpu_ticks([pid])
            if ticks:
                self._sipp_last[pid] = ticks

    def usage(self, udp_drops: int) -> Usage:
        self.sample()
        wall = max(1e-6, time.monotonic() - self._start)
        server_s = (cpu_ticks(group_members(self._server_pgid)) - self._server_start) / CLOCK_TICKS
        sipp_s = sum(self._sipp_last[p] - self._sipp_first[p] for p in self._sipp_pids) / CLOCK_TICKS
        return Usage(
            server_cpu_s=server_s,
            server_cpu_percent=100.0 * server_s / wall,
            server_peak_rss_mb=self.peak_rss / 2**20,
            sipp_cpu_percent=100.0 * sipp_s / wall,
            udp_drops=udp_drops,
        )


def idle_rss_mb(pgid: int, seconds: float = 2.0) -> float:
    """Resident memory of an idle server: the mean of a few readings."""
    readings = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        readings.append(rss_bytes(group_members(pgid)))
        time.sleep(0.25)
    return sum(readings) / len(readings) / 2**20 if readings else 0.0


# --- SIPp -----------------------------------------------------------------


def _epoch(field: str) -> float:
    # "2026-11-22<TAB>03:25:15.213706<TAB>1795317915.213706": epoch last.
    return float(field.split()[-1])


def _duration_ms(field: str) -> float:
    # "HH:MM:SS:uuuuuu", as SIPp prints response times.
    hours, minutes, seconds, micros = (int(part) for part in field.split(":"))
    return ((hours * 60 + minutes) * 60 + seconds) * 1000.0 + micros / 1000.0


def statistics_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a SIPp -trace_stat file, by column name."""
    try:
        with path.open(newline="") as stream:
            rows = [row for row in csv.reader(stream, delimiter=";") if row]
    except OSError:
        return []
    return [dict(zip(rows[0], row)) for row in rows[1:]]


@dataclass(slots=True)
class Load:
    """Files and settings shared by every SIPp run."""

    sipp: str
    workdir: Path
    pinning: Pinning
    callee: str
    callers_csv: Path
    callee_csv: Path

    def popen(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.out").open("wb") as output:
            return subprocess.Popen(
                [*self.pinning.sipp, *argv], cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True,
            )

    def register_callee(self, server_port: int, callee_port: int) -> None:
        """REGISTER the callee's extension from the port it answers on."""
        result = subprocess.run(
            [
                *self.pinning.sipp, self.sipp, f"127.0.0.1:{server_port}",
                "-sf", str(SCENARIOS / "register_auth.xml"), "-inf", str(self.callee_csv),
                "-t", "u1", "-i", "127.0.0.1", "-p", str(callee_port), "-m", "1",
                "-recv_timeout", "5000", "-timeout", "30", "-timeout_error",
                "-default_behaviors", "none", "-nostdin",
            ],
            cwd=self.workdir, capture_output=True, text=True, errors="replace", timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise BenchError(f"the callee could not register (sipp exit {result.returncode}):\n{result.stdout[-2000:]}")

    def run(
        self, *, name: str, server_pgid: int, server_port: int, callee_port: int, rate: int, calls: int, talk_ms: int
    ) -> tuple[SippOutcome, Usage]:
        """One step: the callee answers `calls` calls the caller places at `rate`/s."""
        expected_s = calls / rate + talk_ms / 1000.0
        uac_stat, uas_stat = self.workdir / f"{name}-uac.csv", self.workdir / f"{name}-uas.csv"
        callee = self.popen(f"{name}-uas", [
            self.sipp, "-sf", str(SCENARIOS / "call_uas.xml"), "-t", "u1", "-i", "127.0.0.1",
            "-p", str(callee_port), "-m", str(calls), "-nostdin",
            "-timeout", str(int(expected_s) + 120),
            "-trace_stat", "-stf", str(uas_stat), "-fd", "1",
        ])  # fmt: skip
        time.sleep(0.3)
        if callee.poll() is not None:
            raise BenchError(f"the SIPp callee exited at start:\n{self._tail(name + '-uas')}")
        drops_before = udp_receive_buffer_errors()
        caller = self.popen(f"{name}-uac", [
            self.sipp, f"127.0.0.1:{server_port}", "-sf", str(SCENARIOS / "call_uac.xml"),
            "-inf", str(self.callers_csv), "-s", self.callee,
            "-t", "u1", "-i", "127.0.0.1", "-p", str(free_port("udp")),
            "-r", str(rate), "-m", str(calls), "-d", str(talk_ms),
            "-l", str(max(1000, 3 * rate * max(1, math.ceil(talk_ms / 1000)))),
            "-recv_timeout", "10000",  # ms: a lost exchange fails the call
            "-timeout", str(int(expected_s) + 90), "-timeout_error",
            "-nostdin", "-trace_err", "-error_file", str(self.workdir / f"{name}-uac-errors.log"),
            "-trace_stat", "-stf", str(uac_stat), "-fd", "1",
        ])  # fmt: skip
        try:
            with Sampler(server_pgid, [caller.pid, callee.pid]) as sampler:
                try:
                    code = caller.wait(timeout=expected_s + 120)
                except subprocess.TimeoutExpired:
                    code = -1
                try:  # the callee has counted its last BYE by now, or never will
                    callee.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                usage = sampler.usage(udp_receive_buffer_errors() - drops_before)
        finally:
            kill_group(caller, grace=2)
            kill_group(callee, grace=2)
        rows = statistics_rows(uac_stat)
        if not rows:
            raise BenchError(f"SIPp wrote no statistics (exit {code}):\n{self._tail(name + '-uac')}")
        last = rows[-1]
        callee_rows = statistics_rows(uas_stat)
        callee_retrans = int(callee_rows[-1]["Retransmissions(C)"]) if callee_rows else 0
        outcome = SippOutcome(
            exit_code=code,
            calls=calls,
            successful=int(last["SuccessfulCall(C)"]),
            failed=int(last["FailedCall(C)"]),
            retransmissions=int(last["Retransmissions(C)"]) + callee_retrans,
            elapsed_s=_epoch(last["CurrentTime"]) - _epoch(last["StartTime"]),
            setup_ms=_duration_ms(last["ResponseTime1(C)"]),
            bye_ms=_duration_ms(last["ResponseTime2(C)"]),
            peak_concurrent=max(int(row["CurrentCall"]) for row in rows),
        )
        return outcome, usage

    def _tail(self, name: str) -> str:
        path = self.workdir / f"{name}.out"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


# --- the servers ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Running:
    process: subprocess.Popen[bytes]
    port: int
    callee_port: int
    log: Path | None = None
    """The server's log, where it writes ``loop_lag`` lines (ours does)."""


class Pbx:
    name = "pbx"
    label = "pbx serve (digest auth, registrar lookup, CDR commit before the BYE's 200)"

    def __init__(self, command: list[str], extra: list[str], dialplan: Path) -> None:
        self._command = command
        self._extra = extra
        self._dialplan = dialplan
        self._runs = 0

    @contextmanager
    def running(self, load: Load) -> Iterator[Running]:
        self._runs += 1
        run = self._runs
        db_url = f"sqlite:///{load.workdir / f'pbx-{run}.sqlite3'}"
        extra = [*self._extra, "--pid-file", str(load.workdir / f"pbx-{run}.pid")]
        log = load.workdir / f"pbx-{run}.log"
        command = [*load.pinning.server, *self._command]
        with running_server(command, extra, self._dialplan, db_url, "udp:127.0.0.1:0", log) as (process, port):
            callee_port = free_port("udp")
            load.register_callee(port, callee_port)
            yield Running(process, port, callee_port, log)


class Sippy:
    name = "sippy"
    label = "Sippy B2BUA `b2bua -u -A 0` (no auth, no accounting, static route, message log off)"

    def __init__(self, command: list[str]) -> None:
        self._command = command
        self._runs = 0

    @contextmanager
    def running(self, load: Load) -> Iterator[Running]:
        self._runs += 1
        run = self._runs
        port, callee_port = free_port("udp"), free_port("udp")
        argv = [
            *load.pinning.server, *self._command, "-f", "-u", "-A", "0",
            "-l", "127.0.0.1", "-p", str(port), "-s", f"127.0.0.1:{callee_port}",
            "-c", str(load.workdir / f"sippy-{run}.sock"), "-P", str(load.workdir / f"sippy-{run}.pid"),
            "-L", str(load.workdir / f"sippy-{run}.log"),
        ]  # fmt: skip
        with (load.workdir / f"sippy-{run}.out").open("wb") as output:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, cwd=load.workdir,
                env=dict(os.environ, SIPLOG_BEND="none"), start_new_session=True,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _udp_port_taken(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (load.workdir / f"sippy-{run}.out").read_text(errors="replace")[-2000:]
                    raise BenchError(f"Sippy did not start: {shlex.join(argv)}\n{tail}")
                time.sleep(0.1)
            yield Running(process, port, callee_port)
        finally:
            kill_group(process, grace=3)  # it may take its time over SIGTERM


Target = Pbx | Sippy


def _udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# --- the ladders ----------------------------------------------------------


def rate_ladder(target: Target, load: Load, rates: Sequence[int], duration: int, talk_ms: int,
                out: TextIO) -> list[RateStep]:
    steps: list[RateStep] = []
    with target.running(load) as server:
        lag = LagLog(server.log) if server.log is not None else None
        for rate in rates:
            if lag is not None:
                lag.mark()
            sipp, usage = load.run(
                name=f"{target.name}-cps-{rate}", server_pgid=server.process.pid, server_port=server.port,
                callee_port=server.callee_port, rate=rate, calls=rate * duration, talk_ms=talk_ms,
            )
            step = RateStep(target=target.name, offered=rate, talk_ms=talk_ms, sipp=sipp, usage=usage)
            steps.append(step)
            print(rate_row(step), file=out, flush=True)
            if lag is not None and (seen := lag.since_mark()) is not None:
                print(seen.note(), file=out, flush=True)
            _sipp_note(usage, out)
            if server.process.poll() is not None:
                print(f"  {target.name} exited with {server.process.returncode}", file=out)
                break
            if not step.counts:
                break
    return steps


def level_ladder(target: Target, load: Load, levels: Sequence[int], call_seconds: int, hold_seconds: int,
                 out: TextIO) -> list[LevelStep]:
    steps: list[LevelStep] = []
    for level in levels:
        rate = max(1, math.ceil(level / call_seconds))
        calls = rate * (call_seconds + hold_seconds)
        with target.running(load) as server:  # fresh: its idle memory is the baseline
            idle = idle_rss_mb(server.process.pid)
            lag = LagLog(server.log) if server.log is not None else None
            if lag is not None:
                lag.mark()
            sipp, usage = load.run(
                name=f"{target.name}-level-{level}", server_pgid=server.process.pid, server_port=server.port,
                callee_port=server.callee_port, rate=rate, calls=calls, talk_ms=call_seconds * 1000,
            )
        step = LevelStep(target=target.name, level=level, rate=rate, call_seconds=call_seconds, sipp=sipp,
                         usage=usage, idle_rss_mb=idle)
        steps.append(step)
        print(level_row(step), file=out, flush=True)
        if lag is not None and (seen := lag.since_mark()) is not None:
            print(seen.note(), file=out, flush=True)
        _sipp_note(usage, out)
        if not step.counts:
            break
    return steps


def _sipp_note(usage: Usage, out: TextIO) -> None:
    if usage.sipp_cpu_percent >= SIPP_SATURATED_CPU:
        print(f"  note: SIPp used {usage.sipp_cpu_percent:.0f} % of a core: it may be the limit here", file=out)


# --- report ---------------------------------------------------------------

RATE_HEADER: Final = (
    f"{'target':<6} | {'offered/s':>9} | {'achieved/s':>10} | {'failed':>6} | {'retrans %':>9} | {'set-up ms':>9} | "
    f"{'BYE ms':>6} | {'server CPU %':>12} | {'CPU ms/call':>11} | {'RSS MB':>7} | {'SIPp CPU %':>10} | "
    f"{'UDP drops':>9} | counts?"
)
LEVEL_HEADER: Final = (
    f"{'target':<6} | {'level':>6} | {'rate/s':>6} | {'peak calls':>10} | {'failed':>6} | {'retrans %':>9} | "
    f"{'set-up ms':>9} | {'BYE ms':>6} | {'idle MB':>7} | {'peak MB':>7} | {'MB/1000':>7} | {'SIPp CPU %':>10} | counts?"
)


def _verdict(problems: list[str]) -> str:
    return "yes" if not problems else "NO: " + "; ".join(problems)


def _retrans_percent(sipp: SippOutcome) -> float:
    return 100.0 * sipp.retransmissions / max(1, sipp.calls)


def rate_row(step: RateStep) -> str:
    s, u = step.sipp, step.usage
    return (
        f"{step.target:<6} | {step.offered:>9} | {step.achieved:>10.1f} | {s.failed:>6} | {_retrans_percent(s):>9.3f} | "
        f"{s.setup_ms:>9.1f} | {s.bye_ms:>6.1f} | {u.server_cpu_percent:>12.1f} | {step.cpu_ms_per_call:>11.2f} | "
        f"{u.server_peak_rss_mb:>7.1f} | {u.sipp_cpu_percent:>10.1f} | {u.udp_drops:>9} | {_verdict(step.problems)}"
    )


def level_row(step: LevelStep) -> str:
    s, u = step.sipp, step.usage
    return (
        f"{step.target:<6} | {step.level:>6} | {step.rate:>6} | {s.peak_concurrent:>10} | {s.failed:>6} | "
        f"{_retrans_percent(s):>9.3f} | {s.setup_ms:>9.1f} | {s.bye_ms:>6.1f} | {step.idle_rss_mb:>7.1f} | "
        f"{u.server_peak_rss_mb:>7.1f} | {step.mb_per_thousand:>7.1f} | {u.sipp_cpu_percent:>10.1f} | "
        f"{_verdict(step.problems)}"
    )


def best_rate(steps: Sequence[RateStep]) -> int:
    return max((step.offered for step in steps if step.counts), default=0)


def best_level(steps: Sequence[LevelStep]) -> LevelStep | None:
    held = [step for step in steps if step.counts]
    return max(held, key=lambda step: step.level) if held else None


def _at_least(value: int, topped: bool) -> str:
    # The ladder ran out before a step failed: the real limit is higher.
    return f"{value} or more (every step held; give higher steps)" if topped else str(value)


def _ratio_text(ours: int, theirs: int, topped: dict[str, bool]) -> str:
    if not ours or not theirs:
        return "n/a (a target held no step)"
    ratio = f"{ours / theirs:.2f}x"
    if topped.get("pbx") and topped.get("sippy"):
        return ratio + " (both held every step: not a real ratio)"
    if topped.get("pbx"):
        return ratio + " or more"
    if topped.get("sippy"):
        return ratio + " or less"
    return ratio


def summary(rates: dict[str, list[RateStep]], levels: dict[str, list[LevelStep]], out: TextIO) -> dict[str, object]:
    result: dict[str, object] = {}
    print("\nsummary", file=out)
    if rates:
        best = {name: best_rate(steps) for name, steps in rates.items()}
        topped = {name: bool(steps) and steps[-1].counts for name, steps in rates.items()}
        for name, value in best.items():
            held = [s for s in rates[name] if s.counts and s.offered == value]
            cpu = f", {held[0].cpu_ms_per_call:.2f} ms CPU per call there" if held else ""
            print(f"  max calls/s held, {name}: {_at_least(value, topped[name])}{cpu}", file=out)
        if "pbx" in best and "sippy" in best:
            print(f"  pbx / sippy calls/s: {_ratio_text(best['pbx'], best['sippy'], topped)}", file=out)
        result["max_cps"] = best
        result["max_cps_is_lower_bound"] = topped
    if levels:
        held_levels: dict[str, int] = {}
        per_thousand: dict[str, float | None] = {}
        level_topped = {name: bool(steps) and steps[-1].counts for name, steps in levels.items()}
        for name, steps in levels.items():
            best_step = best_level(steps)
            held_levels[name] = best_step.level if best_step else 0
            # Memory per call from the largest level held: the idle baseline
            # weighs least there.
            per_thousand[name] = best_step.mb_per_thousand if best_step else None
            memory = f", {best_step.mb_per_thousand:.1f} MB RSS per 1,000 calls" if best_step else ""
            peak = f" (peak RSS {best_step.usage.server_peak_rss_mb:.0f} MB)" if best_step else ""
            shown = _at_least(held_levels[name], level_topped[name])
            print(f"  concurrent calls held, {name}: {shown}{memory}{peak}", file=out)
        if "pbx" in held_levels and "sippy" in held_levels:
            ratio = _ratio_text(held_levels["pbx"], held_levels["sippy"], level_topped)
            print(f"  pbx / sippy concurrent calls: {ratio}", file=out)
        result["max_concurrent"] = held_levels
        result["max_concurrent_is_lower_bound"] = level_topped
        result["rss_mb_per_1000_calls"] = per_thousand
    return result


# --- main -----------------------------------------------------------------


def parse_numbers(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not numbers or any(n < 1 for n in numbers):
        raise argparse.ArgumentTypeError("give at least one number, each at least 1")
    return sorted(set(numbers))


def _names(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [n for n in names if n not in allowed]
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}; got {text!r}")
        return names

    return parse


def run(args: argparse.Namespace, out: TextIO) -> int:
    sipp = shutil.which(args.sipp)
    if sipp is None:
        raise BenchError(f"{args.sipp} not found: run `make deps` (Debian package sip-tester)")
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="call-rate-") as temp:
        workdir = Path(args.workdir) if args.workdir else Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        dialplan, users_file = workdir / "dialplan.yaml", workdir / "users.csv"
        users = write_users(args.callers + 1, dialplan, users_file)
        callee, callers = users[0], users[1:]
        callers_csv, callee_csv = workdir / "callers.csv", workdir / "callee.csv"
        callers_csv.write_text(sipp_csv(callers, domain=DEFAULT_DOMAIN))
        callee_csv.write_text(sipp_csv([callee], domain=DEFAULT_DOMAIN))
        for name in args.targets:
            if name == "pbx":
                command = shlex.split(args.server_command) if args.server_command else [sys.executable, "-m", "pbx"]
                targets.append(Pbx(command, list(args.pbx_arg), dialplan))
            else:
                sippy = shlex.split(args.sippy_command) if args.sippy_command else _sippy_command()
                targets.append(Sippy(sippy))
        pinning, pinned = Pinning.choose(args.server_cpu, args.sipp_cpu)
        load = Load(sipp, workdir, pinning, callee.extension, callers_csv, callee_csv)

        mode = "QUICK run (short steps: figures only show that it works)" if args.quick else "run"
        print(f"call_rate: {mode}; {pinned}; work files in {workdir}", file=out)
        print("  the machine may be shared with other work: figures are noisy", file=out)
        for target in targets:
            print(f"  {target.name}: {target.label}", file=out)
        print(
            "  loads differ: per call the PBX does one round trip more (407 challenge) and an MD5 digest check,\n"
            "  a registrar lookup and three CDR upserts (SQLite, WAL); Sippy does none of these.",
            file=out,
        )

        rates: dict[str, list[RateStep]] = {}
        levels: dict[str, list[LevelStep]] = {}
        if "cps" in args.tests:
            print(f"\ncalls per second: {args.duration} s per step, {args.talk_ms} ms of talk per call, "
                  f"rates {args.rates}", file=out)
            print(RATE_HEADER, file=out, flush=True)
            for target in targets:
                rates[target.name] = rate_ladder(target, load, args.rates, args.duration, args.talk_ms, out)
        if "concurrent" in args.tests:
            print(f"\nconcurrent calls: calls of {args.call_seconds} s, each level held {args.hold_seconds} s, "
                  f"levels {args.levels}", file=out)
            print(LEVEL_HEADER, file=out, flush=True)
            for target in targets:
                levels[target.name] = level_ladder(target, load, args.levels, args.call_seconds,
                                                   args.hold_seconds, out)
        result = summary(rates, levels, out)
        if args.results:
            path = Path(args.results)
            path.parent.mkdir(parents=True, exist_ok=True)
            document = {
                "quick": args.quick,
                "pinning": pinned,
                "targets": {t.name: t.label for t in targets},
                "duration_s": args.duration,
                "talk_ms": args.talk_ms,
                "call_seconds": args.call_seconds,
                "hold_seconds": args.hold_seconds,
                "rate_steps": [_step_json(s) for steps in rates.values() for s in steps],
                "level_steps": [_step_json(s) for steps in levels.values() for s in steps],
                **result,
            }
            path.write_text(json.dumps(document, indent=2) + "\n")
            print(f"results written to {path}", file=out)
    return 0


def _step_json(step: RateStep | LevelStep) -> dict[str, object]:
    document = asdict(step)
    document["counts"] = step.counts
    document["problems"] = step.problems
    if isinstance(step, RateStep):
        document["achieved"] = step.achieved
        document["cpu_ms_per_call"] = step.cpu_ms_per_call
    else:
        document["mb_per_thousand"] = step.mb_per_thousand
    return document


def _sippy_command() -> list[str]:
    script = Path(sys.executable).with_name("b2bua")
    if not script.exists():
        raise BenchError(f"Sippy B2BUA not found at {script}: `{sys.executable} -m pip install sippy`")
    return [str(script)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"short ladders to check the script: rates {','.join(map(str, QUICK_RATES))}, 10 s steps, "
                             f"levels {','.join(map(str, QUICK_LEVELS))} with calls of 10 s")
    parser.add_argument("--targets", type=_names(["pbx", "sippy"]), default=["pbx", "sippy"],
                        help="pbx,sippy (default both)")
    parser.add_argument("--tests", type=_names(["cps", "concurrent"]), default=["cps", "concurrent"],
                        help="cps,concurrent (default both)")
    parser.add_argument("--rates", type=parse_numbers, default=None, help="calls/s ladder, e.g. 100,200,400")
    parser.add_argument("--duration", type=int, default=None, help="seconds per rate step (default 30)")
    parser.add_argument("--talk-ms", type=int, default=500, help="talk time of a short call (default 500 ms)")
    parser.add_argument("--levels", type=parse_numbers, default=None, help="concurrent-call ladder")
    parser.add_argument("--call-seconds", type=int, default=None, help="length of a call at a level (default 60)")
    parser.add_argument("--hold-seconds", type=int, default=None, help="time a level is held (default 30)")
    parser.add_argument("--callers", type=int, default=100, help="calling extensions (default 100)")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU for the server (default 0)")
    parser.add_argument("--sipp-cpu", type=int, default=1, help="CPU for both SIPp (default 1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--sipp", default="sipp", help="SIPp binary")
    parser.add_argument("--server-command", default=None, help="instead of `python -m pbx`")
    parser.add_argument("--pbx-arg", action="append", default=[],
                        help="extra `pbx serve` option, e.g. --pbx-arg=--log-level=warning")
    parser.add_argument("--sippy-command", default=None, help="instead of the venv's `b2bua` script")
    parser.add_argument("--workdir", default=None, help="keep dialplan, databases, logs and statistics here")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help=f"JSON results (default {DEFAULT_RESULTS})")
    args = parser.parse_args(argv)
    args.rates = args.rates or list(QUICK_RATES if args.quick else DEFAULT_RATES)
    args.levels = args.levels or list(QUICK_LEVELS if args.quick else DEFAULT_LEVELS)
    args.duration = args.duration or (10 if args.quick else 30)
    args.call_seconds = args.call_seconds or (10 if args.quick else 60)
    args.hold_seconds = args.hold_seconds or (5 if args.quick else 30)
    if args.no_pin:
        args.server_cpu = args.sipp_cpu = None
    if min(args.duration, args.call_seconds, args.hold_seconds, args.callers) < 1 or args.talk_ms < 0:
        parser.error("durations and --callers must be at least 1, --talk-ms not negative")
    try:
        return run(args, sys.stdout)
    except BenchError as error:
        print(f"call_rate: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
