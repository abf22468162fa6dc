"""``pbx ext suspend|resume|retire`` against a real `pbx serve`: the
dialplan file is edited round-trip (comments kept), the server reloads,
the suspended extension's registration is dropped at once, it can no
longer register or call, calls to it are refused 480, and resuming gives
it all back."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pbx.routing.loader import load_dialplan
from tests.server import RunningServer, run_server
from tests.sipclient import SipClient

DOMAIN = "pbx.example.com"
PLAN = """\
# The office.
domain: pbx.example.com
departments:
  sales: {name: Sales}
extensions:
  1001: {name: An, department: sales, password: an-secret-1001}   # the director
  1002:
    name: Binh                # leaves at the end of the month
    department: sales
    password: binh-secret-1002
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    with run_server(path, f"sqlite:///{tmp_path / 'pbx.sqlite3'}", ["udp:127.0.0.1:0"]) as server:
        yield server, path


def pbx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pbx", *args], capture_output=True, text=True, timeout=30)


def register(server: RunningServer, user: str, password: str) -> int | None:
    with SipClient("udp", ("127.0.0.1", server.udp_port)) as phone:
        response = phone.register(user, password, DOMAIN, expires=300)
    return None if response is None else response.status


def call(server: RunningServer, user: str, password: str, number: str) -> tuple[int | None, str | None]:
    with SipClient("udp", ("127.0.0.1", server.udp_port)) as phone:
        _, second = phone.invite(user, password, number, DOMAIN)
    return (None, None) if second is None else (second.status, second.get("reason"))


@pytest.mark.e2e
def test_suspend_drops_the_registration_and_refuses_calls_and_resume_gives_them_back(
        served: tuple[RunningServer, Path]) -> None:
    server, path = served
    assert register(server, "1002", "binh-secret-1002") == 200

    done = pbx("ext", "suspend", "1002", "--dialplan", str(path), "--pid-file", str(server.pid_file))
    assert done.returncode == 0, done.stderr
    assert f"asked pbx serve (pid {server.process.pid}) to reload" in done.stdout
    text = path.read_text()
    assert "# leaves at the end of the month" in text and "# the director" in text
    assert load_dialplan(path).extensions["1002"].status == "suspended"
    server.wait_lines("dialplan_reloaded")
    dropped = server.wait_lines("bindings_dropped")
    assert '"aor":"1002","state":"suspended","count":1' in dropped[0]

    assert register(server, "1002", "binh-secret-1002") == 403
    assert call(server, "1001", "an-secret-1001", "1002") == (480, 'SIP;cause=480;text="extension_suspended"')
    status, _ = call(server, "1002", "binh-secret-1002", "1001")
    assert status == 403

    done = pbx("ext", "resume", "1002", "--dialplan", str(path), "--pid-file", str(server.pid_file))
    assert done.returncode == 0, done.stderr
    assert "status" not in path.read_text()
    server.wait_lines("dialplan_reloaded", 2)
    assert register(server, "1002", "binh-secret-1002") == 200


def test_unknown_extensions_are_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    refused = pbx("ext", "retire", "1099", "--dialplan", str(path), "--pid-file", str(tmp_path / "none.pid"))
    assert refused.returncode == 1 and "no extension 1099" in refused.stderr
    assert path.read_text() == PLAN
    done = pbx("ext", "retire", "1002", "--dialplan", str(path), "--pid-file", str(tmp_path / "none.pid"))
    assert done.returncode == 0 and "no server was asked to reload" in done.stdout
    shown = pbx("ext", "show", "--dialplan", str(path))
    assert [line.split()[:2] for line in shown.stdout.splitlines()] == [["1001", "active"], ["1002", "retired"]]


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_a_temporary_number_expires_by_itself(tmp_path: Path) -> None:
    # valid_until has minute resolution: the next whole minute at least 8 s
    # away (the plan has no time zone: UTC). No reload, no command: the
    # server's sweep drops the registration once the minute passes.
    now = datetime.now(UTC)
    until = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (until - now).total_seconds() < 8:
        until += timedelta(minutes=1)
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN + "  1005: {name: Expo desk, department: sales, password: expo-secret-1005,"
                    f" valid_until: \"{until:%Y-%m-%d %H:%M}\"}}\n")
    with run_server(path, f"sqlite:///{tmp_path / 'pbx.sqlite3'}", ["udp:127.0.0.1:0"]) as server:
        assert register(server, "1005", "expo-secret-1005") == 200
        dropped = server.wait_lines("bindings_dropped", timeout=(until - now).total_seconds() + 20)
        assert datetime.now(UTC) >= until
        assert '"aor":"1005","state":"expired","count":1' in dropped[0]
        assert server.lines_with("dialplan_reloaded") == []
        assert register(server, "1005", "expo-secret-1005") == 403
        assert call(server, "1001", "an-secret-1001", "1005") == (480, 'SIP;cause=480;text="extension_expired"')
