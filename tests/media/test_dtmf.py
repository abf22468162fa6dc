"""DTMF in its three forms: RFC 4733 events, SIP INFO bodies, in-band tones."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pbx.ivr.phrases import LANGUAGES, PHRASES
from pbx.ivr.prompts import PromptLibrary
from pbx.media.events import Digit, DigitSource
from pbx.media.dtmf_info import DtmfInfoError, UnsupportedDtmfBody, parse_dtmf_info
from pbx.media.inband import DetectorSettings, InbandDetector, dtmf_tone
from pbx.media.rtp import RtpPacket, parse_rtp
from pbx.media.stream import ReceivePolicy, RtpReceiver
from pbx.media.telephone_event import MAX_DURATION, TelephoneEventReceiver, event_packets, parse_event

# ---------------------------------------------------------------- RFC 4733


def press(digit: str, *, timestamp: int, sequence: int, duration_ms: int = 100) -> list[RtpPacket]:
    """The packets a phone sends for one key press."""
    return [RtpPacket(payload_type=101, sequence=(sequence + n) % 65536, timestamp=(timestamp + offset) % 2**32,
                      ssrc=5, marker=marker, payload=payload)
            for n, (marker, offset, payload) in enumerate(event_packets(digit, duration_ms=duration_ms))]


def digits_of(packets: list[RtpPacket]) -> str:
    receiver = TelephoneEventReceiver()
    return "".join(d.digit for p in packets if (d := receiver.receive(p, 0.0)) is not None)


def test_sender_makes_marker_start_growing_durations_and_three_ends() -> None:
    packets = event_packets("#", duration_ms=100)
    events = [parse_event(p) for _, _, p in packets]
    assert [m for m, _, _ in packets] == [True] + [False] * 6
    assert {o for _, o, _ in packets} == {0}
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {11}


def test_each_press_is_one_digit_despite_redundant_ends_and_retransmissions() -> None:
    packets = press("5", timestamp=1000, sequence=10) + press("5", timestamp=3000, sequence=17)
    assert digits_of(packets) == "55"
    assert digits_of(packets + packets) == "55"                 # every packet sent twice
    shuffled = list(packets)
    random.Random(4).shuffle(shuffled[:7])
    assert digits_of(shuffled) == "55"


def test_a_press_whose_first_packets_were_lost_still_counts() -> None:
    assert digits_of(press("7", timestamp=0, sequence=0)[4:]) == "7"


def test_digits_across_sequence_and_timestamp_wrap_through_the_receiver() -> None:
    stream = RtpReceiver(ReceivePolicy(payload_types=frozenset({0, 101}), audio_payload_type=0))
    events = TelephoneEventReceiver()
    packets = (press("1", timestamp=2**32 - 800, sequence=65530)
               + press("2", timestamp=2**32 - 800 + 1600, sequence=65537)
               + press("3", timestamp=2400, sequence=65544))
    assert packets[3].sequence == 65533 and packets[7].sequence == 1
    found = []
    for n, packet in enumerate(packets):
        result = stream.receive(packet.serialise(), ("192.0.2.1", 4000), n * 0.02)
        assert result is not None
        if (digit := events.receive(result.packet, n * 0.02)) is not None:
            found.append(digit.digit)
    assert found == ["1", "2", "3"]


def test_a_long_press_in_several_segments_is_one_digit() -> None:
    packets = press("9", timestamp=100, sequence=0, duration_ms=20_000)
    assert len({p.timestamp for p in packets}) == 3               # 20 s is three segments
    assert parse_event(packets[-1].payload).duration < MAX_DURATION
    assert digits_of(packets) == "9"
    # A different key right after the long one is a new digit.
    assert digits_of(packets + press("9", timestamp=100 + 160_000 + 800, sequence=2000)) == "99"


def test_flash_and_garbage_events_are_ignored() -> None:
    receiver = TelephoneEventReceiver()
    flash = RtpPacket(payload_type=101, sequence=1, timestamp=1, ssrc=1, payload=bytes([16, 0x0A, 0, 160]))
    short = RtpPacket(payload_type=101, sequence=2, timestamp=2, ssrc=1, payload=b"\x01")
    assert receiver.receive(flash, 0.0) is None and receiver.receive(short, 0.0) is None
    assert receiver.ignored == 2


def test_digit_event_type() -> None:
    digit = Digit(digit="*", source=DigitSource.RFC4733, time=1.0)
    assert digit.duration is None
    with pytest.raises(ValueError):
        Digit(digit="E", source=DigitSource.INFO, time=0.0)
    assert parse_rtp(press("A", timestamp=0, sequence=0)[0].serialise()).marker


# ---------------------------------------------------------------- SIP INFO

@pytest.mark.parametrize(("content_type", "body", "digit", "duration"), [
    ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", "5", 0.16),
    ("Application/DTMF-Relay; charset=utf-8", "signal= *\nduration=250", "*", 0.25),
    ("application/dtmf-relay", "Signal=11\r\nDuration=100", "#", 0.1),
    ("application/dtmf-relay", "Signal=a\r\n", "A", None),
    ("application/dtmf", "7", "7", None),
    ("application/dtmf", b"10\r\n", "*", None),
])
def test_info_bodies(content_type: str, body: str | bytes, digit: str, duration: float | None) -> None:
    assert parse_dtmf_info(content_type, body, 3.0) == Digit(digit=digit, source=DigitSource.INFO, time=3.0,
                                                             duration=duration)


@pytest.mark.parametrize(("content_type", "body", "status"), [
    ("application/sdp", "v=0", 415),
    ("", "5", 415),
    ("application/dtmf-relay", "Duration=100", 400),
    ("application/dtmf-relay", "Signal=16", 400),
    ("application/dtmf-relay", "Signal=", 400),
    ("application/dtmf", "55", 400),
    ("application/dtmf", "x" * 2000, 400),
])
def test_bad_info_bodies_carry_their_answer(content_type: str, body: str, status: int) -> None:
    with pytest.raises(DtmfInfoError) as caught:
        parse_dtmf_info(content_type, body, 0.0)
    assert caught.value.status == status
    assert isinstance(caught.value, UnsupportedDtmfBody) == (status == 415)


# ---------------------------------------------------------------- in-band

def pcm(samples: np.ndarray) -> bytes:
    data: bytes = (np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes()
    return data


def detect(samples: np.ndarray, settings: DetectorSettings = DetectorSettings()) -> str:
    detector = InbandDetector(settings)
    found = []
    data = pcm(samples)
    for start in range(0, len(data), 320):          # 20 ms frames, as they come from the jitter buffer
        found += detector.feed(data[start:start + 320], 0.0)
    assert all(d.source is DigitSource.INBAND for d in found)
    return "".join(d.digit for d in found)


def keys(sequence: str, *, tone: float = 0.08, gap: float = 0.06, **kwargs: float) -> np.ndarray:
    parts = [np.zeros(400)]
    for key in sequence:
        parts += [dtmf_tone(key, tone, **kwargs), np.zeros(int(gap * 8000))]
    return np.concatenate(parts)


def test_every_key_is_heard_once() -> None:
    assert detect(keys("0123456789*#ABCD")) == "0123456789*#ABCD"


def test_repeated_key_needs_the_gap_and_a_held_key_is_one_digit() -> None:
    assert detect(keys("11", gap=0.05)) == "11"
    assert detect(keys("1", tone=2.0)) == "1"


def test_minimum_duration() -> None:
    assert detect(keys("5", tone=0.05)) == "5"
    assert detect(keys("5", tone=0.025)) == ""


def test_twist_limits() -> None:
    assert detect(keys("8", twist_db=6)) == "8"       # row louder by 6 dB: normal twist, allowed
    assert detect(keys("8", twist_db=-3)) == "8"      # column louder by 3 dB: allowed
    assert detect(keys("8", twist_db=12)) == ""
    assert detect(keys("8", twist_db=-7)) == ""


def test_keys_in_noise_and_quiet_keys() -> None:
    rng = np.random.default_rng(7)
    signal = keys("2580", level=0.2)
    assert detect(signal + rng.normal(0, 0.02, len(signal))) == "2580"       # about 20 dB SNR
    assert detect(keys("3", level=0.003)) == ""                              # below the energy floor
    assert detect(rng.normal(0, 0.3, 8000 * 5)) == ""                        # noise alone


def test_speech_does_not_fire_digits() -> None:
    # The shipped prompts are speech in three languages (espeak-ng); each
    # mentions keys ("press 1") without containing their tones.
    library = PromptLibrary()
    loose = DetectorSettings(min_blocks=1, release_blocks=1)   # even a single block would count
    for language in LANGUAGES:
        for phrase in PHRASES:
            audio = np.frombuffer(library.load(language, phrase).linear, dtype=np.int16) / 32768
            assert detect(audio, loose) == "", (language, phrase)
            assert detect(np.clip(audio * 4, -1, 1), loose) == "", (language, phrase)


def test_music_does_not_fire_digits() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(2000) / 8000
    notes = 440 * 2 ** (rng.integers(-12, 12, 60) / 12)
    # Notes with harmonics, then two-note chords from the same scale.
    melody = np.concatenate([sum(0.2 / h * np.sin(2 * np.pi * h * f * t) for h in range(1, 5)) for f in notes])
    chords = np.concatenate([sum(0.3 * np.sin(2 * np.pi * f * t) for f in rng.choice(notes, 2)) for _ in range(60)])
    loose = DetectorSettings(min_blocks=1, release_blocks=1)
    assert detect(melody, loose) == "" and detect(chords, loose) == ""


def test_a_key_inside_speech_is_found() -> None:
    speech = np.frombuffer(PromptLibrary().load("en", "welcome").linear, dtype=np.int16) / 32768
    mixed = np.concatenate([speech[:8000], dtmf_tone("4", 0.1), speech[8000:16000]])
    assert detect(mixed) == "4"
