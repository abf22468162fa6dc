"""Overload against `pbx serve` (pbx/calls/overload.py): while datagrams
wait in its UDP socket the server refuses new calls with 503 and a
Retry-After, lets an emergency number through, and takes new calls again
once it has caught up.

The server is stopped (SIGSTOP) while 4,000 requests queue in its socket,
a real backlog in the kernel's buffer, as when calls come faster than one
core handles them; then it is let go (SIGCONT)."""

from __future__ import annotations

import json
import secrets
import signal
import time

import pytest

from tests.server import RunningServer
from tests.sipclient import SipClient

from .harness import Pbx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

DOMAIN = "pbx.example.com"
FLOOD = 4000
"""Requests queued while the server is stopped: 3.3 MB in the kernel's
accounting (832 bytes each), above the gate's high water (2 MiB)."""


@pytest.fixture
def dialplan() -> str:
    # The packet limits high: every test client is 127.0.0.1, and the flood
    # must not get the callers' address dropped.
    return """\
domain: pbx.example.com
security:
  source_packets_per_second: 1000000
  unauthenticated_per_second: 1000000
  unauthenticated_burst: 1000000
number_plans:
  vn:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    entries:
      - {pattern: "11[345]", class: emergency, name: "113 police, 114 fire, 115 ambulance"}
departments:
  sales: {name: Sales, voicemail: {enabled: false}}
extensions:
  1001: {name: An, department: sales, password: an-secret-1001}
  1002: {name: Binh, department: sales, password: binh-secret-1002}
"""


def invite(client: SipClient, number: str) -> bytes:
    return client.invite_request("1001", number, DOMAIN, call_id=f"ov-{number}-{secrets.token_hex(4)}", cseq=1,
                                 branch=f"z9hG4bK{secrets.token_hex(8)}", from_tag=secrets.token_hex(4))


def test_new_calls_get_503_while_the_server_is_behind_and_are_taken_again_after(pbx: Pbx) -> None:
    server: RunningServer = pbx.server
    address = ("127.0.0.1", server.udp_port)
    with SipClient("udp", address, timeout=5.0) as flood, SipClient("udp", address, timeout=5.0) as caller, \
            SipClient("udp", address, timeout=5.0) as emergency:
        server.signal(signal.SIGSTOP)
        try:
            for n in range(FLOOD):
                flood.send_raw(flood.options_request(DOMAIN, n))
            caller.send_raw(ordinary := invite(caller, "1002"))
            emergency.send_raw(invite(emergency, "113"))
        finally:
            server.signal(signal.SIGCONT)
        refused = caller.final_response()
        assert refused is not None and refused.status == 503, refused
        assert 5 <= int(refused.get("retry-after") or "0") <= 10
        caller.ack(ordinary, refused)
        through = emergency.final_response()
        assert through is not None and through.status == 407, "an emergency number is challenged as usual, not shed"

        started = json.loads(server.wait_lines('"event":"overload_started"')[0])
        assert started["queued_bytes"] > 2 << 20
        # Caught up: a new call is taken (challenged, then put through).
        time.sleep(0.5)
        first, second = caller.invite("1001", "an-secret-1001", "1002", DOMAIN)
        assert first is not None and first.status == 407
        assert second is not None and second.status == 480, "1002 has no phone registered: the call was routed"
        # The episode is logged as over after 10 s without a refusal.
        (ended_line,) = server.wait_lines('"event":"overload_ended"', timeout=15.0)
        ended = json.loads(ended_line)
        assert ended["refused"] == 1 and 0 < ended["refusing_s"] < 5
    # No CDR for the refused call: it was refused before its caller was known.
    time.sleep(0.5)
    assert [row["dialed_number"] for row in pbx.cdrs()] == ["1002"]
