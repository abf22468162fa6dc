"""The writer thread: stereo WAV files written off the event loop, renamed
into place when the call ends, purged to the budget."""

from __future__ import annotations

import os
import threading
import wave
from pathlib import Path

import numpy as np

from pbx.recording.track import stereo
from pbx.recording.writer import RecordingWriter

NAME = "0123456789abcdef0123456789abcdef.wav"


def finished(writer: RecordingWriter, name: str) -> str | None:
    done = threading.Event()
    result: list[str | None] = []

    def on_done(saved: str | None) -> None:
        result.append(saved)
        done.set()

    writer.close(name, on_done)
    assert done.wait(10.0)
    return result[0]


def test_a_recording_is_a_stereo_wav_named_by_the_call(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "rec", retention_days=0, max_bytes=0)
    writer.open(NAME)
    left, right = np.full(160, 1000, "=i2").tobytes(), np.full(160, -1000, "=i2").tobytes()
    for _ in range(50):
        writer.write(NAME, stereo(left, right))
    assert finished(writer, NAME) == NAME
    writer.stop()
    with wave.open(str(tmp_path / "rec" / NAME), "rb") as source:
        assert (source.getnchannels(), source.getsampwidth(), source.getframerate()) == (2, 2, 8000)
        assert source.getnframes() == 50 * 160
        samples = np.frombuffer(source.readframes(source.getnframes()), "<i2")
    assert set(samples[0::2]) == {1000} and set(samples[1::2]) == {-1000}
    assert not list((tmp_path / "rec").glob("*.part"))


def test_a_call_that_recorded_nothing_leaves_no_file(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path, retention_days=0, max_bytes=0)
    writer.open(NAME)
    assert finished(writer, NAME) is None
    writer.stop()
    assert list(tmp_path.iterdir()) == []


def test_the_directory_is_kept_to_its_budget(tmp_path: Path) -> None:
    old = tmp_path / ("a" * 32 + ".wav")
    old.write_bytes(b"x" * 5000)
    os.utime(old, (old.stat().st_mtime - 3600, old.stat().st_mtime - 3600))
    writer = RecordingWriter(tmp_path, retention_days=0, max_bytes=4000)
    writer.open(NAME)
    writer.write(NAME, bytes(640))
    assert finished(writer, NAME) == NAME
    writer.stop()
    assert [p.name for p in tmp_path.iterdir()] == [NAME]   # the older file made room


def test_a_file_a_crash_left_half_written_is_mended_at_the_next_start(tmp_path: Path) -> None:
    partial = tmp_path / (NAME + ".part")
    with wave.open(str(partial), "wb") as out:      # what the writer had begun: header, then raw frames
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
    with partial.open("ab") as raw:
        raw.write(stereo(np.full(160, 7, "=i2").tobytes(), np.full(160, -7, "=i2").tobytes()) * 10)
    writer = RecordingWriter(tmp_path, retention_days=0, max_bytes=0)
    writer.stop()
    with wave.open(str(tmp_path / NAME), "rb") as source:
        assert source.getnframes() == 1600
        samples = np.frombuffer(source.readframes(1600), "<i2")
    assert set(samples[0::2]) == {7} and set(samples[1::2]) == {-7}


def test_recordings_are_private(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "rec", retention_days=0, max_bytes=0)
    writer.open(NAME)
    writer.write(NAME, bytes(640))
    assert finished(writer, NAME) == NAME
    writer.stop()
    assert (tmp_path / "rec" / NAME).stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "rec").stat().st_mode & 0o007 == 0
