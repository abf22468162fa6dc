"""Transfers of calls that did not start as one phone calling another,
with real softphones (pjsua2) through `pbx serve`:

- a call that came in through a trunk: the provider's gateway (a pjsua2
  phone on the trunk's gateway address) calls the DID, Bob (2002) answers
  and blind-transfers the caller to Carol (2003);
- a call the auto attendant put through: Alice (2001) dials the menu
  (800), keys 2, Bob answers and blind-transfers her to Carol.

Either way the transferee and Carol then hear each other, Bob is told
200 and released, and the call's CDR row says who transferred to whom.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import DOMAIN, Pbx, rows_once
from .phone import Phone, PhoneFactory
from .test_transfer import PASSWORDS, audio_both_ways, registered

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DID = "+842873000100"


@pytest.fixture
def provider(phones: PhoneFactory) -> Phone:
    """The provider's gateway: a phone placing calls without registering."""
    return phones("provider")


@pytest.fixture
def dialplan(provider: Phone) -> str:
    return f"""\
domain: {DOMAIN}
voicemail: {{enabled: false}}
departments:
  ops: {{name: Operations}}
extensions:
  2001: {{name: Alice, department: ops, password: {PASSWORDS["2001"]}}}
  2002: {{name: Bob, department: ops, password: {PASSWORDS["2002"]}}}
  2003: {{name: Carol, department: ops, password: {PASSWORDS["2003"]}}}
trunks:
  provider:
    gateways: [{{host: 127.0.0.1, port: {provider.udp_port}}}]
inbound:
  "{DID}": {{extension: "2002"}}
media: {{rtp_ports: "36000-36199", language: en, tones: VN}}
ivr_menus:
  main:
    number: "800"
    greeting: welcome
    options:
      "2": {{extension: "2002"}}
    timeout: 6
    digit_timeout: 1
    retries: 0
    fallback: {{hangup: true}}
"""


def bob_transfers_to_carol(pbx: Pbx, phones: PhoneFactory, transferee: Phone, call: int,
                           tmp_path: Path, bob: Phone) -> tuple[Phone, int]:
    """Bob answers (auto), then blind-transfers to Carol; the transferee and
    Carol hear each other. Returns Carol and her call."""
    carol = registered(phones, pbx, "2003", auto_answer=200)
    bob_call = int(bob.wait_for("media_state", 15.0, status="active")["call"])
    transferee.wait_for("media_state", 10.0, call=call, status="active")
    bob.xfer(f"sip:2003@{DOMAIN}", bob_call)
    done = bob.wait_for("xfer_status", 15.0, call=bob_call, final=True)
    assert done["code"] == 200
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    carol_call = int(carol.wait_for("media_state", 10.0, status="active")["call"])
    heard_by_transferee, heard_by_carol = audio_both_ways(transferee, call, carol, carol_call, tmp_path)
    assert heard_by_transferee > 1000.0 and heard_by_carol > 1000.0
    return carol, carol_call


def ended_row(pbx: Pbx, dialled: str) -> dict[str, str]:
    """The one ended CDR row of a call to ``dialled`` (whoever called)."""
    rows = rows_once(pbx.cdrs, lambda r: r["dialed_number"] == dialled and bool(r["ended_at"]), 1, 5.0)
    assert len(rows) == 1, pbx.cdrs()
    return rows[0]


def test_a_call_in_through_the_trunk_is_transferred(pbx: Pbx, phones: PhoneFactory, provider: Phone,
                                                    tmp_path: Path) -> None:
    bob = registered(phones, pbx, "2002", auto_answer=200)
    call = provider.call(f"sip:{DID}@{pbx.registrar()}")
    carol, carol_call = bob_transfers_to_carol(pbx, phones, provider, call, tmp_path, bob)
    provider.hangup(call)
    carol.wait_call_state("DISCONNECTED", carol_call, timeout=10.0)
    row = ended_row(pbx, DID)
    assert row["call_class"] == "inbound" and row["disposition"] == "ANSWERED"
    assert row["transfer"] == "blind 2002 -> 2003" and row["destination"] == "2003"


def test_a_call_the_auto_attendant_put_through_is_transferred(pbx: Pbx, phones: PhoneFactory,
                                                              tmp_path: Path) -> None:
    alice = registered(phones, pbx, "2001")
    bob = registered(phones, pbx, "2002", auto_answer=200)
    call = alice.call(f"sip:800@{pbx.registrar()};transport=udp")
    alice.wait_for("media_state", 10.0, call=call, status="active")  # the greeting
    alice.send_dtmf("2", call)
    pbx.server.wait_lines("direct_media", timeout=15.0)
    carol, carol_call = bob_transfers_to_carol(pbx, phones, alice, call, tmp_path, bob)
    alice.hangup(call)
    carol.wait_call_state("DISCONNECTED", carol_call, timeout=10.0)
    row = pbx.cdr_for("2001", "800")
    assert row["ivr_path"] == "main[2]" and row["disposition"] == "ANSWERED"
    assert row["transfer"] == "blind 2002 -> 2003" and row["destination"] == "2003"
