"""Call recording between real softphones (pjsua2) through `pbx serve`.

The PBX anchors a recorded call's media (relays the RTP through its own
ports) and writes a stereo WAV: the caller on the left, the callee on the
right. Each phone plays a tone of its own; the file has each tone on its
own channel (FFT), each phone still hears the other's tone through the
relay, and both hear "this call is recorded" when recording starts. On
demand, ``*1`` from the extension that may record starts and stops it.
"""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np
import pytest

from pbx.recording.files import file_name

from .harness import DOMAIN, Pbx, register_phone
from .phone import Phone, PhoneFactory, write_tone_wav
from .prompt_match import heard_prompt, recorded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PASSWORDS = {"2001": "alice-secret-2001", "2002": "bob-secret-2002", "2003": "carol-secret-2003",
             "2004": "dave-secret-2004"}


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    return tmp_path / "recordings"


@pytest.fixture
def dialplan(recordings: Path) -> str:
    lines = [f"domain: {DOMAIN}", "departments:", "  ops: {name: Operations}", "extensions:"]
    lines += [f"  {number}: {{name: U{number}, department: ops, password: {secret}, pickup_group: ops}}"
              for number, secret in PASSWORDS.items()]
    lines += ["recording:", f"  directory: {recordings}", "  extensions:", "    '2001': always",
              "    '2003': on_demand",
              "ivr_menus:", "  main: {number: '800', greeting: welcome, options: {'1': {extension: '2001'}}}"]
    return "\n".join(lines) + "\n"


def registered(phones: PhoneFactory, pbx: Pbx, number: str, **options: object) -> Phone:
    return register_phone(phones, pbx, number, PASSWORDS[number], **options)


def channels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path), "rb") as source:
        assert (source.getnchannels(), source.getsampwidth(), source.getframerate()) == (2, 2, 8000)
        samples = np.frombuffer(source.readframes(source.getnframes()), "<i2").astype(float)
    return samples[0::2], samples[1::2]


def level_at(samples: np.ndarray, frequency: float) -> float:
    """Spectral magnitude within 15 Hz of ``frequency`` (FFT), normalised by length."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) / max(1, len(samples))
    freqs = np.fft.rfftfreq(len(samples), 1.0 / 8000)
    return float(spectrum[(freqs > frequency - 15) & (freqs < frequency + 15)].max())


def dominant(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1.0 / 8000)[int(np.argmax(spectrum[1:])) + 1])


def exchange_tones(caller: Phone, call: int, callee: Phone, callee_call: int, folder: Path,
                   frequencies: tuple[float, float], seconds: float = 2.0) -> tuple[float, float]:
    """Each side plays its tone at once; returns the dominant frequency
    each heard (the caller's first)."""
    tone_a = write_tone_wav(folder / f"a{frequencies[0]:.0f}.wav", frequency=frequencies[0], seconds=seconds)
    tone_b = write_tone_wav(folder / f"b{frequencies[1]:.0f}.wav", frequency=frequencies[1], seconds=seconds)
    heard_a = folder / f"caller-heard-{frequencies[1]:.0f}.wav"
    heard_b = folder / f"callee-heard-{frequencies[0]:.0f}.wav"
    caller.record(heard_a, call)
    callee.record(heard_b, callee_call)
    caller.play(tone_a, call)
    callee.play(tone_b, callee_call)
    caller.wait_for("play_done", 10.0, call=call)
    callee.wait_for("play_done", 10.0, call=callee_call)
    caller.stop_record(call)
    callee.stop_record(callee_call)
    return dominant(recorded(heard_a)), dominant(recorded(heard_b))


def listen(phone: Phone, call: int, path: Path, seconds: float) -> np.ndarray:
    phone.record(path, call)
    time.sleep(seconds)
    phone.stop_record(call)
    return recorded(path)


def connected(phones: PhoneFactory, pbx: Pbx, caller: str, callee: str) -> tuple[Phone, int, Phone, int]:
    """``caller`` calls ``callee``, who answers: both phones and their call numbers."""
    calling = registered(phones, pbx, caller)
    called = registered(phones, pbx, callee, auto_answer=200)
    call = calling.call(f"sip:{callee}@{pbx.registrar()}")
    calling.wait_for("media_state", 10.0, call=call, status="active")
    return calling, call, called, int(called.wait_for("media_state", 10.0, status="active")["call"])


def hang_up(caller: Phone, call: int, callee: Phone, callee_call: int) -> None:
    caller.hangup(call)
    callee.wait_call_state("DISCONNECTED", callee_call, timeout=10.0)


def saved(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The recording's two channels, once the writer thread renamed it into place."""
    for _ in range(50):
        if path.exists():
            break
        time.sleep(0.1)
    return channels(path)


def recorded_tones(path: Path) -> tuple[float, float]:
    """The dominant frequency of each channel of a recording (caller, callee)."""
    left, right = saved(path)
    return dominant(left), dominant(right)


def test_a_recorded_call_has_each_side_on_its_own_channel(pbx: Pbx, phones: PhoneFactory, tmp_path: Path,
                                                          recordings: Path) -> None:
    alice, call, bob, bob_call = connected(phones, pbx, "2001", "2002")
    # Both hear the announcement first (the anchor plays it when the call is answered).
    announced = listen(alice, call, tmp_path / "alice-announcement.wav", 3.0)
    assert heard_prompt(announced, "call_recorded") > 0.8

    # Each still hears the other, through the relay.
    alice_heard, bob_heard = exchange_tones(alice, call, bob, bob_call, tmp_path, (440.0, 660.0))
    assert alice_heard == pytest.approx(660.0, abs=15.0)
    assert bob_heard == pytest.approx(440.0, abs=15.0)

    hang_up(alice, call, bob, bob_call)
    row = pbx.cdr_for("2001", "2002")
    assert row["disposition"] == "ANSWERED"
    assert row["recording"] == file_name(row["call_uuid"])
    left, right = saved(recordings / row["recording"])
    assert dominant(left) == pytest.approx(440.0, abs=15.0)      # the caller
    assert dominant(right) == pytest.approx(660.0, abs=15.0)     # the callee
    # Each channel holds one side only: the other's tone is far below.
    assert level_at(left, 660.0) < level_at(left, 440.0) / 20
    assert level_at(right, 440.0) < level_at(right, 660.0) / 20


def test_star_one_toggles_on_demand_recording(pbx: Pbx, phones: PhoneFactory, tmp_path: Path,
                                             recordings: Path) -> None:
    carol, call, bob, bob_call = connected(phones, pbx, "2003", "2002")

    # Not recorded yet: a first exchange stays out of the file.
    before = exchange_tones(carol, call, bob, bob_call, tmp_path, (350.0, 950.0), seconds=1.5)
    assert before == pytest.approx((950.0, 350.0), abs=15.0)

    bob.record(tmp_path / "bob-announcement.wav", bob_call)
    carol.send_dtmf("*1", call)
    # The keys reach Bob too: RFC 4733 events pass through the relay.
    assert [bob.wait_for("dtmf", 5.0, call=bob_call)["digit"] for _ in range(2)] == ["*", "1"]
    time.sleep(3.0)
    bob.stop_record(bob_call)
    announced = recorded(tmp_path / "bob-announcement.wav")
    assert heard_prompt(announced, "call_recorded") > 0.8  # recording started, and it is said
    during = exchange_tones(carol, call, bob, bob_call, tmp_path, (500.0, 800.0))
    assert during == pytest.approx((800.0, 500.0), abs=15.0)

    carol.send_dtmf("*1", call)
    time.sleep(0.5)
    after = exchange_tones(carol, call, bob, bob_call, tmp_path, (300.0, 1200.0), seconds=1.5)
    assert after == pytest.approx((1200.0, 300.0), abs=15.0)

    hang_up(carol, call, bob, bob_call)
    left, right = saved(recordings / pbx.cdr_for("2003", "2002")["recording"])
    assert (dominant(left), dominant(right)) == pytest.approx((500.0, 800.0), abs=15.0)   # only while on
    for outside, channel in ((350.0, left), (300.0, left), (950.0, right), (1200.0, right)):
        assert level_at(channel, outside) < level_at(channel, dominant(channel)) / 20, outside


def test_an_unrecorded_call_leaves_no_file(pbx: Pbx, phones: PhoneFactory, tmp_path: Path,
                                          recordings: Path) -> None:
    bob, call, dave, dave_call = connected(phones, pbx, "2002", "2004")   # neither records
    heard = exchange_tones(bob, call, dave, dave_call, tmp_path, (440.0, 660.0), seconds=1.0)
    assert heard == pytest.approx((660.0, 440.0), abs=15.0)
    hang_up(bob, call, dave, dave_call)
    row = pbx.cdr_for("2002", "2004")
    assert row["recording"] == ""
    assert not list(recordings.glob("*.wav"))


def test_a_recorded_call_on_hold_plays_music_then_talks_again(pbx: Pbx, phones: PhoneFactory, tmp_path: Path,
                                                              recordings: Path) -> None:
    alice, call, bob, bob_call = connected(phones, pbx, "2001", "2002")
    time.sleep(2.0)   # the announcement
    bob.hold(bob_call)
    bob.wait_for("media_state", 10.0, call=bob_call, status="local_hold")
    time.sleep(0.5)
    music = listen(alice, call, tmp_path / "held.wav", 2.0)
    assert float(np.sqrt(np.mean(music[2400:] ** 2))) > 1000.0   # the anchor's music, not silence

    bob.unhold(bob_call)
    bob.wait_for("media_state", 10.0, call=bob_call, status="active")
    time.sleep(0.3)
    heard = exchange_tones(alice, call, bob, bob_call, tmp_path, (440.0, 660.0))
    assert heard == pytest.approx((660.0, 440.0), abs=15.0)
    hang_up(alice, call, bob, bob_call)
    left, right = saved(recordings / pbx.cdr_for("2001", "2002")["recording"])
    assert dominant(right) == pytest.approx(660.0, abs=15.0)   # the music is not Bob's channel


def test_a_call_through_the_auto_attendant_is_recorded_once_put_through(pbx: Pbx, phones: PhoneFactory,
                                                                       tmp_path: Path, recordings: Path) -> None:
    dave = registered(phones, pbx, "2004")
    alice = registered(phones, pbx, "2001", auto_answer=200)
    call = dave.call(f"sip:800@{pbx.registrar()}")
    dave.wait_for("media_state", 10.0, call=call, status="active")
    time.sleep(1.0)
    dave.send_dtmf("1", call)
    alice_call = int(alice.wait_for("media_state", 10.0, status="active")["call"])
    pbx.server.wait_lines("direct_media", timeout=10.0)   # the caller re-INVITEd, to the anchor
    time.sleep(2.5)   # the announcement
    heard = exchange_tones(dave, call, alice, alice_call, tmp_path, (440.0, 660.0))
    assert heard == pytest.approx((660.0, 440.0), abs=15.0)
    hang_up(dave, call, alice, alice_call)
    row = pbx.cdr_for("2004", "800")
    assert recorded_tones(recordings / row["recording"]) == pytest.approx((440.0, 660.0), abs=15.0)


def test_a_blind_transfer_keeps_the_call_recorded(pbx: Pbx, phones: PhoneFactory, tmp_path: Path,
                                                  recordings: Path) -> None:
    alice, call, bob, bob_call = connected(phones, pbx, "2001", "2002")
    dave = registered(phones, pbx, "2004", auto_answer=200)
    time.sleep(2.0)   # the announcement
    first = exchange_tones(alice, call, bob, bob_call, tmp_path, (440.0, 660.0), seconds=1.5)
    assert first == pytest.approx((660.0, 440.0), abs=15.0)
    bob.xfer(f"sip:2004@{DOMAIN}", bob_call)
    assert bob.wait_for("xfer_status", 15.0, call=bob_call, final=True)["code"] == 200
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    dave_call = int(dave.wait_for("media_state", 10.0, status="active")["call"])
    time.sleep(0.5)
    after = exchange_tones(alice, call, dave, dave_call, tmp_path, (500.0, 900.0), seconds=1.5)
    assert after == pytest.approx((900.0, 500.0), abs=15.0)   # Alice was never re-INVITEd: the anchor was
    hang_up(alice, call, dave, dave_call)
    row = pbx.cdr_for("2001", "2002")
    assert row["transfer"] == "blind 2002 -> 2004"
    left, right = saved(recordings / row["recording"])
    assert level_at(left, 440.0) > 100 and level_at(left, 500.0) > 100          # Alice throughout
    assert level_at(right, 660.0) > 100 and level_at(right, 900.0) > 100        # Bob, then Dave


def test_an_attended_transfer_keeps_the_call_recorded(pbx: Pbx, phones: PhoneFactory, tmp_path: Path,
                                                      recordings: Path) -> None:
    alice, call, bob, bob_call = connected(phones, pbx, "2001", "2002")
    dave = registered(phones, pbx, "2004", auto_answer=200)
    time.sleep(2.0)
    bob.hold(bob_call)                                   # Alice hears the anchor's music meanwhile
    bob.wait_for("media_state", 10.0, call=bob_call, status="local_hold")
    consult = bob.call(f"sip:2004@{pbx.registrar()}")
    bob.wait_for("media_state", 10.0, call=consult, status="active")
    bob.xfer_replaces(bob_call, consult)
    ended = {int(bob.wait_call_state("DISCONNECTED", timeout=10.0)["call"]) for _ in range(2)}
    assert ended == {consult, bob_call}
    dave_call = int(dave.wait_for("media_state", 10.0, status="active")["call"])
    time.sleep(0.5)
    heard = exchange_tones(alice, call, dave, dave_call, tmp_path, (500.0, 900.0), seconds=1.5)
    assert heard == pytest.approx((900.0, 500.0), abs=15.0)   # the music stopped, Dave talks
    hang_up(dave, dave_call, alice, call)
    row = pbx.cdr_for("2001", "2002")
    assert row["transfer"] == "attended 2002 -> 2004"
    assert recorded_tones(recordings / row["recording"]) == pytest.approx((500.0, 900.0), abs=15.0)


def test_a_recorded_call_picked_up_is_recorded_with_the_picker(pbx: Pbx, phones: PhoneFactory, tmp_path: Path,
                                                               recordings: Path) -> None:
    alice = registered(phones, pbx, "2001")
    bob = registered(phones, pbx, "2002")                 # rings, never answers
    dave = registered(phones, pbx, "2004")
    call = alice.call(f"sip:2002@{pbx.registrar()}")
    bob.wait_for("incoming_call", 10.0)
    time.sleep(0.3)
    pick = dave.call(f"sip:*8@{pbx.registrar()}")
    dave.wait_for("media_state", 10.0, call=pick, status="active")
    alice.wait_for("media_state", 10.0, call=call, status="active")
    time.sleep(2.5)   # the announcement
    heard = exchange_tones(alice, call, dave, pick, tmp_path, (440.0, 900.0), seconds=1.5)
    assert heard == pytest.approx((900.0, 440.0), abs=15.0)
    hang_up(alice, call, dave, pick)
    row = pbx.cdr_for("2001", "2002")
    assert row["transfer"] == "pickup 2004 <- 2002"
    assert recorded_tones(recordings / row["recording"]) == pytest.approx((440.0, 900.0), abs=15.0)
