"""Group short numbers end to end: a real `pbx serve`, SIPp as the trunk's
provider (sipp-scenarios/provider_uas.xml: 407 first, then 180 and 200),
and hand-driven user agents (tests/e2e/sipua.py) as the members' phones.

A short number reaches a member's mobile through the trunk (the provider
gets the number rewritten for it, from our caller ID) and another member's
extension directly (showing the caller's short number); the CDR rows keep
the short number, what it resolved to and the member. `pbx group remove`
then stops that short number for the very next call, and `pbx group add`
makes a new one work, both by asking the server to reload.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.sip.message import Request, Response
from tests.server import free_port
from tests.trunks.provider import Sipp

from .harness import DOMAIN, Pbx, start_pbx
from .sipua import SipUA, UaDialog, sdp

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed"),
]

TRUNK_USER, TRUNK_PASSWORD = "02873000000", "trunk-secret"
PROVIDER_DOMAIN = "sip.provider.example"


def dialplan(gateway: int) -> str:
    return f"""\
domain: {DOMAIN}
registrar: {{auth_algorithms: [MD5]}}
departments:
  office: {{name: Office, class_of_service: outside, caller_id: "02873000100"}}
extensions:
  2001: {{name: Alice, department: office, password: alice-secret-2001}}
  2002: {{name: Bob, department: office, password: bob-secret-2002}}
  2003: {{name: Chau, department: office, password: chau-secret-2003}}
number_plans:
  vietnam:
    - {{pattern: "0ZXXXXXXX.", class: national}}
classes_of_service:
  outside: {{allow: [national]}}
trunks:
  viettel:
    gateways:
      - {{host: 127.0.0.1, port: {gateway}}}
      - {{host: 127.0.0.1, port: {free_port()}}}
    username: "{TRUNK_USER}"
    password: "{TRUNK_PASSWORD}"
    domain: {PROVIDER_DOMAIN}
    invite_timeout: 5
    caller_id: "02873000000"
    rewrites:
      - {{match: "0", strip: 1, prepend: "+84"}}
routes:
  - {{name: vn-national, pattern: "0ZXXXXXXX.", trunk: viettel}}
groups:
  office:
    name: Office
    members_file: groups/office.yaml
"""


MEMBERS = """\
# Office short numbers
11: {name: Alice, extension: '2001'}
12: {name: Bob, extension: '2002'}
13: {name: Chau, extension: '2003', mobile: '0912000003'}   # her desk phone is not registered
"""


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Sipp]:
    logs = tmp_path / "sipp"
    logs.mkdir()
    sipp = Sipp("provider_uas", logs, calls=1, keys={"user": TRUNK_USER, "pass": TRUNK_PASSWORD, "grant": "300"})
    try:
        yield sipp
    finally:
        sipp.stop()


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    """Where start_pbx writes the dialplan; the members file is beside it."""
    return tmp_path / "pbx" / "plan.yaml"


@pytest.fixture
def pbx(plan: Path, provider: Sipp) -> Iterator[Pbx]:
    directory = plan.parent
    (directory / "groups").mkdir(parents=True)
    (directory / "groups" / "office.yaml").write_text(MEMBERS, encoding="utf-8")
    with start_pbx(directory, dialplan(provider.port)) as running:
        yield running


@pytest.fixture
def phones(pbx: Pbx) -> Iterator[tuple[SipUA, SipUA]]:
    with SipUA.start(pbx.udp, "2001", "alice-secret-2001", DOMAIN) as alice, \
            SipUA.start(pbx.udp, "2002", "bob-secret-2002", DOMAIN) as bob:
        alice.register()
        bob.register()
        yield alice, bob


def group_command(pbx: Pbx, plan: Path, *args: str) -> str:
    """Run `pbx group ...` as an admin would, against the running server."""
    done = subprocess.run(
        [sys.executable, "-m", "pbx", "group", *args, "--dialplan", str(plan)]
        + (["--pid-file", str(pbx.server.pid_file)] if args[0] != "list" else []),
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def call_and_answer_at_bob(alice: SipUA, bob: SipUA, number: str) -> tuple[UaDialog, UaDialog, str]:
    """Alice dials ``number``, Bob's phone rings and answers; returns both
    dialogs and the From header Bob's phone saw."""
    a = alice.invite(number, body=sdp(40000))
    invite = bob.expect_request("INVITE", timeout=10.0)
    b = bob.answer_dialog(invite)
    bob.respond(invite, 180, to_tag=b.local_tag)
    bob.respond(invite, 200, to_tag=b.local_tag, body=sdp(42000))
    ok = a.expect_response(200, method="INVITE", timeout=10.0)
    a.confirm(ok)
    bob.expect_request("ACK", call_id=b.call_id)
    a.ack()
    return a, b, invite.get("from") or ""


def hang_up(a: UaDialog, b: UaDialog, bob: SipUA) -> None:
    a.send("BYE")
    bye = b.expect_request("BYE")
    bob.respond(bye, 200)
    a.expect_response(200, method="BYE")


def refused(alice: SipUA, number: str) -> Response:
    a = alice.invite(number, body=sdp(40000))
    while True:
        response = a.expect_response(method="INVITE", timeout=10.0)
        if response.status >= 200:
            return response


def test_short_numbers_reach_a_mobile_through_the_trunk_and_a_desk_directly(
        pbx: Pbx, provider: Sipp, phones: tuple[SipUA, SipUA]) -> None:
    alice, bob = phones

    # 13: Chau's desk is not registered, so her mobile rings at once, through
    # the provider (which challenges first, then answers).
    a = alice.invite("13", body=sdp(40000))
    ok = a.expect_response(200, method="INVITE", timeout=15.0)
    a.confirm(ok)
    a.ack()
    a.send("BYE")
    a.expect_response(200, method="BYE", timeout=10.0)
    assert provider.wait() == 0, provider.describe()
    invites = provider.requests("INVITE")
    assert len(invites) >= 2, invites
    for invite in (invites[0], invites[-1]):
        assert invite.start_line == f"INVITE sip:+84912000003@{PROVIDER_DOMAIN} SIP/2.0"
        # The provider sees our caller ID, not a short number.
        assert re.match(rf"<sip:02873000100@{PROVIDER_DOMAIN}>;tag=", invite.header("From") or "")
    assert invites[-1].header("Proxy-Authorization")
    mobile = pbx.cdr_for("2001", "13")
    assert (mobile["short_number"], mobile["resolved_number"], mobile["member"]) == ("13", "0912000003",
                                                                                    "office/13 Chau")
    assert (mobile["disposition"], mobile["trunk"], mobile["destination"]) == ("ANSWERED", "viettel",
                                                                              "+84912000003")
    assert mobile["call_class"] == "national"

    # 12: Bob's desk phone rings directly and shows Alice's short number.
    a, b, shown = call_and_answer_at_bob(alice, bob, "12")
    assert re.match(rf'"11 Alice" <sip:11@{DOMAIN}>;tag=', shown), shown
    hang_up(a, b, bob)
    desk = pbx.cdr_for("2001", "12")
    assert (desk["short_number"], desk["resolved_number"], desk["member"]) == ("12", "2002", "office/12 Bob")
    assert (desk["disposition"], desk["destination"], desk["trunk"], desk["call_class"]) == (
        "ANSWERED", "2002", "", "internal")


def test_group_remove_and_add_take_effect_for_the_next_call(pbx: Pbx, plan: Path,
                                                           phones: tuple[SipUA, SipUA]) -> None:
    alice, bob = phones
    a, b, _ = call_and_answer_at_bob(alice, bob, "12")
    hang_up(a, b, bob)

    out = group_command(pbx, plan, "remove", "office", "12")
    assert out.startswith("removed member 12 of group office")
    assert "asked pbx serve (pid " in out
    pbx.server.wait_lines("dialplan_reloaded", 1)
    # Bob's short number is gone: the next call to it is refused, Bob's
    # phone does not ring.
    answer = refused(alice, "12")
    assert answer.status == 404, answer
    bob.absent(lambda m: isinstance(m, Request) and m.method == "INVITE", 0.5)

    out = group_command(pbx, plan, "add", "office", "14", "--name", "Bob", "--extension", "2002")
    assert out.startswith("added member 14 of group office")
    pbx.server.wait_lines("dialplan_reloaded", 2)
    a, b, shown = call_and_answer_at_bob(alice, bob, "14")
    assert f"<sip:11@{DOMAIN}>" in shown
    hang_up(a, b, bob)
    row = pbx.cdr_for("2001", "14")
    assert (row["short_number"], row["resolved_number"], row["member"]) == ("14", "2002", "office/14 Bob")
    listed = group_command(pbx, plan, "list", "office")
    assert "  14       Bob" in listed and "  12 " not in listed
