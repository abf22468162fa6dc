"""Recording files on disk: their names, and which to purge.

One stereo WAV per recorded call, named by the call's id (the CDR's
``call_uuid``, which the CDR row's ``recording`` column names too), flat in
the configured directory. Purging (:func:`to_purge`, pure) removes what is
older than the retention period, then the oldest files until the directory
fits its size budget; a file still being written (``.part``) is never
touched, nor anything that is not a recording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SUFFIX: Final = ".wav"
PARTIAL: Final = ".part"
_NAME: Final = re.compile(r"[0-9a-f]{32}\.wav")


class BadRecordingName(ValueError):
    """Not a recording's file name (a path, another file)."""


def file_name(call_uuid: str) -> str:
    """The file of the call with this id (32 hex digits, as the CDR keeps it)."""
    name = call_uuid.replace("-", "").lower() + SUFFIX
    if not _NAME.fullmatch(name):
        raise BadRecordingName(f"not a call id: {call_uuid!r}")
    return name


def is_recording(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class StoredFile:
    name: str
    size: int
    modified: float
    """Seconds since the epoch (the file's mtime: when its call ended)."""


def scan(directory: Path) -> list[StoredFile]:
    """The recordings in ``directory``, oldest first (none if it does not exist)."""
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        if is_recording(entry.name) and entry.is_file():
            stat = entry.stat()
            found.append(StoredFile(entry.name, stat.st_size, stat.st_mtime))
    return sorted(found, key=lambda f: (f.modified, f.name))


def to_purge(files: list[StoredFile], *, now: float, retention_days: int, max_bytes: int) -> list[StoredFile]:
    """What goes: past the retention (0: no age limit), then the oldest
    until the rest fits ``max_bytes`` (0: no size limit)."""
    ordered = sorted(files, key=lambda f: (f.modified, f.name))
    cutoff = now - retention_days * 86400 if retention_days > 0 else None
    purged = [f for f in ordered if cutoff is not None and f.modified < cutoff]
    kept = [f for f in ordered if f not in purged]
    total = sum(f.size for f in kept)
    while max_bytes > 0 and kept and total > max_bytes:
        oldest = kept.pop(0)
        purged.append(oldest)
        total -= oldest.size
    return purged


def purge(directory: Path, *, now: float, retention_days: int, max_bytes: int) -> list[StoredFile]:
    """Remove what :func:`to_purge` says (blocking: run it in a thread)."""
    gone = to_purge(scan(directory), now=now, retention_days=retention_days, max_bytes=max_bytes)
    for stored in gone:
        (directory / stored.name).unlink(missing_ok=True)
    return gone
