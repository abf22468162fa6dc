"""Hunt groups end to end: a real `pbx serve` with its SQLite store, five
members as SIPp phones (sipp-scenarios/hunt_member_uas.xml answers at once,
hunt_ringer_uas.xml rings until cancelled), a hand-driven caller
(tests/e2e/sipua.py), and the CDRs as `pbx cdr list` prints them.

- circular: ten calls go round the five members, and the round goes on
  where it was after the server restarts (the position is in the store);
  after the restart Alice dials the group's short number (71), which
  rings the same hunt group;
- linear: ten calls each ring 2101 and 2102 (1 s each, then a plain
  CANCEL) before 2103 answers; the leg rows say so in order;
- ring_all: every member rings, one answers, the ringers' CANCELs carry
  ``Reason: SIP;cause=200;text="Call completed elsewhere"``;
- `pbx hunt logout` takes a member out of the next calls.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.test_sipp_calls import logged_call_ids, password, sipp_binary
from tests.test_sipp_hunt import member

from .harness import DOMAIN, Pbx, rows_once, start_pbx
from .sipua import SipUA, sdp

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed"),
]

MEMBERS = ["2101", "2102", "2103", "2104", "2105"]
LIST = "[" + ", ".join(f'"{m}"' for m in MEMBERS) + "]"
PLAN = f"""\
domain: {DOMAIN}
registrar: {{auth_algorithms: [MD5]}}
departments:
  ops: {{name: Operations}}
extensions:
  2001: {{name: Alice, department: ops, password: alice-secret-2001}}
""" + "".join(f'  {m}: {{name: M{m}, department: ops, password: {password(m)}}}\n' for m in MEMBERS) + f"""\
hunt_groups:
  "701": {{name: Circular, strategy: circular, members: {LIST}}}
  "700": {{name: Linear, strategy: linear, members: {LIST}, member_seconds: 1, total_seconds: 30}}
  "702": {{name: Sales, strategy: ring_all, members: {LIST}}}
groups:
  ops:
    members:
      "61": {{name: Alice, extension: "2001"}}
      "71": {{name: Circular team, hunt_group: "701"}}
"""


@pytest.fixture
def pbx(tmp_path: Path) -> Iterator[Pbx]:
    with start_pbx(tmp_path / "pbx", PLAN) as running:
        yield running


def members(stack: ExitStack, pbx: Pbx, workdir: Path, ringers: set[str]) -> None:
    sipp = sipp_binary()
    for number in MEMBERS:
        scenario = "hunt_ringer_uas" if number in ringers else "hunt_member_uas"
        stack.enter_context(member(sipp, f"127.0.0.1:{pbx.server.udp_port}", workdir, number, scenario))


def call(alice: SipUA, number: str) -> None:
    """Alice calls ``number``; someone answers; she hangs up."""
    a = alice.invite(number, body=sdp(40000))
    ok = a.expect_response(200, method="INVITE", timeout=20.0)
    a.confirm(ok)
    a.ack()
    a.send("BYE")
    a.expect_response(200, method="BYE", timeout=10.0)


def group_rows(pbx: Pbx, group: str, count: int) -> list[dict[str, str]]:
    return rows_once(pbx.cdrs, lambda r: r["hunt_group"] == group and bool(r["ended_at"]), count)


def test_circular_goes_round_and_carries_on_after_a_restart(pbx: Pbx, tmp_path: Path) -> None:
    with ExitStack() as stack:
        members(stack, pbx, tmp_path, ringers=set())
        with SipUA.start(pbx.udp, "2001", "alice-secret-2001", DOMAIN) as alice:
            for _ in range(3):
                call(alice, "701")
            time.sleep(0.5)  # the store's writer commits behind
            pbx.server.restart()  # same ports and database; the members' registrations are in it
            for _ in range(7):
                call(alice, "71")
    rows = group_rows(pbx, "701", 10)
    assert [r["answered_by"] for r in rows] == MEMBERS + MEMBERS
    assert [r["dialed_number"] for r in rows] == ["701"] * 3 + ["71"] * 7
    assert all(r["disposition"] == "ANSWERED" for r in rows)


def test_linear_rings_in_order_and_ring_all_cancels_with_the_reason(pbx: Pbx, tmp_path: Path) -> None:
    with ExitStack() as stack:
        members(stack, pbx, tmp_path, ringers={"2101", "2102"})
        with SipUA.start(pbx.udp, "2001", "alice-secret-2001", DOMAIN) as alice:
            for _ in range(10):
                call(alice, "700")
            rows = group_rows(pbx, "700", 10)
            assert [r["answered_by"] for r in rows] == ["2103"] * 10
            assert all(r["wait"] and int(r["wait"]) >= 2 for r in rows), rows  # 1 s for each ringer
            cancelled = logged_call_ids(tmp_path / "member-2101.log", "ringer-cancelled")
            assert len(cancelled) == 10
            plain = (tmp_path / "member-2101.log").read_text()
            assert "Call completed elsewhere" not in plain  # a ring time running out is a missed call

            call(alice, "702")
    time.sleep(0.5)
    log = (tmp_path / "member-2102.log").read_text()
    elsewhere = [line for line in log.splitlines()
                 if line.startswith("ringer-cancelled") and "Call completed elsewhere" in line]
    assert len(elsewhere) == 1 and 'SIP;cause=200;text="Call completed elsewhere"' in elsewhere[0]
    (ring_all,) = group_rows(pbx, "702", 1)
    assert ring_all["answered_by"] in {"2103", "2104", "2105"}


def test_pbx_hunt_logout_takes_a_member_out(pbx: Pbx, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pbx", "hunt", "logout", "2101", "701", "--dialplan",
                           str(tmp_path / "pbx" / "plan.yaml"), "--db", pbx.db_url],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    time.sleep(6)  # running servers read the store every 5 s
    with ExitStack() as stack:
        members(stack, pbx, tmp_path, ringers=set())
        with SipUA.start(pbx.udp, "2001", "alice-secret-2001", DOMAIN) as alice:
            for _ in range(4):
                call(alice, "701")
    rows = group_rows(pbx, "701", 4)
    assert [r["answered_by"] for r in rows] == ["2102", "2103", "2104", "2105"]
