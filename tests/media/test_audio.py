"""G.711, WAV loading and conversion, tones and the player."""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from pbx.media.audio_file import AudioCache, AudioFileError, decode_wav, load_wav
from pbx.media.codecs import FRAME_SAMPLES, Codec, rms
from pbx.media.player import Player, Prompt, Silence, Tone
from pbx.media.tones import TONES, ToneKind, ToneSpec, render, tone_spec


def sine(freq: float, seconds: float, rate: int = 8000, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.asarray(amplitude * np.sin(2 * np.pi * freq * t))


def wav_bytes(samples: np.ndarray, rate: int, width: int, channels: int = 1) -> bytes:
    """A plain PCM WAV via the stdlib writer; ``samples`` in -1..1."""
    frames = np.repeat(samples[:, None], channels, axis=1).reshape(-1)
    if width == 1:
        data = (frames * 127 + 128).astype(np.uint8).tobytes()
    elif width == 2:
        data = (frames * 32767).astype("<i2").tobytes()
    elif width == 3:
        ints = (frames * 8388607).astype("<i4").tobytes()
        data = b"".join(ints[i:i + 3] for i in range(0, len(ints), 4))
    else:
        data = (frames * 2147483647).astype("<i4").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(data)
    return out.getvalue()


def float_wav(samples: np.ndarray, rate: int, extensible: bool) -> bytes:
    data = samples.astype("<f4").tobytes()
    if extensible:
        fmt = struct.pack("<HHIIHHHHI16s", 0xFFFE, 1, rate, rate * 4, 4, 32, 22, 32, 4,
                          struct.pack("<H", 3) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71")
    else:
        fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def dominant_frequency(linear: bytes) -> float:
    samples = np.frombuffer(linear, dtype=np.int16).astype(float)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * 8000 / len(samples))


# ---------------------------------------------------------------- G.711

@pytest.mark.parametrize("codec", list(Codec))
def test_g711_round_trip_keeps_the_signal(codec: Codec) -> None:
    linear = (sine(1000, 0.1) * 32767).astype(np.int16).tobytes()
    encoded = codec.encode(linear)
    assert len(encoded) == 800
    decoded = np.frombuffer(codec.decode(encoded), dtype=np.int16).astype(float)
    original = np.frombuffer(linear, dtype=np.int16).astype(float)
    # G.711 keeps over 30 dB SNR on a loud sine.
    noise = np.sqrt(np.mean((decoded - original) ** 2))
    assert noise < np.sqrt(np.mean(original ** 2)) / 30


def test_g711_silence_bytes_decode_to_the_quietest_level() -> None:
    for codec in Codec:
        decoded = np.frombuffer(codec.decode(bytes([codec.silence]) * 10), dtype=np.int16)
        assert np.all(np.abs(decoded) <= 8)   # A-law has no exact zero: ±8
    assert Codec.by_payload_type(8) is Codec.PCMA and Codec.by_name("pcmu") is Codec.PCMU
    assert Codec.by_payload_type(18) is None


# ---------------------------------------------------------------- WAV loading

@pytest.mark.parametrize(("rate", "width", "channels"), [
    (8000, 2, 1), (16000, 2, 1), (44100, 2, 2), (48000, 3, 2), (22050, 1, 1), (11025, 4, 1), (32000, 2, 6),
])
def test_wav_of_any_common_format_becomes_8k_mono(rate: int, width: int, channels: int) -> None:
    audio = decode_wav(wav_bytes(sine(440, 1.0, rate), rate, width, channels))
    assert abs(audio.seconds - 1.0) < 0.01
    assert abs(dominant_frequency(audio.linear) - 440) < 3
    # Half of full scale, whatever the input width: about 0.5 * 32767 / sqrt(2).
    assert 10000 < rms(audio.linear) < 13500


def test_float_and_extensible_wav() -> None:
    for extensible in (False, True):
        audio = decode_wav(float_wav(sine(600, 0.5, 16000), 16000, extensible))
        assert abs(dominant_frequency(audio.linear) - 600) < 3


def test_downsampling_removes_what_8k_cannot_carry() -> None:
    # A 6 kHz tone in a 44.1 kHz file would fold to 2 kHz without the low-pass.
    audio = decode_wav(wav_bytes(sine(6000, 0.5, 44100), 44100, 2))
    assert rms(audio.linear) < 300


@pytest.mark.parametrize(("data", "message"), [
    (b"", "not a RIFF/WAVE file"),
    (b"RIFF\x00\x00\x00\x00WAVE", "no fmt chunk"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16),
     "no data chunk"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + struct.pack("<HHIIHH", 2, 1, 8000, 4000, 1, 4),
     "encoding 0x2 is not supported"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + struct.pack("<HHIIHH", 1, 0, 8000, 0, 0, 16),
     "0 channels"),
])
def test_bad_files_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(AudioFileError, match=message):
        decode_wav(data, "greeting.wav")


def test_cache_loads_once_and_reloads_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "p.wav"
    path.write_bytes(wav_bytes(sine(440, 0.2), 8000, 2))
    cache = AudioCache()
    first = cache.load(path)
    assert cache.load(path) is first
    assert first.payload(Codec.PCMU) is first.payload(Codec.PCMU)
    path.write_bytes(wav_bytes(sine(440, 0.4), 8000, 2))
    assert abs(cache.load(path).seconds - 0.4) < 0.01
    with pytest.raises(AudioFileError, match="missing.wav"):
        load_wav(tmp_path / "missing.wav")


# ---------------------------------------------------------------- tones

@pytest.mark.parametrize("country", sorted(TONES))
def test_every_country_has_ringback_and_busy(country: str) -> None:
    for kind in ToneKind:
        spec = tone_spec(country, kind)
        cycle = render(spec)
        assert abs(cycle.seconds * 1000 - sum(spec.cadence)) < 1
        on = cycle.linear[:2 * 8000 * spec.cadence[0] // 1000]
        assert min(abs(dominant_frequency(on) - f) for f in spec.frequencies) < 5
        assert rms(cycle.linear[len(on):]) == 0


def test_known_cadences() -> None:
    assert tone_spec("vn", ToneKind.RINGBACK) == ToneSpec(frequencies=(425.0,), cadence=(1000, 4000))
    assert tone_spec("US", ToneKind.RINGBACK).frequencies == (440.0, 480.0)
    with pytest.raises(KeyError, match="known: CN, TW, US, VN"):
        tone_spec("FR", ToneKind.BUSY)
    with pytest.raises(ValueError):
        ToneSpec(frequencies=(425.0,), cadence=(1000,))


# ---------------------------------------------------------------- player

def test_player_sends_prompt_then_silence_then_tone_then_ends() -> None:
    audio = decode_wav(wav_bytes(sine(440, 0.05), 8000, 2))   # 400 samples: 2.5 frames
    spec = tone_spec("US", ToneKind.BUSY)
    player = Player([Prompt(audio), Silence(0.04), Tone(spec, 1.2)], Codec.PCMA)
    frames = []
    while (payload := player.next_payload()) is not None:
        frames.append(payload)
    assert player.done
    assert all(len(f) == FRAME_SAMPLES for f in frames)
    assert len(frames) == 3 + 2 + 60
    prompt = audio.payload(Codec.PCMA)
    assert b"".join(frames[:3])[:400] == prompt
    assert frames[2][80:] == bytes([0xD5]) * 80          # the last prompt frame is padded with silence
    assert frames[3] == frames[4] == bytes([0xD5]) * 160
    # The tone loops: 0.5 s on, 0.5 s off, then on again at frame 5 + 50.
    assert rms(Codec.PCMA.decode(frames[5])) > 1000
    assert rms(Codec.PCMA.decode(frames[5 + 30])) <= 8
    assert frames[5 + 50] == frames[5]
    assert player.next_payload() is None


def test_an_endless_tone_stops_when_told() -> None:
    player = Player([Tone(tone_spec("CN", ToneKind.RINGBACK))], Codec.PCMU)
    for _ in range(1000):
        assert player.next_payload() is not None
    player.stop()
    assert player.next_payload() is None and player.done
