"""Music on hold between real softphones (pjsua2) through `pbx serve`.

Alice (2001) calls Bob (2002); Bob puts her on hold (re-INVITE with
a=sendonly): Alice's phone hears the PBX's music, not silence. Bob resumes
(a=sendrecv): Alice hears Bob's voice again, straight from Bob's phone.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .harness import DOMAIN, Pbx, register_phone
from .phone import Phone, PhoneFactory, wav_rms, write_tone_wav

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PASSWORDS = {"2001": "alice-secret-2001", "2002": "bob-secret-2002"}


@pytest.fixture
def dialplan() -> str:
    lines = [f"domain: {DOMAIN}", "departments:", "  ops: {name: Operations}", "extensions:"]
    lines += [f"  {number}: {{name: U{number}, department: ops, password: {secret}}}"
              for number, secret in PASSWORDS.items()]
    return "\n".join(lines) + "\n"


def registered(phones: PhoneFactory, pbx: Pbx, number: str, **options: object) -> Phone:
    return register_phone(phones, pbx, number, PASSWORDS[number], **options)


def heard(phone: Phone, call: int, path: Path, seconds: float) -> float:
    """Record what ``phone`` hears on ``call`` for ``seconds``: its RMS."""
    phone.record(path, call)
    time.sleep(seconds)
    phone.stop_record(call)
    return wav_rms(path, skip_seconds=0.3)


def test_the_held_party_hears_music_then_the_other_party_again(pbx: Pbx, phones: PhoneFactory,
                                                                tmp_path: Path) -> None:
    alice = registered(phones, pbx, "2001")
    bob = registered(phones, pbx, "2002", auto_answer=200)
    call = alice.call(f"sip:2002@{pbx.registrar()}")
    alice.wait_for("media_state", 10.0, call=call, status="active")
    bob_call = int(bob.wait_for("media_state", 10.0, status="active")["call"])

    bob.hold(bob_call)
    bob.wait_for("media_state", 10.0, call=bob_call, status="local_hold")
    time.sleep(0.5)  # our re-INVITE moves Alice to the music
    music = heard(alice, call, tmp_path / "held.wav", 2.5)
    assert music > 1000.0, music  # without music on hold Alice hears silence (RMS 0)

    bob.unhold(bob_call)
    bob.wait_for("media_state", 10.0, call=bob_call, status="active")
    time.sleep(0.5)
    voice = write_tone_wav(tmp_path / "bob.wav", frequency=660.0, seconds=3.0)
    bob.play(voice, bob_call)
    time.sleep(0.5)
    after = tmp_path / "resumed.wav"
    alice.record(after, call)
    bob.wait_for("play_done", 10.0, call=bob_call)
    alice.stop_record(call)
    assert wav_rms(after, skip_seconds=0.2) > 1000.0
    assert dominant_frequency(after) == pytest.approx(660.0, abs=20.0)  # Bob's tone, not the music

    alice.hangup(call)
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    row = pbx.cdr_for("2001", "2002")
    assert row["disposition"] == "ANSWERED"


def dominant_frequency(path: Path) -> float:
    """The strongest frequency of a mono 16-bit WAV (FFT)."""
    import wave

    import numpy as np

    with wave.open(str(path), "rb") as source:
        rate = source.getframerate()
        samples = np.frombuffer(source.readframes(source.getnframes()), "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1.0 / rate)[int(np.argmax(spectrum[1:])) + 1])
