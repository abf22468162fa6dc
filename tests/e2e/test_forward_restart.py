"""A forward set from the phone survives a restart of `pbx serve`: Bob
dials ``*72`` + Carol's number (raw SIP over UDP), the server is stopped
and started again on the same database, and Alice's call to Bob then
rings Carol."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.presence.agent import DOMAIN, Agent
from tests.server import run_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

PASSWORDS = {"2001": "alice-secret-2001", "2002": "bob-secret-2002", "2003": "carol-secret-2003"}
PLAN = f"""\
domain: {DOMAIN}
voicemail: {{enabled: false}}
departments:
  ops: {{name: Operations}}
extensions:
""" + "".join(f"  {n}: {{name: U{n}, department: ops, password: {p}}}\n" for n, p in PASSWORDS.items())
SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def dial(agent: Agent, number: str) -> None:
    assert agent.send_request("INVITE", f"sip:{number}@{DOMAIN}", headers=["Content-Type: application/sdp"],
                              body=SDP) is None  # challenged, sent again with credentials


def test_a_forward_set_with_star_72_survives_a_restart(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    db_url = f"sqlite:///{tmp_path / 'pbx.sqlite3'}"
    with run_server(plan, db_url, ["udp:127.0.0.1:0"]) as server:
        bob = Agent("2002", PASSWORDS["2002"], ("127.0.0.1", server.udp_port))
        try:
            dial(bob, "*722003")
            final = bob.response("INVITE", timeout=15.0)  # after the spoken confirmation
            assert (final.status, final.reason) == (480, "Forwarding always On 2003")
        finally:
            bob.close()
    with run_server(plan, db_url, ["udp:127.0.0.1:0"]) as server:
        address = ("127.0.0.1", server.udp_port)
        alice, carol = Agent("2001", PASSWORDS["2001"], address), Agent("2003", PASSWORDS["2003"], address)
        try:
            assert carol.register().status == 200
            dial(alice, "2002")
            rung = carol.incoming("INVITE", timeout=5.0, status=None)  # Bob has no phone: only the forward rings
            carol.answer(rung, 486)
            assert alice.response("INVITE", timeout=5.0).status == 486
        finally:
            alice.close()
            carol.close()
