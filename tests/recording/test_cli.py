"""``pbx recordings list|export|purge`` on a real recording directory and
a CDR database (SQLite and PostgreSQL, as the store tests)."""

from __future__ import annotations

import os
import uuid
import wave
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from pbx.cdr.writer import CDR, CdrWriter
from pbx.cli.recordings import recordings
from pbx.recording.files import file_name
from pbx.store.writer import BackgroundWriter
from tests.cdr.conftest import at, make_answer, make_end, make_start, run_now
from tests.store.conftest import db_url, engine, migrated

__all__ = ["db_url", "engine", "migrated"]


def wav(path: Path, seconds: float, age_days: float = 0.0) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(int(seconds * 8000) * 4))
    stamp = path.stat().st_mtime - age_days * 86400
    os.utime(path, (stamp, stamp))


@pytest.fixture
def recorded(migrated: Engine, tmp_path: Path) -> tuple[Path, uuid.UUID, uuid.UUID]:
    """Two recorded calls in the CDR (one with its file), and an old file."""
    background = BackgroundWriter(migrated)
    cdrs = CdrWriter(background, "pbx-a", run_now)
    folder = tmp_path / "recordings"
    folder.mkdir()
    ids = []
    for caller, dialled in (("1001", "1002"), ("1003", "0912345678")):
        call = uuid.uuid4()
        ids.append(call)
        cdrs.started(make_start(call, caller_number=caller, dialed_number=dialled))
        cdrs.answered(make_answer(call))
        cdrs.ended(make_end(call, recording=file_name(call.hex)))
    assert background.close(timeout=30)
    wav(folder / file_name(ids[0].hex), 3.0)
    wav(folder / file_name(uuid.uuid4().hex), 1.0, age_days=40)
    return folder, ids[0], ids[1]


def test_the_cdr_row_links_the_recording(migrated: Engine, recorded: tuple[Path, uuid.UUID, uuid.UUID]) -> None:
    with migrated.connect() as conn:
        stored = {row.call_uuid: row.recording for row in conn.execute(select(CDR.c.call_uuid, CDR.c.recording))}
    assert {k.replace("-", ""): v for k, v in stored.items()} == {
        call.hex: file_name(call.hex) for call in recorded[1:]}


def test_a_recording_from_the_answer_is_linked_before_the_call_ends(migrated: Engine) -> None:
    background = BackgroundWriter(migrated)
    cdrs = CdrWriter(background, "pbx-a", run_now)
    call = uuid.uuid4()
    cdrs.started(make_start(call))
    cdrs.answered(make_answer(call, recording=file_name(call.hex)))
    assert background.close(timeout=30)       # the process dies here: the row still names the file
    with migrated.connect() as conn:
        assert conn.execute(select(CDR.c.recording)).scalar_one() == file_name(call.hex)


def test_list_shows_each_file_with_its_call(db_url: str, recorded: tuple[Path, uuid.UUID, uuid.UUID]) -> None:
    folder, first, _ = recorded
    result = CliRunner().invoke(recordings, ["list", "--dir", str(folder), "--db", db_url,
                                             "--dialplan", str(folder / "none.yaml")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["file", "ended", "(UTC)", "seconds", "KB", "caller", "dialled"]
    mine = next(line for line in lines if file_name(first.hex) in line)
    assert mine.split()[-4:] == ["3.0", "93", "1001", "1002"]
    assert lines[-1].startswith("2 recordings")


def test_export_copies_a_recording_and_refuses_what_is_not_one(
        recorded: tuple[Path, uuid.UUID, uuid.UUID], tmp_path: Path) -> None:
    folder, first, second = recorded
    out = tmp_path / "out"
    out.mkdir()
    common = ["--dir", str(folder), "--dialplan", str(folder / "none.yaml")]
    ok = CliRunner().invoke(recordings, ["export", str(first), str(out), *common])
    assert ok.exit_code == 0, ok.output
    assert (out / file_name(first.hex)).read_bytes() == (folder / file_name(first.hex)).read_bytes()
    missing = CliRunner().invoke(recordings, ["export", second.hex, str(out), *common])
    assert missing.exit_code == 1 and "no recording" in missing.output
    bad = CliRunner().invoke(recordings, ["export", "../../etc/passwd", str(out), *common])
    assert bad.exit_code == 2 and "neither a call id" in bad.output


def test_purge_keeps_the_retention_and_says_what_went(recorded: tuple[Path, uuid.UUID, uuid.UUID]) -> None:
    folder, first, _ = recorded
    common = ["--dir", str(folder), "--dialplan", str(folder / "none.yaml"), "--retention-days", "30"]
    dry = CliRunner().invoke(recordings, ["purge", *common, "--dry-run"])
    assert dry.exit_code == 0 and "1 recordings would go" in dry.output
    assert len(list(folder.iterdir())) == 2
    done = CliRunner().invoke(recordings, ["purge", *common])
    assert done.exit_code == 0 and "1 recordings purged" in done.output
    assert [p.name for p in folder.iterdir()] == [file_name(first.hex)]
