"""In-dialog requests between two real softphones (pjsua2) through the PBX:
INFO (DTMF as application/dtmf-relay, RFC 6086) and UPDATE (RFC 3311) in
both directions, each answered end to end. Both phones negotiate RFC 4028
session timers with their defaults, which the PBX relays."""

from __future__ import annotations

import pytest

from .harness import DOMAIN, Pbx
from .phone import Phone, PhoneFactory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DIALPLAN = """\
domain: pbx.example.com
departments:
  sales: {name: Sales}
extensions:
  1001: {name: An Nguyen, department: sales, password: an-secret-1001}
  1003: {name: Chau Le, department: sales, password: chau-secret-1003}
"""


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


def registered(phones: PhoneFactory, pbx: Pbx, number: str, password: str, **options: object) -> Phone:
    phone = phones(f"ext{number}")
    state = phone.register(number, password, DOMAIN, pbx.registrar(), **options)  # type: ignore[arg-type]
    assert state["code"] == 200, state
    return phone


def test_info_and_update_relayed_both_ways(pbx: Pbx, phones: PhoneFactory) -> None:
    alice = registered(phones, pbx, "1001", "an-secret-1001")
    bob = registered(phones, pbx, "1003", "chau-secret-1003", auto_answer=200)
    call = alice.call(f"sip:1003@{pbx.registrar()};transport=udp")
    alice.wait_for("media_state", 10.0, call=call, status="active")
    bob_call = int(bob.wait_for("media_state", 10.0, status="active")["call"])

    alice.send_dtmf("5", call, method="info")
    heard_by_bob = bob.wait_for("dtmf", 5.0, call=bob_call)
    assert (heard_by_bob["digit"], heard_by_bob["method"]) == ("5", "info")
    sent = alice.wait_for("tsx", 5.0, call=call, method="INFO", role="uac")
    assert sent["code"] == 200
    bob.send_dtmf("7", bob_call, method="info")
    heard = alice.wait_for("dtmf", 5.0, call=call)
    assert (heard["digit"], heard["method"]) == ("7", "info")
    assert bob.wait_for("tsx", 5.0, call=bob_call, method="INFO", role="uac")["code"] == 200

    alice.update(call)
    # Alice's outcome first: when it is not 200, its code says what the PBX
    # did (this step failed once in a full run, unexplained, see the notes).
    answered = alice.wait_for("tsx", 10.0, call=call, method="UPDATE", role="uac")
    assert answered["code"] == 200, (answered, pbx.server.output()[-3000:])
    assert bob.wait_for("tsx", 5.0, call=bob_call, method="UPDATE", role="uas")["code"] == 200
    bob.update(bob_call)
    assert alice.wait_for("tsx", 5.0, call=call, method="UPDATE", role="uas")["code"] == 200
    assert bob.wait_for("tsx", 5.0, call=bob_call, method="UPDATE", role="uac")["code"] == 200

    # The call is still up and hangs up normally after all that.
    alice.hangup(call)
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    row = pbx.cdr_for("1001", "1003")
    assert (row["disposition"], row["hangup_side"]) == ("ANSWERED", "caller")
