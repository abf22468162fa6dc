"""Meet-me conference rooms between real softphones (pjsua2) through `pbx serve`.

Three phones dial room 850 and key its PINs (the first the moderator's);
each then plays a tone of its own (500, 900, 1400 Hz) and records the
room: each recording holds the other two tones and not its own (FFT).
Then one mutes itself with *6 and the others stop hearing it. A caller
keying wrong PINs is refused, and locked out after five (with the right
PIN too); a full room is said and the call ends.
"""

from __future__ import annotations

import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from .harness import DOMAIN, Pbx, dial, register_phone
from .phone import Phone, PhoneFactory, write_tone_wav
from .prompt_match import heard_prompt, recorded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PASSWORDS = {"2001": "alice-secret-2001", "2002": "bob-secret-2002", "2003": "carol-secret-2003",
             "2004": "dave-secret-2004"}
TONES = {"2001": 500.0, "2002": 900.0, "2003": 1400.0}
PIN, MODERATOR_PIN = "4321", "98765"
JOIN_SECONDS = 2.5
"""PIN checked, prompts loaded, member in: generous, the machine is shared."""


@pytest.fixture
def dialplan() -> str:
    lines = [f"domain: {DOMAIN}", "departments:", "  ops: {name: Operations}", "extensions:"]
    lines += [f"  {number}: {{name: U{number}, department: ops, password: {secret}, language: en}}"
              for number, secret in PASSWORDS.items()]
    lines += ["conferences:",
              f'  team: {{number: "850", pin: "{PIN}", moderator_pin: "{MODERATOR_PIN}", max_members: 5}}',
              '  pair: {number: "851", max_members: 2}']
    return "\n".join(lines) + "\n"


def registered(phones: PhoneFactory, pbx: Pbx, number: str) -> Phone:
    return register_phone(phones, pbx, number, PASSWORDS[number])


def joined(phone: Phone, pbx: Pbx, room: str, pin: str | None) -> int:
    call = dial(phone, room, pbx)
    phone.wait_for("media_state", 10.0, call=call, status="active")
    if pin is not None:
        phone.send_dtmf(f"{pin}#", call)
    return call


def levels(path: Path) -> dict[float, float]:
    """The spectrum's strength at each test tone (±15 Hz), past the first 0.3 s."""
    with wave.open(str(path), "rb") as source:
        rate = source.getframerate()
        samples = np.frombuffer(source.readframes(source.getnframes()), "<i2").astype(float)[int(0.3 * rate):]
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    bins = np.fft.rfftfreq(len(samples), 1.0 / rate)
    return {f: float(spectrum[(bins > f - 15) & (bins < f + 15)].max()) for f in TONES.values()}


def heard_before_hangup(phone: Phone, call: int, path: Path, phrase: str,
                        then: Callable[[], object] = lambda: None) -> bool:
    """Record ``call`` (doing ``then`` once recording) until the PBX hangs
    up; was ``phrase`` said?"""
    phone.record(path, call)
    then()
    phone.wait_call_state("DISCONNECTED", call, timeout=20.0)
    phone.wait_for("record_done", 5.0, call=call)  # the hang-up closes the recording
    return heard_prompt(recorded(path), phrase) > 0.5


def record_all(members: dict[str, tuple[Phone, int]], folder: Path, name: str, seconds: float) -> dict[str, Path]:
    paths = {number: folder / f"{name}-{number}.wav" for number in members}
    for number, (phone, call) in members.items():
        phone.record(paths[number], call)
    time.sleep(seconds)
    for number, (phone, call) in members.items():
        phone.stop_record(call)
    return paths


def test_three_phones_each_hear_the_other_two_not_themselves_and_mute_works(
        pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    members: dict[str, tuple[Phone, int]] = {}
    for number, pin in (("2001", MODERATOR_PIN), ("2002", PIN), ("2003", PIN)):
        phone = registered(phones, pbx, number)
        members[number] = (phone, joined(phone, pbx, "850", pin))
    time.sleep(JOIN_SECONDS)
    for number, (phone, call) in members.items():
        tone = write_tone_wav(tmp_path / f"tone-{number}.wav", frequency=TONES[number], seconds=12.0,
                              amplitude=0.2)
        phone.play(tone, call)  # long enough: the harness ends a player at its file's end
    time.sleep(0.5)

    for number, path in record_all(members, tmp_path, "mixed", 3.0).items():
        heard = levels(path)
        own = heard[TONES[number]]
        others = [heard[TONES[other]] for other in TONES if other != number]
        assert min(others) > 20 * own, (number, heard)

    alice, alice_call = members["2001"]
    alice.send_dtmf("*6", alice_call)
    time.sleep(1.5)
    for number, path in record_all({n: members[n] for n in ("2002", "2003")}, tmp_path, "muted", 2.5).items():
        heard = levels(path)
        other = next(n for n in ("2002", "2003") if n != number)
        assert heard[TONES[other]] > 20 * heard[TONES["2001"]], (number, heard)

    for phone, call in members.values():
        phone.hangup(call)
    row = pbx.cdr_for("2002", "850")
    assert (row["disposition"], row["destination"]) == ("ANSWERED", "conference:team"), row
    assert int(row["billsec"]) >= 5, row
    assert PIN not in str(row) and MODERATOR_PIN not in str(row)


def test_wrong_pins_are_refused_then_locked_out_and_a_full_room_is_said(
        pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    dave = registered(phones, pbx, "2004")
    call = joined(dave, pbx, "850", None)
    for _ in range(3):
        dave.send_dtmf("1111#", call)
        time.sleep(2.0)  # "that PIN is not valid", the request again
    dave.wait_call_state("DISCONNECTED", call, timeout=20.0)
    row = pbx.cdr_for("2004", "850")
    assert row["reason"] == "auth_failed", row

    call = joined(dave, pbx, "850", "2222")
    time.sleep(2.0)
    assert heard_before_hangup(dave, call, tmp_path / "locked.wav", "conference_pin_locked",
                               then=lambda: dave.send_dtmf("3333#", call))  # the fifth wrong PIN

    call = joined(dave, pbx, "850", PIN)  # right, but locked: not even compared
    dave.wait_call_state("DISCONNECTED", call, timeout=20.0)
    assert pbx.cdr_for("2004", "850", nth=3)["reason"] == "locked"

    alice, bob, carol = (registered(phones, pbx, n) for n in ("2001", "2002", "2003"))
    joined(alice, pbx, "851", None)
    joined(bob, pbx, "851", None)
    time.sleep(JOIN_SECONDS)
    call = joined(carol, pbx, "851", None)
    assert heard_before_hangup(carol, call, tmp_path / "full.wav", "conference_full")
    row = pbx.cdr_for("2003", "851")
    assert (row["disposition"], row["reason"], row["answered_at"]) == ("BUSY", "conference_full", ""), row


def test_the_moderator_locks_the_room_and_drops_the_last_who_joined(
        pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    alice, bob, carol = (registered(phones, pbx, n) for n in ("2001", "2002", "2003"))
    moderator = joined(alice, pbx, "850", MODERATOR_PIN)
    member = joined(bob, pbx, "850", PIN)
    time.sleep(JOIN_SECONDS)
    bob.send_dtmf("*5", member)  # not a moderator: told so, nothing changes
    alice.send_dtmf("*5", moderator)
    time.sleep(1.5)
    call = joined(carol, pbx, "850", PIN)
    assert heard_before_hangup(carol, call, tmp_path / "locked-out.wav", "conference_locked")
    assert pbx.cdr_for("2003", "850")["reason"] == "conference_locked"

    alice.send_dtmf("*7", moderator)
    bob.wait_call_state("DISCONNECTED", member, timeout=10.0)
    assert pbx.cdr_for("2002", "850")["reason"] == "conference_dropped"
    alice.hangup(moderator)
