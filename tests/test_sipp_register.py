"""1,000 users register with digest authentication, driven by SIPp.

A real `pbx serve` (temp SQLite database, port 0 on 127.0.0.1) against
sipp-scenarios/register_auth.xml: REGISTER, 401 challenge, REGISTER with
credentials, 200 (RFC 3261 §10.2, §22.4).  Every user must register: SIPp's
exit code is 0 and its statistics file counts 1,000 successful calls, no
failed ones.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from tests.server import REPO_ROOT, run_server

pytestmark = pytest.mark.e2e

USERS: Final = 1000
RATE: Final = 200  # REGISTER exchanges started per second
SCENARIO: Final = REPO_ROOT / "sipp-scenarios" / "register_auth.xml"
MAKE_USERS: Final = REPO_ROOT / "bench" / "make_users.py"


def sipp_binary() -> str:
    found = shutil.which("sipp")
    if found is None:
        pytest.fail("sipp is not installed: run `make deps` (Debian package sip-tester)")
    return found


def last_statistics(path: Path) -> dict[str, str]:
    """The final row of SIPp's -trace_stat file, by column name."""
    with path.open(newline="") as stream:
        rows = [row for row in csv.reader(stream, delimiter=";") if row]
    assert len(rows) >= 2, f"SIPp wrote no statistics row to {path}"
    return dict(zip(rows[0], rows[-1]))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_thousand_users_register_with_digest(tmp_path: Path, transport: str) -> None:
    sipp = sipp_binary()
    dialplan, users_csv = tmp_path / "dialplan.yaml", tmp_path / "users.csv"
    subprocess.run(
        [sys.executable, str(MAKE_USERS), "--count", str(USERS), "--dialplan", str(dialplan), "--csv", str(users_csv)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    db_url = f"sqlite:///{tmp_path / 'pbx.sqlite3'}"
    stat_file = tmp_path / "stat.csv"
    error_file = tmp_path / "errors.log"

    with run_server(dialplan, db_url, [f"{transport}:127.0.0.1:0"]) as server:
        port = server.udp_port if transport == "udp" else server.tcp_port
        command = [
            sipp, f"127.0.0.1:{port}",
            "-sf", str(SCENARIO),
            "-inf", str(users_csv),
            "-t", "u1" if transport == "udp" else "t1",
            "-i", "127.0.0.1",
            "-m", str(USERS),
            "-r", str(RATE),
            "-recv_timeout", "10000",        # ms: a lost exchange fails, not hangs
            "-timeout", "60", "-timeout_error",
            "-default_behaviors", "none",    # never send a BYE for a REGISTER
            "-nostdin",
            "-trace_stat", "-stf", str(stat_file), "-fd", "1",
            "-trace_err", "-error_file", str(error_file),
        ]  # fmt: skip
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, errors="replace", timeout=120)
        server_output = server.output()

    errors = error_file.read_text(errors="replace")[:3000] if error_file.exists() else ""
    context = f"sipp exit {result.returncode}\n{result.stdout[-3000:]}\nerrors:\n{errors}\nserver:\n{server_output[-3000:]}"
    statistics = last_statistics(stat_file)
    assert result.returncode == 0, context
    assert int(statistics["SuccessfulCall(C)"]) == USERS, context
    assert int(statistics["FailedCall(C)"]) == 0, context
