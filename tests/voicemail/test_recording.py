"""Leaving a message, without a socket: the recording's end (#, length,
silence, hang-up) and the deposit's steps, fed audio and events by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pbx.ivr.menu import Timeout
from pbx.media.events import Digit, DigitSource, PlaybackFinished
from pbx.voicemail.recording import (Deposit, HangUp, MessageEnded, MessageRecording, Phase, PlayGreeting,
                                     SayGoodbye, StartRecording)

PACKET = 160  # 20 ms at 8 kHz


def voice(seconds: float, level: float = 3000.0) -> bytes:
    samples = np.arange(int(seconds * 8000))
    return (np.sin(2 * np.pi * 300 * samples / 8000) * level).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * 8000))


def packets(audio: bytes) -> list[bytes]:
    return [audio[i:i + 2 * PACKET] for i in range(0, len(audio), 2 * PACKET)]


def feed(recording: MessageRecording, audio: bytes) -> str | None:
    """Feed ``audio`` packet by packet, as the stream does; the stop reason."""
    for packet in packets(audio):
        reason = recording.feed(packet)
        if reason is not None:
            return reason
    return None


def key(digit: str, at: float = 0.0) -> Digit:
    return Digit(digit=digit, source=DigitSource.RFC4733, time=at)


def test_silence_after_speech_ends_the_message_and_is_cut_but_for_a_tail() -> None:
    recording = MessageRecording(max_seconds=60, silence_seconds=3)
    assert feed(recording, voice(2.0)) is None
    assert feed(recording, silence(3.0)) == "silence"
    assert recording.voiced
    assert recording.seconds == pytest.approx(2.5, abs=0.05)  # 2 s of voice, 0.5 s of the silence kept


def test_hash_ends_it_and_cuts_the_key_tone() -> None:
    recording = MessageRecording(max_seconds=60, silence_seconds=3)
    feed(recording, voice(2.0))
    assert recording.key("5") is None
    assert recording.key("#") == "hash"
    assert recording.seconds == pytest.approx(1.75, abs=0.01)
    assert recording.feed(voice(1.0)) is None and recording.seconds == pytest.approx(1.75, abs=0.01)


def test_the_longest_message_is_cut_at_max_seconds() -> None:
    recording = MessageRecording(max_seconds=5, silence_seconds=3)
    assert feed(recording, voice(7.0)) == "max_length"
    assert recording.seconds == pytest.approx(5.0, abs=0.001)


def test_noise_below_the_voice_level_is_silence_and_no_message() -> None:
    recording = MessageRecording(max_seconds=60, silence_seconds=2)
    assert feed(recording, voice(2.5, level=150.0)) == "silence"
    assert not recording.voiced


def test_odd_packet_sizes_are_carried_over_whole_frames() -> None:
    recording = MessageRecording(max_seconds=60, silence_seconds=1)
    audio = voice(1.0) + silence(1.2)
    chunks = [audio[i:i + 222] for i in range(0, len(audio), 222)]  # 111 samples, not a frame
    reasons = [recording.feed(chunk) for chunk in chunks]
    assert [r for r in reasons if r is not None] == ["silence"]


def test_a_deposit_greets_beeps_records_and_says_goodbye() -> None:
    deposit = Deposit(max_seconds=30, silence_seconds=3)
    assert deposit.start(0.0) == [PlayGreeting()]
    assert deposit.heard(voice(1.0)) == []  # during the greeting nothing is kept
    assert deposit.handle(key("#", 1.0), 1.0) == []  # keys do nothing during the greeting
    assert deposit.handle(PlaybackFinished(playback_id=1, completed=True, time=8.0), 8.0) == [StartRecording()]
    assert deposit.deadline() == 39.0
    for packet in packets(voice(2.0)):
        assert deposit.heard(packet) == []
    assert deposit.handle(key("#", 10.0), 10.0) == [MessageEnded("hash"), SayGoodbye()]
    assert deposit.heard(voice(1.0)) == [] and deposit.deadline() is None
    assert deposit.handle(PlaybackFinished(playback_id=2, completed=True, time=11.0), 11.0) == [
        HangUp("voicemail_hash")]
    assert deposit.phase is Phase.DONE


def test_a_hang_up_while_recording_keeps_what_was_said() -> None:
    deposit = Deposit(max_seconds=30, silence_seconds=3)
    deposit.handle(PlaybackFinished(playback_id=1, completed=True, time=8.0), 8.0)
    for packet in packets(voice(1.5) + silence(1.0)):
        deposit.heard(packet)
    assert deposit.hangup() == [MessageEnded("hangup")]
    assert deposit.recording.seconds == pytest.approx(2.0, abs=0.05)  # the trailing silence cut to 0.5 s
    assert deposit.hangup() == []


def test_a_hang_up_during_the_greeting_leaves_nothing() -> None:
    deposit = Deposit(max_seconds=30, silence_seconds=3)
    deposit.start(0.0)
    assert deposit.hangup() == []


def test_audio_that_stops_arriving_ends_at_the_deadline() -> None:
    deposit = Deposit(max_seconds=30, silence_seconds=3)
    deposit.handle(PlaybackFinished(playback_id=1, completed=True, time=8.0), 8.0)
    deposit.heard(voice(1.0))
    assert deposit.handle(Timeout(39.0), 39.0) == [MessageEnded("max_length"), SayGoodbye()]
