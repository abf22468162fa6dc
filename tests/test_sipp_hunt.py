"""A ring_all hunt group under load through a real `pbx serve`: SIPp callers
(sipp-scenarios/call_uac.xml) dial group 600, whose three members are SIPp
phones that answer at once (sipp-scenarios/hunt_member_uas.xml), so every
call is a race the first 200 wins and the others lose to a CANCEL with
"Call completed elsewhere" (or cross it, and are ACKed and BYEd).

Checked against SIPp's counts and the database: no failed call, one
ANSWERED `cdr` row per caller Call-ID with hunt_group 600 and the member
that answered, three leg rows per call (one ANSWERED). Here at 10 calls per
second for 5 s; bench/hunt_rate.py runs the same at 50 per second for 30 s
and prints the table.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from pbx.store.db import make_engine
from tests.server import run_server
from tests.test_sipp_calls import (
    CALLERS,
    SCENARIOS,
    TALK_MS,
    cdr_rows,
    dialplan_text as calls_dialplan,
    free_udp_port,
    kill_group,
    last_statistics,
    leg_rows,
    logged_call_ids,
    password,
    sipp_binary,
    users_csv,
)

GROUP: Final = "600"
MEMBERS: Final = ["2101", "2102", "2103"]


def dialplan_text() -> str:
    return calls_dialplan([*MEMBERS, *CALLERS]) + "hunt_groups:\n" + (
        f'  "{GROUP}": {{name: Sales, strategy: ring_all, members: [' + ", ".join(f'"{m}"' for m in MEMBERS) + "]}\n")


@dataclass
class Result:
    calls: int
    successful: int
    failed: int
    retransmissions: int
    rows: int
    answered_rows: int
    with_answered_by: int
    legs_per_call: Counter[int]
    answered_by: Counter[str]
    context: str


def _popen(workdir: Path, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    with (workdir / f"{name}.out").open("wb") as output:
        return subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)


@contextmanager
def member(sipp: str, target: str, workdir: Path, extension: str,
           scenario: str = "hunt_member_uas") -> Iterator[subprocess.Popen[bytes]]:
    """Register ``extension`` from a free port, then play ``scenario`` there."""
    (workdir / f"{extension}.csv").write_text(users_csv([extension]))
    for _ in range(5):
        port = free_udp_port()
        register = subprocess.run(
            [sipp, target, "-sf", str(SCENARIOS / "register_auth.xml"), "-inf", f"{extension}.csv", "-t", "u1",
             "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-recv_timeout", "5000", "-timeout", "20",
             "-timeout_error", "-default_behaviors", "none", "-nostdin"],
            cwd=workdir, capture_output=True, text=True, errors="replace", timeout=60)
        if register.returncode == 0:
            break
    else:
        raise RuntimeError(f"could not register SIPp member {extension}")
    process = _popen(workdir, f"member-{extension}", [
        sipp, "-sf", str(SCENARIOS / f"{scenario}.xml"), "-t", "u1", "-i", "127.0.0.1", "-p", str(port),
        "-nostdin", "-trace_logs", "-log_file", f"member-{extension}.log", "-trace_err", "-error_file",
        f"member-{extension}-errors.log"])
    try:
        time.sleep(0.3)
        if process.poll() is not None:
            raise RuntimeError(f"SIPp member {extension} exited at start")
        yield process
    finally:
        kill_group(process)


def run_load(workdir: Path, db_url: str, *, rate: int, seconds: int) -> Result:
    """Place ``rate`` x ``seconds`` calls into the group; count and check."""
    calls = rate * seconds
    plan = workdir / "dialplan.yaml"
    plan.write_text(dialplan_text())
    sipp = sipp_binary()
    with run_server(plan, db_url, ["udp:127.0.0.1:0"]) as server:
        target = f"127.0.0.1:{server.udp_port}"
        with ExitStack() as stack:
            for extension in MEMBERS:
                stack.enter_context(member(sipp, target, workdir, extension))
            (workdir / "callers.csv").write_text(users_csv(CALLERS))
            callers = _popen(workdir, "uac", [
                sipp, target, "-sf", str(SCENARIOS / "call_uac.xml"), "-inf", "callers.csv", "-s", GROUP,
                "-t", "u1", "-i", "127.0.0.1", "-p", str(free_udp_port()), "-r", str(rate), "-m", str(calls),
                "-d", str(TALK_MS), "-recv_timeout", "10000", "-timeout", str(seconds + 90), "-timeout_error",
                "-nostdin", "-trace_logs", "-log_file", "uac.log", "-trace_err", "-error_file", "uac-errors.log",
                "-trace_stat", "-stf", "uac-stat.csv", "-fd", "1"])
            try:
                callers.wait(timeout=seconds + 120)
            finally:
                kill_group(callers)
            time.sleep(1.0)  # the last losers' BYEs
        context = (workdir / "uac.out").read_text(errors="replace")[-2000:] + server.output()[-2000:]
    stats = last_statistics(workdir / "uac-stat.csv")
    completed = logged_call_ids(workdir / "uac.log", "completed")
    engine = make_engine(db_url)
    try:
        rows, legs = cdr_rows(engine), leg_rows(engine)
    finally:
        engine.dispose()
    ours = [row for row in rows if row["call_id"] in set(completed)]
    per_call = Counter(leg["call_uuid"] for leg in legs)
    return Result(
        calls=calls, successful=int(stats["SuccessfulCall(C)"]), failed=int(stats["FailedCall(C)"]),
        retransmissions=int(stats["Retransmissions(C)"]), rows=len(rows),
        answered_rows=sum(1 for row in ours if row["disposition"] == "ANSWERED" and row["hunt_group"] == GROUP),
        with_answered_by=sum(1 for row in ours if row["answered_by"] in MEMBERS),
        legs_per_call=Counter(per_call[row["call_uuid"]] for row in rows),
        answered_by=Counter(str(row["answered_by"]) for row in rows),
        context=context,
    )


@pytest.mark.e2e
@pytest.mark.load
@pytest.mark.timeout(240)
def test_ring_all_group_under_load_answers_every_call_once(tmp_path: Path) -> None:
    result = run_load(tmp_path, f"sqlite:///{tmp_path / 'pbx.sqlite3'}", rate=10, seconds=5)
    assert result.successful == result.calls and result.failed == 0, result.context
    assert result.rows == result.calls
    assert result.answered_rows == result.calls  # one ANSWERED row per call, of group 600
    assert result.with_answered_by == result.calls
    assert result.legs_per_call == {len(MEMBERS): result.calls}  # every member rang for every call
    assert set(result.answered_by) <= set(MEMBERS)
