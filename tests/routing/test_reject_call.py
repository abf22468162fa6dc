"""A call refused by the dialplan, through a real `pbx serve` over UDP: the
caller gets 403 with a Reason header and a Warning naming the rule, the
server logs the decision with its rule and chain, and the CDR row says
REJECTED with the call class and the rule."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.sip.message import Response
from tests.e2e.sipua import SipUA, UaDialog
from tests.server import RunningServer, run_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

DOMAIN = "pbx.example.com"
DIALPLAN = """\
domain: pbx.example.com
departments:
  lobby: {name: Lobby, class_of_service: lobby}
extensions:
  1001: {name: Lobby phone, department: lobby, password: lobby-secret-1001}
number_plans:
  vietnam:
    - {pattern: "11[345]", class: emergency}
    - {pattern: "0[35789]XXXXXXXX", class: mobile}
    - {pattern: "00.", class: international}
classes_of_service:
  lobby: {allow: [mobile]}
"""


@pytest.fixture
def pbx(tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(DIALPLAN, encoding="utf-8")
    db_url = "sqlite:///" + str(tmp_path / "pbx.sqlite3")
    with run_server(plan, db_url, ["udp:127.0.0.1:0"]) as server:
        yield server, db_url


def final(dialog: UaDialog) -> Response:
    """The final response to the dialog's INVITE, whatever its status."""
    while True:
        response = dialog.expect_response(method="INVITE")
        if response.status >= 200:
            return response


def cdr_row(db_url: str, dialled: str, timeout: float = 5.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run([sys.executable, "-m", "pbx", "cdr", "list", "--db", db_url, "--csv"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        rows = [r for r in csv.DictReader(io.StringIO(out.lstrip("\ufeff"))) if r["dialed_number"] == dialled]
        if rows and rows[-1]["ended_at"]:
            return rows[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no ended CDR for {dialled}: {out}")
        time.sleep(0.2)


def test_barred_international_call_gets_403_naming_the_rule(pbx: tuple[RunningServer, str]) -> None:
    server, db_url = pbx
    with SipUA.start(("127.0.0.1", server.udp_port), "1001", "lobby-secret-1001", DOMAIN) as phone:
        dialog = phone.invite("0081312345678")
        response = final(dialog)
    assert response.status == 403
    assert response.get("reason") == 'SIP;cause=403;text="international_not_allowed"'
    assert response.get("warning") == (
        f'399 {DOMAIN} "classes_of_service.lobby: international is not among the classes'
        " class of service 'lobby' allows\""
    )
    row = cdr_row(db_url, "0081312345678")
    assert (row["disposition"], row["hangup_status"], row["call_class"], row["rule"]) == (
        "REJECTED", "403", "international", "classes_of_service.lobby")
    assert row["reason"] == "international_not_allowed"
    routed = [json.loads(line) for line in server.lines_with('"call_routed"')]
    assert routed and routed[-1]["rule"] == "classes_of_service.lobby"
    assert routed[-1]["call_class"] == "international"
    assert routed[-1]["steps"][0] == "extensions.1001: caller 1001 (Lobby phone), department 'lobby'"


def test_unknown_number_is_404_and_rejected(pbx: tuple[RunningServer, str]) -> None:
    server, db_url = pbx
    with SipUA.start(("127.0.0.1", server.udp_port), "1001", "lobby-secret-1001", DOMAIN) as phone:
        dialog = phone.invite("7777")
        response = final(dialog)
    assert response.status == 404
    assert response.get("warning") == (
        f"399 {DOMAIN} \"number_plans.vietnam: 7777 is no extension and matches no entry of number plan 'vietnam'\""
    )
    row = cdr_row(db_url, "7777")
    assert (row["disposition"], row["hangup_status"], row["rule"]) == ("REJECTED", "404", "number_plans.vietnam")
