"""Call load through a real `pbx serve`, driven by SIPp, checked against the CDRs.

SIPp plays both phones (sipp-scenarios/call_uac.xml and call_uas.xml): the
callee registers as extension 2000 (register_auth.xml from the port it then
answers on), the callers are extensions 2001-2020 and every call is
INVITE, 407, ACK, INVITE with credentials, 100/180/200, ACK, half a second
of talk, BYE, 200.  Each SIPp writes the Call-ID of every call it completed
to its log, and the tests compare those with the `cdr` table:

- load: 100 calls per second for 10 s (longer holds are bench/'s:
  `make bench-calls`); SIPp sees no failed call and the
  table holds exactly one ANSWERED row per caller Call-ID, each with the one
  leg the callee saw;
- crash: `kill -9` of the server group in the middle of 50 calls per second,
  then a restart on the same ports and database.  The PBX answers a BYE only
  after the call's CDR is committed, so every call SIPp saw completed (its
  BYE answered 200) has its ANSWERED row; the rows open at the moment of the
  kill (read from the database before the restart) come back INTERRUPTED,
  and no other row does; no Call-ID or call_uuid appears twice.

Both run against SQLite and against PostgreSQL (a private schema, as in
tests/store).  Select them with `-m load`.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest
from sqlalchemy import Engine, select

from pbx.cdr.writer import CDR, CDR_LEGS, INTERRUPTED_REASON
from pbx.store.db import make_engine
from tests.server import REPO_ROOT, RunningServer, run_server
from tests.store.conftest import db_url

__all__ = ["db_url"]

pytestmark = [pytest.mark.e2e, pytest.mark.load]

SCENARIOS: Final = REPO_ROOT / "sipp-scenarios"
DOMAIN: Final = "pbx.example.com"
CALLEE: Final = "2000"
CALLERS: Final = [str(n) for n in range(2001, 2021)]
TALK_MS: Final = 500  # between the ACK and the BYE


def password(extension: str) -> str:
    return f"load-{extension}-secret"


def dialplan_text(extensions: list[str] | None = None) -> str:
    # SIPp 3.6 answers the first challenge and knows only MD5, so the
    # registrar offers MD5 alone.  The lock-out is lenient: every call starts
    # with a 407 from 127.0.0.1, and a block would hide the real failure; so
    # is the per-source limit of unauthenticated requests (SIPp is one source).
    lines = [
        f"domain: {DOMAIN}",
        "registrar: {auth_algorithms: [MD5]}",
        "security: {max_auth_failures: 100000, failure_window: 60, block_seconds: 1,"
        " unauthenticated_per_second: 100000, unauthenticated_burst: 100000, source_packets_per_second: 1000000}",
        "departments:",
        "  load: {name: Load}",
        "extensions:",
    ]
    # The callee is one SIPp UAS taking every call: no call-waiting limit.
    for extension in extensions or [CALLEE, *CALLERS]:
        lines.append(f'  "{extension}": {{name: Load {extension}, department: load, password: {password(extension)},'
                     ' max_calls: 100000}')
    return "\n".join(lines) + "\n"


def users_csv(extensions: list[str]) -> str:
    """A SIPp injection file: user;password;domain per line."""
    return "\n".join(["SEQUENTIAL", *(f"{e};{password(e)};{DOMAIN}" for e in extensions)]) + "\n"


def sipp_binary() -> str:
    found = shutil.which("sipp")
    if found is None:
        pytest.fail("sipp is not installed: run `make deps` (Debian package sip-tester)")
    return found


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 now, for a SIPp socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def last_statistics(path: Path) -> dict[str, str]:
    """The final row of SIPp's -trace_stat file, by column name."""
    with path.open(newline="") as stream:
        rows = [row for row in csv.reader(stream, delimiter=";") if row]
    assert len(rows) >= 2, f"SIPp wrote no statistics row to {path}"
    return dict(zip(rows[0], rows[-1]))


def logged_call_ids(path: Path, tag: str) -> list[str]:
    """Call-IDs of the `TAG CALL-ID ...` lines a scenario's <log> wrote."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text(errors="replace").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == tag:
            found.append(words[1])
    return found


def kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@dataclass
class Phones:
    """The SIPp callee and callers around one server, files in `workdir`."""

    sipp: str
    workdir: Path
    server: RunningServer

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.udp_port}"

    def _popen(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.out").open("wb") as output:
            return subprocess.Popen(
                argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self, name: str) -> str:
        path = self.workdir / f"{name}.out"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    @contextmanager
    def callee(self, calls: int | None) -> Iterator[subprocess.Popen[bytes]]:
        """Register extension 2000 from a free port, then answer calls there
        (`calls`: exit after that many, None: until killed)."""
        (self.workdir / "callee.csv").write_text(users_csv([CALLEE]))
        for _ in range(5):  # the port may be taken between probe and bind
            port = free_udp_port()
            register = subprocess.run(
                [
                    self.sipp, self.target, "-sf", str(SCENARIOS / "register_auth.xml"),
                    "-inf", "callee.csv", "-t", "u1", "-i", "127.0.0.1", "-p", str(port), "-m", "1",
                    "-recv_timeout", "5000", "-timeout", "20", "-timeout_error",
                    "-default_behaviors", "none", "-nostdin",
                ],
                cwd=self.workdir, capture_output=True, text=True, errors="replace", timeout=60,
            )  # fmt: skip
            if register.returncode == 0:
                break
            assert "bind" in (register.stdout + register.stderr).lower(), register.stdout[-2000:]
        else:
            pytest.fail("could not register the SIPp callee from a free port")
        argv = [
            self.sipp, "-sf", str(SCENARIOS / "call_uas.xml"), "-t", "u1", "-i", "127.0.0.1", "-p", str(port),
            "-nostdin", "-trace_logs", "-log_file", "uas.log", "-trace_err", "-error_file", "uas-errors.log",
            "-trace_stat", "-stf", "uas-stat.csv", "-fd", "1",
        ]
        if calls is not None:
            argv += ["-m", str(calls)]
        process = self._popen("uas", argv)
        try:
            time.sleep(0.3)
            assert process.poll() is None, f"SIPp callee exited at start:\n{self.output('uas')}"
            yield process
        finally:
            kill_group(process)

    def start_callers(self, *, rate: int, calls: int) -> subprocess.Popen[bytes]:
        """SIPp placing `calls` calls at `rate` per second to extension 2000."""
        (self.workdir / "callers.csv").write_text(users_csv(CALLERS))
        argv = [
            self.sipp, self.target, "-sf", str(SCENARIOS / "call_uac.xml"), "-inf", "callers.csv",
            "-s", CALLEE, "-t", "u1", "-i", "127.0.0.1", "-p", str(free_udp_port()),
            "-r", str(rate), "-m", str(calls), "-d", str(TALK_MS),
            "-recv_timeout", "10000",  # ms: a lost exchange fails the call, not the run
            "-timeout", str(calls // rate + 90), "-timeout_error",
            "-nostdin", "-trace_logs", "-log_file", "uac.log", "-trace_err", "-error_file", "uac-errors.log",
            "-trace_stat", "-stf", "uac-stat.csv", "-fd", "1",
        ]  # fmt: skip
        return self._popen("uac", argv)

    def context(self) -> str:
        errors = self.workdir / "uac-errors.log"
        text = errors.read_text(errors="replace")[:3000] if errors.exists() else ""
        return f"callers:\n{self.output('uac')}\nerrors:\n{text}\nserver:\n{self.server.output()[-3000:]}"


def cdr_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(CDR))]


def leg_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(CDR_LEGS))]


def assert_no_duplicates(rows: list[dict[str, Any]]) -> None:
    for column in ("call_uuid", "call_id"):
        repeated = [value for value, count in Counter(row[column] for row in rows).items() if count > 1]
        assert not repeated, f"{column} appears more than once: {repeated[:10]}"


@pytest.fixture
def dialplan(tmp_path: Path) -> Path:
    path = tmp_path / "dialplan.yaml"
    path.write_text(dialplan_text())
    return path


LOAD_RATE: Final = 100
LOAD_SECONDS: Final = 10


@pytest.mark.timeout(240)
def test_hundred_calls_per_second_for_ten_seconds(tmp_path: Path, dialplan: Path, db_url: str) -> None:
    calls = LOAD_RATE * LOAD_SECONDS
    with run_server(dialplan, db_url, ["udp:127.0.0.1:0"]) as server:
        phones = Phones(sipp_binary(), tmp_path, server)
        with phones.callee(calls) as callee:
            callers = phones.start_callers(rate=LOAD_RATE, calls=calls)
            try:
                code = callers.wait(timeout=LOAD_SECONDS + 120)
            finally:
                kill_group(callers)
            try:  # with its -m count it ends once it has answered every BYE
                callee_code: int | None = callee.wait(timeout=30)
            except subprocess.TimeoutExpired:
                callee_code = None
        context = phones.context()

    stats = last_statistics(tmp_path / "uac-stat.csv")
    assert code == 0, context
    assert int(stats["SuccessfulCall(C)"]) == calls, context
    assert int(stats["FailedCall(C)"]) == 0, context
    completed = logged_call_ids(tmp_path / "uac.log", "completed")
    assert len(completed) == calls and len(set(completed)) == calls, context
    assert callee_code == 0, f"the SIPp callee did not finish its {calls} calls (exit {callee_code})\n{context}"
    callee_saw = logged_call_ids(tmp_path / "uas.log", "uas-completed")
    assert len(callee_saw) == calls and len(set(callee_saw)) == calls

    # No waiting here: each BYE was answered only after its row was committed.
    engine = make_engine(db_url)
    try:
        rows, legs = cdr_rows(engine), leg_rows(engine)
    finally:
        engine.dispose()
    assert_no_duplicates(rows)
    assert len(rows) == calls
    assert {row["call_id"] for row in rows} == set(completed)
    assert Counter(row["disposition"] for row in rows) == {"ANSWERED": calls}
    assert all(row["ended_at"] is not None and row["answered_at"] is not None for row in rows)
    assert {(row["caller_number"], row["destination"]) for row in rows} <= {(c, CALLEE) for c in CALLERS}
    # One leg per call, the one the callee answered and saw hung up.
    assert Counter(leg["call_uuid"] for leg in legs) == {row["call_uuid"]: 1 for row in rows}
    assert {leg["call_id"] for leg in legs} == set(callee_saw)
    assert {leg["result"] for leg in legs} == {"ANSWERED"}


CRASH_RATE: Final = 50
CRASH_SECONDS: Final = 9
ENDED_BEFORE_KILL: Final = 150  # ~3 s of calls at 50/s


def wait_for_ended_rows(engine: Engine, count: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    query = select(CDR.c.id).where(CDR.c.ended_at.is_not(None))
    while True:
        with engine.connect() as conn:
            if len(conn.execute(query).all()) >= count:
                return
        assert process.poll() is None, "SIPp stopped before the crash"
        assert time.monotonic() < deadline, f"fewer than {count} calls ended in {timeout} s"
        time.sleep(0.2)


@pytest.mark.timeout(240)
def test_kill_9_mid_load_keeps_every_completed_call(tmp_path: Path, dialplan: Path, db_url: str) -> None:
    calls = CRASH_RATE * CRASH_SECONDS
    engine = make_engine(db_url)
    try:
        with run_server(dialplan, db_url, ["udp:127.0.0.1:0"]) as server:
            phones = Phones(sipp_binary(), tmp_path, server)
            with phones.callee(None):
                callers = phones.start_callers(rate=CRASH_RATE, calls=calls)
                try:
                    wait_for_ended_rows(engine, ENDED_BEFORE_KILL, callers, timeout=60)
                    os.killpg(server.process.pid, signal.SIGKILL)
                    server.process.wait(timeout=10)
                    # What the dead server left: open rows are the calls in flight.
                    at_kill = {row["call_uuid"]: row for row in cdr_rows(engine)}
                    restarted_at = datetime.now(UTC)
                    server.restart()  # same ports, same database
                    code = callers.wait(timeout=CRASH_SECONDS + 120)
                finally:
                    kill_group(callers)
            context = phones.context()
            # Calls the restarted server took have all ended by now: their
            # BYEs were answered, or they never got past the challenge.
            rows = cdr_rows(engine)
    finally:
        engine.dispose()

    assert code in (0, 1), context  # 1: calls cut by the crash failed; 255 would be SIPp's own error
    completed = logged_call_ids(tmp_path / "uac.log", "completed")
    assert len(completed) == len(set(completed))
    in_flight = {uuid for uuid, row in at_kill.items() if row["ended_at"] is None}
    ended_at_kill = {uuid: row for uuid, row in at_kill.items() if row["ended_at"] is not None}
    assert in_flight, "no call was in progress at the kill: the crash tested nothing"
    assert len(ended_at_kill) >= ENDED_BEFORE_KILL

    assert_no_duplicates(rows)
    by_call_id = {row["call_id"]: row for row in rows}
    by_uuid = {row["call_uuid"]: row for row in rows}
    missing = [call_id for call_id in completed if call_id not in by_call_id]
    assert not missing, f"{len(missing)} calls SIPp saw completed have no CDR: {missing[:10]}\n{context}"
    for call_id in completed:
        row = by_call_id[call_id]
        assert row["disposition"] == "ANSWERED" and row["ended_at"] is not None, row

    interrupted = {uuid for uuid, row in by_uuid.items() if row["disposition"] == "INTERRUPTED"}
    assert interrupted == in_flight, context
    for uuid in in_flight:
        assert by_uuid[uuid]["reason"] == INTERRUPTED_REASON and by_uuid[uuid]["ended_at"] is not None
        # Ended when last known alive, before the kill: not at the restart.
        assert by_uuid[uuid]["ended_at"] <= restarted_at, by_uuid[uuid]
    for uuid, before in ended_at_kill.items():  # what was closed stays as it was
        assert by_uuid[uuid]["ended_at"] == before["ended_at"]
        assert by_uuid[uuid]["disposition"] == before["disposition"]
    still_open = [row["call_id"] for row in rows if row["ended_at"] is None]
    assert not still_open, f"calls left open after the run: {still_open[:10]}\n{context}"
    # The restarted server took calls too, and they completed.
    after_restart = [call_id for call_id in completed if by_call_id[call_id]["started_at"] > restarted_at]
    assert after_restart, f"no call completed after the restart\n{context}"
