"""Admins' audio files → 8 kHz mono 16-bit linear, once, at load.

WAV files as editors and recorders write them: PCM of 8, 16, 24 or 32 bits,
IEEE float, A-law or μ-law, any rate, any number of channels, plain or
WAVE_FORMAT_EXTENSIBLE headers. The RIFF chunks are read here (the stdlib
``wave`` module of 3.11 knows neither float nor extensible headers); the
sample work is C code: ``audioop`` for width and rate, numpy for channel
mixing and the low-pass filter that keeps a 44.1 kHz recording from
aliasing when it goes down to 8 kHz.

The encoded payload for each codec is computed on first use and kept with
the audio (:class:`Audio`), and :class:`AudioCache` keeps each file loaded
once while it does not change on disk. Loading reads a file: the asyncio
edge runs it in a thread (STYLE §5).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from pbx.media.codecs import SAMPLE_RATE, SAMPLE_WIDTH, Codec, audioop

MAX_FILE_BYTES: Final = 64 * 1024 * 1024
"""Larger files are refused: an hour of 8 kHz audio is 57 MB; anything
bigger is a mistake, not a prompt."""

_PCM, _FLOAT, _ALAW, _MULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE


class AudioFileError(ValueError):
    """A file we cannot use as audio; the message names the file and why."""


@dataclass(slots=True, eq=False)
class Audio:
    """8 kHz mono 16-bit linear audio, with its encoded forms cached."""

    linear: bytes
    name: str = ""
    _encoded: dict[Codec, bytes] = field(default_factory=dict, repr=False)

    @property
    def seconds(self) -> float:
        return len(self.linear) / (SAMPLE_RATE * SAMPLE_WIDTH)

    def payload(self, codec: Codec) -> bytes:
        """The whole audio encoded with ``codec`` (one byte per sample)."""
        encoded = self._encoded.get(codec)
        if encoded is None:
            encoded = self._encoded[codec] = codec.encode(self.linear)
        return encoded


def decode_wav(data: bytes, name: str = "<bytes>") -> Audio:
    """Convert a WAV file's bytes to :class:`Audio`; :class:`AudioFileError`
    if it is not a WAV file we can read."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioFileError(f"{name}: not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    samples: bytes | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = data[offset + 8:offset + 8 + size]
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(body, name)
        elif chunk_id == b"data":
            samples = body   # a recorder killed mid-file leaves a short data chunk: take what is there
        offset += 8 + size + (size & 1)   # chunks are padded to even sizes
    if fmt is None:
        raise AudioFileError(f"{name}: no fmt chunk")
    if samples is None:
        raise AudioFileError(f"{name}: no data chunk")
    encoding, channels, rate, bits = fmt
    return Audio(linear=_to_linear8k(samples, encoding, channels, rate, bits, name), name=name)


def load_wav(path: Path) -> Audio:
    """Read and convert one WAV file."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise AudioFileError(f"{path}: {size} bytes, more than {MAX_FILE_BYTES}")
        data = path.read_bytes()
    except OSError as err:
        raise AudioFileError(f"{path}: {err.strerror or err}") from err
    return decode_wav(data, str(path))


def _parse_fmt(body: bytes, name: str) -> tuple[int, int, int, int]:
    if len(body) < 16:
        raise AudioFileError(f"{name}: fmt chunk too short")
    encoding, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if encoding == _EXTENSIBLE:
        if len(body) < 26:
            raise AudioFileError(f"{name}: extensible fmt chunk too short")
        encoding = struct.unpack_from("<H", body, 24)[0]   # first two bytes of the sub-format GUID
    if encoding in (_ALAW, _MULAW):
        bits = 8
    if channels < 1 or rate < 1000 or rate > 384_000:
        raise AudioFileError(f"{name}: {channels} channels at {rate} Hz is not audio we can use")
    if encoding == _PCM and bits not in (8, 16, 24, 32):
        raise AudioFileError(f"{name}: {bits}-bit PCM is not supported (8, 16, 24 or 32)")
    if encoding == _FLOAT and bits not in (32, 64):
        raise AudioFileError(f"{name}: {bits}-bit float is not supported (32 or 64)")
    if encoding not in (_PCM, _FLOAT, _ALAW, _MULAW):
        raise AudioFileError(f"{name}: WAV encoding {encoding:#x} is not supported "
                             "(PCM, float, A-law or μ-law; convert it with sox)")
    if block_align and block_align != channels * bits // 8:
        raise AudioFileError(f"{name}: block align {block_align} does not match {channels}×{bits} bits")
    return encoding, channels, rate, bits


def _to_linear8k(samples: bytes, encoding: int, channels: int, rate: int, bits: int, name: str) -> bytes:
    width = bits // 8
    linear: bytes
    samples = samples[:len(samples) - len(samples) % (width * channels)]
    if encoding == _FLOAT:
        floats = np.frombuffer(samples, dtype="<f4" if width == 4 else "<f8")
        linear = (np.clip(np.nan_to_num(floats), -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    elif encoding == _ALAW:
        linear = audioop.alaw2lin(samples, 2)
    elif encoding == _MULAW:
        linear = audioop.ulaw2lin(samples, 2)
    else:
        if sys.byteorder != "little":  # pragma: no cover - WAV is little-endian, audioop native
            samples = audioop.byteswap(samples, width)
        if width == 1:
            samples = audioop.bias(samples, 1, -128)   # 8-bit WAV is unsigned
        linear = audioop.lin2lin(samples, width, 2) if width != 2 else samples
    if channels > 1:
        frames = np.frombuffer(linear, dtype=np.int16).reshape(-1, channels)
        linear = frames.mean(axis=1).astype(np.int16).tobytes()
    if rate > SAMPLE_RATE:
        linear = _low_pass(linear, rate)
    if rate != SAMPLE_RATE:
        linear, _ = audioop.ratecv(linear, 2, 1, rate, SAMPLE_RATE, None)
    if not linear:
        raise AudioFileError(f"{name}: no audio in the file")
    return linear


def _low_pass(linear: bytes, rate: int) -> bytes:
    """Windowed-sinc FIR below 3.6 kHz, so what lies above the new Nyquist
    frequency (4 kHz) is removed before ``ratecv`` drops samples."""
    taps = 101
    cutoff = 3600 / rate
    n = np.arange(taps) - (taps - 1) / 2
    kernel = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
    kernel /= kernel.sum()
    signal = np.frombuffer(linear, dtype=np.int16).astype(np.float64)
    filtered = np.convolve(signal, kernel, mode="same")
    clipped: bytes = np.clip(np.rint(filtered), -32768, 32767).astype(np.int16).tobytes()
    return clipped


class AudioCache:
    """Each file loaded once while its size and modification time stay the
    same (an admin who replaces a prompt is heard on the next call)."""

    def __init__(self) -> None:
        self._files: dict[Path, tuple[tuple[int, int], Audio]] = {}

    def load(self, path: Path) -> Audio:
        try:
            stat = path.stat()
        except OSError as err:
            raise AudioFileError(f"{path}: {err.strerror or err}") from err
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._files.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        audio = load_wav(path)
        self._files[path] = (key, audio)
        return audio
