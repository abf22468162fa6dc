"""Prompted calls under load through a real `pbx serve`: SIPp callers
(sipp-scenarios/account_code_uac.xml) dial abroad from restricted phones,
hear the code prompt, key the code with RFC 4733 events, and are put
through to a SIPp provider behind the trunk (call_uas.xml), media moved to
it by a re-INVITE; then they hang up.

Checked against SIPp's counts and the database: no failed call, one
ANSWERED `cdr` row per caller Call-ID with the code's id and owner. Here at
5 calls per second for 5 s; bench/account_code_rate.py runs it at 20 per
second for 30 s and prints the table with the server's CPU per call.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from collections.abc import Callable
from typing import Final

import pytest

from pbx.store.codes import CodeStore
from pbx.store.db import make_engine, migrate
from tests.server import run_server
from tests.test_sipp_hunt import _popen
from tests.test_sipp_calls import (CALLERS, DOMAIN, SCENARIOS, cdr_rows, free_udp_port, kill_group, last_statistics,
                                   logged_call_ids, password, sipp_binary, users_csv)

CODE: Final = "483948"   # what dtmf_code.pcap keys (then #)
OWNER: Final = "Trần Thị Bích"
DIALLED: Final = "0081312345678"
KEY: Final = "6a" * 32


def dialplan_text(gateway: int) -> str:
    lines = [
        f"domain: {DOMAIN}",
        "registrar: {auth_algorithms: [MD5]}",
        "security: {max_auth_failures: 100000, failure_window: 60, block_seconds: 1,"
        " unauthenticated_per_second: 100000, unauthenticated_burst: 100000, source_packets_per_second: 1000000,"
        " outside_calls: {simultaneous: 1000, per_minute: 10000}}",
        "account_codes: {first_digit_timeout: 10, digit_timeout: 3}",
        "departments:",
        "  lobby: {name: Lobby, class_of_service: local_only, account_codes: restricted, caller_id: \"02873000100\"}",
        "number_plans:",
        "  vietnam:",
        '    - {pattern: "00 .", class: international}',
        '    - {pattern: "[2-9] XXX XXXX", class: local}',
        "classes_of_service:",
        "  local_only: {allow: [local]}",
        "  management: {allow: [local, international]}",
        "trunks:",
        f"  provider: {{gateways: [{{host: 127.0.0.1, port: {gateway}}}], rewrites: [{{match: '00', strip: 2,"
        " prepend: '+'}]}",
        "routes:",
        '  - {name: out, pattern: "X.", trunk: provider}',
        'media: {rtp_ports: "34000-35999", language: en}',
        "extensions:",
    ]
    for extension in CALLERS:
        lines.append(f'  "{extension}": {{name: Lobby {extension}, department: lobby, password: {password(extension)}}}')
    return "\n".join(lines) + "\n"


@dataclass
class Result:
    calls: int
    successful: int
    failed: int
    retransmissions: int
    rows: int
    with_owner: int
    cpu_seconds: float
    context: str

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_seconds / max(1, self.calls)


def run_load(workdir: Path, db_url: str, *, rate: int, seconds: int,
             cpu: Callable[[int], float] | None = None) -> Result:
    """Place ``rate`` x ``seconds`` prompted calls; count and check.
    ``cpu(pid)``: CPU seconds the server's process group used so far (the
    bench's /proc reader), to report the server's CPU per call."""
    calls = rate * seconds
    os.environ["PBX_ACCOUNT_CODE_KEY"] = KEY   # the server inherits it
    engine = make_engine(db_url)
    try:
        migrate(engine)
        code = CodeStore(engine, bytes.fromhex(KEY)).add(CODE, owner=OWNER, class_of_service="management",
                                                         now=datetime.now(UTC))
    finally:
        engine.dispose()
    shutil.copy(SCENARIOS / "dtmf_code.pcap", workdir)
    gateway = free_udp_port()
    plan = workdir / "dialplan.yaml"
    plan.write_text(dialplan_text(gateway))
    sipp = sipp_binary()
    with run_server(plan, db_url, ["udp:127.0.0.1:0"]) as server:
        target = f"127.0.0.1:{server.udp_port}"
        provider = _popen(workdir, "provider", [
            sipp, "-sf", str(SCENARIOS / "call_uas.xml"), "-t", "u1", "-i", "127.0.0.1", "-p", str(gateway),
            "-mp", str(free_udp_port()), "-nostdin", "-trace_logs", "-log_file", "provider.log", "-trace_err",
            "-error_file", "provider-errors.log"])
        try:
            time.sleep(0.3)
            (workdir / "callers.csv").write_text(users_csv(CALLERS))
            before = cpu(server.process.pid) if cpu is not None else 0.0
            callers = _popen(workdir, "uac", [
                sipp, target, "-sf", str(SCENARIOS / "account_code_uac.xml"), "-inf", "callers.csv", "-s", DIALLED,
                "-t", "u1", "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port()),
                "-r", str(rate), "-m", str(calls), "-recv_timeout", "20000", "-timeout", str(seconds + 90),
                "-timeout_error", "-nostdin", "-trace_logs", "-log_file", "uac.log", "-trace_err", "-error_file",
                "uac-errors.log", "-trace_stat", "-stf", "uac-stat.csv", "-fd", "1"])
            try:
                callers.wait(timeout=seconds + 120)
            finally:
                kill_group(callers)
            time.sleep(1.0)
            used = cpu(server.process.pid) - before if cpu is not None else 0.0
        finally:
            kill_group(provider)
        context = (workdir / "uac.out").read_text(errors="replace")[-2000:] + server.output()[-2000:]
    stats = last_statistics(workdir / "uac-stat.csv")
    completed = set(logged_call_ids(workdir / "uac.log", "completed"))
    engine = make_engine(db_url)
    try:
        rows = cdr_rows(engine)
    finally:
        engine.dispose()
    ours = [row for row in rows if row["call_id"] in completed]
    return Result(
        calls=calls, successful=int(stats["SuccessfulCall(C)"]), failed=int(stats["FailedCall(C)"]),
        retransmissions=int(stats["Retransmissions(C)"]), rows=len(rows),
        with_owner=sum(1 for row in ours if (row["disposition"], row["account_code"], row["account_owner"])
                       == ("ANSWERED", str(code.id), OWNER)),
        cpu_seconds=used, context=context)


@pytest.mark.e2e
@pytest.mark.load
@pytest.mark.timeout(240)
def test_prompted_calls_under_load_all_go_through_with_their_owner(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBX_ACCOUNT_CODE_KEY", KEY)
    result = run_load(tmp_path, f"sqlite:///{tmp_path / 'pbx.sqlite3'}", rate=5, seconds=5)
    assert result.successful == result.calls and result.failed == 0, result.context
    assert result.rows == result.calls
    assert result.with_owner == result.calls
