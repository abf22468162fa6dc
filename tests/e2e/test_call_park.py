"""Call park between real softphones (pjsua2) through `pbx serve`.

Alice (2001) calls Bob (2002) and puts him on hold (Bob hears the PBX's
music); she dials *70 and hears "your call is parked at 7 0 1", and her
call with Bob ends. Carol (2003) dials 701 and talks with Bob. A call
nobody picks up rings Alice back after ``ring_back``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .harness import DOMAIN, Pbx, dial, register_phone
from .phone import Phone, PhoneFactory, wav_rms, write_tone_wav
from .prompt_match import heard_prompt, recorded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

PASSWORDS = {"2001": "alice-secret-2001", "2002": "bob-secret-2002", "2003": "carol-secret-2003"}


@pytest.fixture
def dialplan() -> str:
    lines = [f"domain: {DOMAIN}", "departments:", "  ops: {name: Operations}", "extensions:"]
    lines += [f"  {number}: {{name: U{number}, department: ops, password: {secret}, language: en}}"
              for number, secret in PASSWORDS.items()]
    lines += ['parking: {slots: "701-720", ring_back: 10}']
    return "\n".join(lines) + "\n"


def registered(phones: PhoneFactory, pbx: Pbx, number: str, **options: object) -> Phone:
    return register_phone(phones, pbx, number, PASSWORDS[number], **options)


def parked(alice: Phone, bob: Phone, pbx: Pbx, folder: Path) -> int:
    """Alice calls Bob, holds him, dials *70: the slot's prompt is heard and
    her call with Bob ends. Bob's call number."""
    call = dial(alice, "2002", pbx)
    alice.wait_for("media_state", 10.0, call=call, status="active")
    bob_call = int(bob.wait_for("media_state", 10.0, status="active")["call"])
    alice.hold(call)
    alice.wait_for("media_state", 10.0, call=call, status="local_hold")
    time.sleep(1.0)  # our re-INVITE moves Bob to the music
    park = dial(alice, "*70", pbx)
    # The PBX ends the parker's dialog with Bob (BYE), then answers *70 with early media.
    alice.wait_call_state("DISCONNECTED", call, timeout=10.0)
    alice.wait_for("media_state", 10.0, call=park, status="active")
    heard = folder / "parked.wav"
    alice.record(heard, park)
    alice.wait_call_state("DISCONNECTED", park, timeout=15.0)
    alice.wait_for("record_done", 5.0, call=park)
    assert heard_prompt(recorded(heard), "call_parked") > 0.5
    assert heard_prompt(recorded(heard), "digit_7") > 0.5
    return bob_call


def hears(listener: Phone, call: int, talker: Phone, talker_call: int, folder: Path, name: str) -> float:
    """``talker`` plays a 660 Hz tone; the RMS of what ``listener`` records."""
    tone = write_tone_wav(folder / f"{name}-tone.wav", frequency=660.0, seconds=2.0)
    path = folder / f"{name}.wav"
    listener.record(path, call)
    talker.play(tone, talker_call)
    talker.wait_for("play_done", 10.0, call=talker_call)
    listener.stop_record(call)
    return wav_rms(path, skip_seconds=0.5)


def test_a_parked_call_is_picked_up_by_dialling_its_slot(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    alice = registered(phones, pbx, "2001")
    bob = registered(phones, pbx, "2002", auto_answer=200)
    carol = registered(phones, pbx, "2003")
    bob_call = parked(alice, bob, pbx, tmp_path)
    music = tmp_path / "bob-parked.wav"
    bob.record(music, bob_call)
    time.sleep(1.5)
    bob.stop_record(bob_call)
    assert wav_rms(music, skip_seconds=0.3) > 1000.0  # Bob waits with music

    pickup = dial(carol, "701", pbx)
    carol.wait_for("media_state", 10.0, call=pickup, status="active")
    time.sleep(1.0)
    assert hears(carol, pickup, bob, bob_call, tmp_path, "carol-hears-bob") > 1000.0
    assert hears(bob, bob_call, carol, pickup, tmp_path, "bob-hears-carol") > 1000.0

    carol.hangup(pickup)
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    row = pbx.cdr_for("2001", "2002")
    assert (row["disposition"], row["destination"], row["transfer"]) == ("ANSWERED", "2003", "park 2001 -> 2003"), row
    assert pbx.cdr_for("2003", "701")["reason"] == "picked_up_parked"
    nothing = dial(carol, "701", pbx)  # the slot is free again
    assert carol.wait_call_state("DISCONNECTED", nothing, timeout=15.0)["code"] == 404


def test_a_call_nobody_picks_up_rings_the_parker_back(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    alice = registered(phones, pbx, "2001", auto_answer=200)
    bob = registered(phones, pbx, "2002", auto_answer=200)
    bob_call = parked(alice, bob, pbx, tmp_path)
    back = int(alice.wait_for("media_state", 30.0, status="active")["call"])  # ring_back: 10 s
    time.sleep(1.0)
    assert hears(alice, back, bob, bob_call, tmp_path, "alice-hears-bob") > 1000.0
    alice.hangup(back)
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)


def test_a_blind_transfer_to_star_70_parks_the_other_party(pbx: Pbx, phones: PhoneFactory,
                                                           tmp_path: Path) -> None:
    alice = registered(phones, pbx, "2001")
    bob = registered(phones, pbx, "2002", auto_answer=200)
    carol = registered(phones, pbx, "2003")
    call = dial(alice, "2002", pbx)
    alice.wait_for("media_state", 10.0, call=call, status="active")
    bob_call = int(bob.wait_for("media_state", 10.0, status="active")["call"])
    alice.xfer(f"sip:*70@{pbx.registrar()}", call)  # a phone's park key sends this
    alice.wait_call_state("DISCONNECTED", call, timeout=10.0)
    time.sleep(1.0)
    music = tmp_path / "bob-parked.wav"
    bob.record(music, bob_call)
    time.sleep(1.5)
    bob.stop_record(bob_call)
    assert wav_rms(music, skip_seconds=0.3) > 1000.0

    pickup = dial(carol, "701", pbx)
    carol.wait_for("media_state", 10.0, call=pickup, status="active")
    time.sleep(1.0)
    assert hears(carol, pickup, bob, bob_call, tmp_path, "carol-hears-bob") > 1000.0
    carol.hangup(pickup)
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    assert pbx.cdr_for("2001", "2002")["transfer"] == "park 2001 -> 2003"
