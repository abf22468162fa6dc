"""Forwarding, do not disturb and call pickup with real softphones (pjsua2)
through `pbx serve`: feature codes dialled from the phone, calls landing
where the forward says, a loop ending at the chain limit, *8."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .harness import Pbx
from .phone import Phone, PhoneFactory
from .test_transfer import DIALPLAN, audio_both_ways, registered, uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PLAN = "voicemail: {enabled: false}\n" + DIALPLAN \
    + "  2004: {name: Dave, department: ops, password: dave-secret-2004, ring_timeout: 2,"\
      " forward: {no_answer: \"2003\"}}\n" \
    + "  2005: {name: Eve, department: ops, password: eve-secret-2005, forward: {busy: \"2003\"}}\n"
PASSWORDS = {"2004": "dave-secret-2004", "2005": "eve-secret-2005"}


@pytest.fixture
def dialplan() -> str:
    return PLAN


def extra(phones: PhoneFactory, pbx: Pbx, number: str, **options: object) -> Phone:
    return registered(phones, pbx, number, PASSWORDS, **options)


def test_star_72_from_the_phone_then_calls_land_at_the_target(pbx: Pbx, phones: PhoneFactory) -> None:
    bob = registered(phones, pbx, "2002")
    code = bob.call(uri("*722003", pbx))
    end = bob.wait_call_state("DISCONNECTED", code, timeout=15.0)
    assert end["code"] == 480 and "On 2003" in end["reason"]
    alice = registered(phones, pbx, "2001")
    carol = registered(phones, pbx, "2003", auto_answer=200)
    call = alice.call(uri("2002", pbx))
    alice.wait_call_state("CONFIRMED", call, timeout=10.0)
    carol_call = int(carol.wait_call_state("CONFIRMED", timeout=10.0)["call"])
    alice.hangup(call)
    carol.wait_call_state("DISCONNECTED", carol_call, timeout=10.0)
    row = pbx.cdr_for("2001", "2002")
    assert row["destination"] == "2003" and row["transfer"] == "forward always 2002 -> 2003"
    # *73 switches it off: Bob's own phone rings again.
    off = bob.call(uri("*73", pbx))
    bob.wait_call_state("DISCONNECTED", off, timeout=15.0)
    bob.command({"cmd": "set", "auto_answer": 200})
    again = alice.call(uri("2002", pbx))
    alice.wait_call_state("CONFIRMED", again, timeout=10.0)
    alice.hangup(again)


def test_busy_and_no_answer_forwards(pbx: Pbx, phones: PhoneFactory) -> None:
    alice = registered(phones, pbx, "2001")
    carol = registered(phones, pbx, "2003", auto_answer=200)
    dave = extra(phones, pbx, "2004")  # rings 2 s, never answers
    call = alice.call(uri("2004", pbx))
    dave.wait_for("incoming_call", 10.0)
    alice.wait_call_state("CONFIRMED", call, timeout=15.0)
    carol_call = int(carol.wait_call_state("CONFIRMED", timeout=10.0)["call"])
    alice.hangup(call)
    carol.wait_call_state("DISCONNECTED", carol_call, timeout=10.0)
    assert pbx.cdr_for("2001", "2004")["transfer"] == "forward no_answer 2004 -> 2003"
    extra(phones, pbx, "2005", auto_answer=486)
    busy = alice.call(uri("2005", pbx))
    alice.wait_call_state("CONFIRMED", busy, timeout=15.0)
    carol_call = int(carol.wait_call_state("CONFIRMED", timeout=10.0)["call"])
    alice.hangup(busy)
    carol.wait_call_state("DISCONNECTED", carol_call, timeout=10.0)
    assert pbx.cdr_for("2001", "2005")["transfer"] == "forward busy 2005 -> 2003"


def test_a_forward_loop_ends_at_the_chain_limit(pbx: Pbx, phones: PhoneFactory) -> None:
    bob = registered(phones, pbx, "2002")
    carol = registered(phones, pbx, "2003")
    for phone, code in ((bob, "*722003"), (carol, "*722002")):
        end = phone.wait_call_state("DISCONNECTED", phone.call(uri(code, pbx)), timeout=15.0)
        assert end["code"] == 480
    alice = registered(phones, pbx, "2001")
    end = alice.wait_call_state("DISCONNECTED", alice.call(uri("2002", pbx)), timeout=15.0)
    assert end["code"] == 482
    row = pbx.cdr_for("2001", "2002")
    assert row["reason"] == "forward_limit" and row["disposition"] == "FAILED"
    assert row["transfer"].startswith("forward always 2002 -> 2003; forward always 2003 -> 2002")


def test_star_8_picks_up_and_the_ringing_phone_stops_with_the_reason(pbx: Pbx, phones: PhoneFactory,
                                                                     tmp_path: Path) -> None:
    alice = registered(phones, pbx, "2001")
    bob = registered(phones, pbx, "2002")  # rings, never answers
    carol = registered(phones, pbx, "2003")
    call = alice.call(uri("2002", pbx))
    bob_call = int(bob.wait_for("incoming_call", 10.0)["call"])
    time.sleep(0.3)
    pick = carol.call(uri("*8", pbx))
    carol.wait_call_state("CONFIRMED", pick, timeout=10.0)
    alice.wait_call_state("CONFIRMED", call, timeout=10.0)
    end = bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    # The CANCEL's 487; pjsua2 does not report its Reason header, which
    # tests/calls/test_features.py checks on the wire.
    assert end["code"] == 487
    heard_by_alice, heard_by_carol = audio_both_ways(alice, call, carol, pick, tmp_path)
    assert heard_by_alice > 1000.0 and heard_by_carol > 1000.0  # Carol talks to Alice
    carol.hangup(pick)
    alice.wait_call_state("DISCONNECTED", call, timeout=10.0)
    row = pbx.cdr_for("2001", "2002")
    assert row["destination"] == "2003" and row["transfer"] == "pickup 2003 <- 2002"
