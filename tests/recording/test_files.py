"""Recording file names and purging: retention first, then the size budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.recording.files import BadRecordingName, StoredFile, file_name, purge, scan, to_purge

DAY = 86400.0
UUID = "0123456789abcdef0123456789abcdef"


def test_a_file_is_named_by_its_call_id() -> None:
    assert file_name(UUID) == f"{UUID}.wav"
    assert file_name("01234567-89AB-CDEF-0123-456789ABCDEF") == f"{UUID}.wav"


@pytest.mark.parametrize("bad", ["", "../../etc/passwd", f"{UUID}/x", "xyz", UUID + "00"])
def test_anything_else_is_refused(bad: str) -> None:
    with pytest.raises(BadRecordingName):
        file_name(bad)


def stored(name: str, size: int, age_days: float, now: float = 100 * DAY) -> StoredFile:
    return StoredFile(f"{name * 32}.wav"[-36:], size, now - age_days * DAY)


@pytest.mark.parametrize(("files", "days", "budget", "gone"), [
    ([stored("a", 10, 1), stored("b", 10, 5)], 3, 0, ["b"]),                  # past retention
    ([stored("a", 10, 1), stored("b", 10, 2), stored("c", 10, 3)], 0, 25, ["c"]),  # over budget: oldest
    ([stored("a", 10, 1), stored("b", 10, 2), stored("c", 10, 40)], 30, 15, ["c", "b"]),
    ([stored("a", 10, 1)], 0, 0, []),                                          # no limits
    ([], 30, 1, []),
])
def test_what_is_purged(files: list[StoredFile], days: int, budget: int, gone: list[str]) -> None:
    assert [f.name[0] for f in to_purge(files, now=100 * DAY, retention_days=days, max_bytes=budget)] == gone


def test_purge_removes_only_recordings(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name * 32}.wav").write_bytes(b"x" * 100)
    (tmp_path / f"{'c' * 32}.wav.part").write_bytes(b"x" * 1000)    # being written
    (tmp_path / "notes.txt").write_bytes(b"x" * 1000)
    assert len(scan(tmp_path)) == 2
    gone = purge(tmp_path, now=1e12, retention_days=1, max_bytes=0)
    assert len(gone) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{'c' * 32}.wav.part", "notes.txt"]
