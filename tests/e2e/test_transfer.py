"""Transfers between real softphones (pjsua2) through `pbx serve`.

A (2001) calls B (2002); B transfers A to C (2003): blindly (REFER), and
after consulting C (REFER with Replaces). A and C then hear each other,
the transferor's phone is told the outcome (NOTIFY sipfrag) and released,
and the CDR row of A's call says who transferred to whom. A transfer to a
number B may not dial is refused with 403 and leaves A and B talking.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .harness import DOMAIN, Pbx
from .phone import Phone, PhoneFactory, wav_rms, write_tone_wav

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DIALPLAN = """\
domain: pbx.example.com
number_plans:
  vn:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    entries:
      - {pattern: "0[35789] XXXX XXXX", class: mobile, name: Mobile}
classes_of_service:
  internal_only:
    description: "No outside calls"
departments:
  ops: {name: Operations, class_of_service: internal_only}
extensions:
  2001: {name: Alice, department: ops, password: alice-secret-2001}
  2002: {name: Bob, department: ops, password: bob-secret-2002}
  2003: {name: Carol, department: ops, password: carol-secret-2003}
"""
PASSWORDS = {"2001": "alice-secret-2001", "2002": "bob-secret-2002", "2003": "carol-secret-2003"}


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


def registered(phones: PhoneFactory, pbx: Pbx, number: str, passwords: dict[str, str] = PASSWORDS,
               **options: object) -> Phone:
    phone = phones(f"ext{number}")
    state = phone.register(number, passwords[number], DOMAIN, pbx.registrar(), **options)  # type: ignore[arg-type]
    assert state["code"] == 200, state
    return phone


def uri(number: str, pbx: Pbx) -> str:
    return f"sip:{number}@{pbx.registrar()}"


def audio_both_ways(one: Phone, one_call: int, other: Phone, other_call: int, tmp_path: Path) -> tuple[float, float]:
    """Each side plays a tone while the other records: the RMS each heard."""
    tone_a = write_tone_wav(tmp_path / "one.wav", frequency=440.0, seconds=1.0)
    tone_b = write_tone_wav(tmp_path / "other.wav", frequency=660.0, seconds=1.0)
    heard_by_other, heard_by_one = tmp_path / "other-heard.wav", tmp_path / "one-heard.wav"
    other.record(heard_by_other, other_call)
    one.record(heard_by_one, one_call)
    one.play(tone_a, one_call)
    other.play(tone_b, other_call)
    one.wait_for("play_done", 5.0, call=one_call)
    other.wait_for("play_done", 5.0, call=other_call)
    time.sleep(0.5)
    other.stop_record(other_call)
    one.stop_record(one_call)
    return wav_rms(heard_by_one), wav_rms(heard_by_other)


def a_calls_b(phones: PhoneFactory, pbx: Pbx) -> tuple[Phone, int, Phone, int]:
    alice = registered(phones, pbx, "2001")
    bob = registered(phones, pbx, "2002", auto_answer=200)
    call = alice.call(uri("2002", pbx))
    alice.wait_for("media_state", 10.0, call=call, status="active")
    bob_call = int(bob.wait_for("media_state", 10.0, status="active")["call"])
    return alice, call, bob, bob_call


def test_blind_transfer_a_talks_to_c_and_the_cdr_shows_it(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    alice, call, bob, bob_call = a_calls_b(phones, pbx)
    carol = registered(phones, pbx, "2003", auto_answer=200)
    bob.xfer(f"sip:2003@{DOMAIN}", bob_call)
    done = bob.wait_for("xfer_status", 15.0, call=bob_call, final=True)
    assert done["code"] == 200
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    carol_call = int(carol.wait_for("media_state", 10.0, status="active")["call"])
    alice.wait_for("media_state", 10.0, call=call, status="active")
    heard_by_alice, heard_by_carol = audio_both_ways(alice, call, carol, carol_call, tmp_path)
    assert heard_by_alice > 1000.0 and heard_by_carol > 1000.0
    alice.hangup(call)
    carol.wait_call_state("DISCONNECTED", carol_call, timeout=10.0)
    row = pbx.cdr_for("2001", "2002")
    assert row["disposition"] == "ANSWERED"
    assert row["transfer"] == "blind 2002 -> 2003"
    assert row["destination"] == "2003"


def test_attended_transfer_with_replaces(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    alice, call, bob, bob_call = a_calls_b(phones, pbx)
    carol = registered(phones, pbx, "2003", auto_answer=200)
    bob.hold(bob_call)
    consult = bob.call(uri("2003", pbx))
    bob.wait_for("media_state", 10.0, call=consult, status="active")
    bob.xfer_replaces(bob_call, consult)
    ended = {int(bob.wait_call_state("DISCONNECTED", timeout=10.0)["call"]) for _ in range(2)}
    assert ended == {consult, bob_call}  # both of Bob's calls end, in whichever order
    carol_call = int(carol.wait_for("media_state", 10.0, status="active")["call"])
    time.sleep(0.5)  # the re-INVITEs settle: Alice now sends to Carol
    heard_by_alice, heard_by_carol = audio_both_ways(alice, call, carol, carol_call, tmp_path)
    assert heard_by_alice > 1000.0 and heard_by_carol > 1000.0
    carol.hangup(carol_call)
    alice.wait_call_state("DISCONNECTED", call, timeout=10.0)
    row = pbx.cdr_for("2001", "2002")
    assert row["transfer"] == "attended 2002 -> 2003"
    consultation = pbx.cdr_for("2002", "2003")
    assert consultation["reason"] == "transferred"
    assert consultation["linked_call"] == row["call_uuid"] and row["linked_call"] == consultation["call_uuid"]


def test_transfer_to_a_barred_number_is_refused_and_the_call_stays(pbx: Pbx, phones: PhoneFactory,
                                                                    tmp_path: Path) -> None:
    alice, call, bob, bob_call = a_calls_b(phones, pbx)
    bob.xfer(f"sip:0912345678@{DOMAIN}", bob_call)
    done = bob.wait_for("xfer_status", 10.0, call=bob_call, final=True)
    assert done["code"] == 403
    heard_by_alice, heard_by_bob = audio_both_ways(alice, call, bob, bob_call, tmp_path)
    assert heard_by_alice > 1000.0 and heard_by_bob > 1000.0
    alice.hangup(call)
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    row = pbx.cdr_for("2001", "2002")
    assert row["transfer"] == "" and row["destination"] == "2002"
