"""`pbx serve --advertise HOST`: the address the PBX puts in Via and Contact
(its public address behind NAT), while it still listens where it was told."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.sip.message import parse_name_addr, parse_via
from tests.server import run_server

from .harness import AGENT_EXTENSIONS, DOMAIN
from .sipua import SipUA, sdp

pytestmark = pytest.mark.e2e

PUBLIC = "192.0.2.10"  # TEST-NET-1: never routed, so it cannot be reached by accident


def test_advertised_address_is_in_via_and_contact(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"domain: {DOMAIN}\n{AGENT_EXTENSIONS}")
    with run_server(plan, f"sqlite:///{tmp_path / 'pbx.sqlite3'}", ["udp:127.0.0.1:0"],
                    ("--advertise", PUBLIC)) as server:
        address = ("127.0.0.1", server.udp_port)
        with SipUA.start(address, "2001", "alice-secret-2001", DOMAIN) as alice, \
                SipUA.start(address, "2002", "bob-secret-2002", DOMAIN) as bob:
            alice.register()
            bob.register()
            call = alice.invite("2002", body=sdp())
            invite = bob.expect_request("INVITE")
            via = parse_via(invite.get("via") or "")
            contact = parse_name_addr(invite.get("contact") or "").uri
            assert (via.host, via.port) == (PUBLIC, server.udp_port)
            assert contact.startswith(f"sip:{PUBLIC}:{server.udp_port}"), contact
            bob.respond(invite, 486)
            call.expect_response(486)
