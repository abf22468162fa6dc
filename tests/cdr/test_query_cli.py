"""Listing CDRs: list_calls, CSV, the text table, and ``pbx cdr list`` both
in-process (click's CliRunner) and as a real command."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from pbx.cli.cdr import TimeFormatError, cdr, parse_time
from pbx.cdr.query import COLUMNS, display_width, format_table, list_calls, write_csv
from pbx.cdr.records import CallRouted, Disposition, HangupSide
from pbx.cdr.writer import CdrWriter
from pbx.store.db import make_engine, migrate
from pbx.store.writer import BackgroundWriter

from .conftest import NOW, at, make_answer, make_end, make_start, run_now

ROOT = Path(__file__).resolve().parents[2]
HANOI = ZoneInfo("Asia/Ho_Chi_Minh")

# Whose calls the fixture writes: (caller, name, dialled, answered by, start offset s).
CALLS = [
    ("1001", "Nguyễn Thị Minh Khai", "1002", "1002", 0),
    ("1002", "王小明", "1003", None, 3600),
    ("1003", "=HYPERLINK(\"http://x\")", "0912345678", "0912345678", 7200),
    ("+84912345678", None, "1001", "1001", 86400),
]


@pytest.fixture
def calls(migrated: Engine) -> Iterator[list[uuid.UUID]]:
    """The CALLS, written through a CdrWriter, plus one call still ringing."""
    background = BackgroundWriter(migrated)
    cdrs = CdrWriter(background, "pbx-a", run_now)
    ids = []
    for caller, name, dialled, answerer, offset in CALLS:
        call = uuid.uuid4()
        ids.append(call)
        cdrs.started(
            make_start(call, caller_number=caller, caller_name=name, dialed_number=dialled,
                       started_at=at(offset))
        )
        cdrs.routed(CallRouted(call_uuid=call, call_class="internal"))
        if answerer is None:
            cdrs.ended(make_end(call, ended_at=at(offset + 20), disposition=Disposition.NO_ANSWER,
                                hangup_side=HangupSide.PBX, hangup_status=480,
                                destination=dialled))
        else:
            cdrs.answered(make_answer(call, answered_at=at(offset + 5), destination=answerer))
            cdrs.ended(make_end(call, ended_at=at(offset + 65)))
    ringing = uuid.uuid4()
    ids.append(ringing)
    cdrs.started(make_start(ringing, caller_number="1004", caller_name="Đặng Văn Ngữ",
                            dialed_number="1005", started_at=at(90000)))
    assert background.close(timeout=30)
    yield ids


def test_list_calls_filters(migrated: Engine, calls: list[uuid.UUID]) -> None:
    every = list_calls(migrated)
    assert [row["call_uuid"] for row in every] == [str(c) for c in calls]
    assert list(every[0]) == list(COLUMNS)
    assert every[0]["disposition"] == "ANSWERED" and type(every[0]["disposition"]) is str
    assert every[0]["started_at"] == NOW
    assert every[-1]["ended_at"] is None and every[-1]["disposition"] is None

    # [since, until): the until instant itself is out.
    window = list_calls(migrated, since=at(3600), until=at(86400))
    assert [row["caller_number"] for row in window] == ["1002", "1003"]
    # caller, dialled or destination
    assert [r["call_uuid"] for r in list_calls(migrated, extension="1001")] == [
        str(calls[0]),
        str(calls[3]),
    ]
    assert [r["call_uuid"] for r in list_calls(migrated, extension="1003")] == [
        str(calls[1]),
        str(calls[2]),
    ]
    assert list_calls(migrated, extension="9999") == []
    # the newest two, oldest first
    assert [r["call_uuid"] for r in list_calls(migrated, limit=2)] == [str(c) for c in calls[3:]]
    with pytest.raises(ValueError):
        list_calls(migrated, since=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError):
        list_calls(migrated, limit=0)


def test_csv_round_trips_with_non_ascii_names(migrated: Engine, calls: list[uuid.UUID]) -> None:
    out = io.StringIO(newline="")
    write_csv(list_calls(migrated), out, HANOI)
    text = out.getvalue()
    assert text.startswith(",".join(COLUMNS) + "\r\n")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [row["call_uuid"] for row in rows] == [str(c) for c in calls]
    assert [row["caller_name"] for row in rows] == [
        "Nguyễn Thị Minh Khai",
        "王小明",
        "'=HYPERLINK(\"http://x\")",  # defused: a spreadsheet must not run it
        "",
        "Đặng Văn Ngữ",
    ]
    assert rows[3]["caller_number"] == "+84912345678"  # a number is left alone
    assert rows[0]["started_at"] == "2025-03-30T07:30:00+07:00"
    assert datetime.fromisoformat(rows[0]["ended_at"]) == at(65)
    assert (rows[0]["duration"], rows[0]["billsec"], rows[0]["disposition"]) == (
        "65",
        "60",
        "ANSWERED",
    )
    assert (rows[1]["hangup_status"], rows[1]["answered_at"]) == ("480", "")
    assert (rows[4]["ended_at"], rows[4]["disposition"]) == ("", "")


def test_text_table_is_aligned_even_with_wide_characters(
    migrated: Engine, calls: list[uuid.UUID]
) -> None:
    lines = format_table(list_calls(migrated), UTC)
    assert len(lines) == 1 + len(calls)
    assert lines[0].startswith("started (UTC)")
    assert lines[1].startswith("2025-03-30 00:30:00  1001")
    words = ["disposition", "ANSWERED", "NO_ANSWER", "ANSWERED", "ANSWERED", "IN PROGRESS"]
    columns = [display_width(line[: line.index(word)]) for line, word in zip(lines, words)]
    assert len(set(columns)) == 1, lines
    assert "王小明" in lines[2] and "Nguyễn Thị Minh Khai" in lines[1]


def test_display_width() -> None:
    assert display_width("abc") == 3
    assert display_width("王小明") == 6
    assert display_width("Nguye\u0302\u0303n") == 6  # decomposed Vietnamese marks take no room


@pytest.mark.parametrize(
    ("text", "zone", "end_of_day", "expected"),
    [
        ("2025-03-30", UTC, False, datetime(2025, 3, 30, tzinfo=UTC)),
        ("2025-03-30", UTC, True, datetime(2025, 3, 31, tzinfo=UTC)),
        ("2025-03-30", HANOI, False, datetime(2025, 3, 29, 17, tzinfo=UTC)),
        ("2025-03-30 08:15", HANOI, False, datetime(2025, 3, 30, 1, 15, tzinfo=UTC)),
        ("2025-03-30 08:15:30", UTC, False, datetime(2025, 3, 30, 8, 15, 30, tzinfo=UTC)),
        ("2025-03-30T08:15:30Z", HANOI, False, datetime(2025, 3, 30, 8, 15, 30, tzinfo=UTC)),
        ("2025-03-30 08:15+02:00", HANOI, False, datetime(2025, 3, 30, 6, 15, tzinfo=UTC)),
        # Berlin moves to summer time that night: the next midnight is +02:00.
        ("2025-03-30", ZoneInfo("Europe/Berlin"), True, datetime(2025, 3, 30, 22, tzinfo=UTC)),
        ("1h", UTC, False, NOW - timedelta(hours=1)),
        ("90m", HANOI, False, NOW - timedelta(minutes=90)),
        ("7d", UTC, True, NOW - timedelta(days=7)),
        ("2w", UTC, False, NOW - timedelta(weeks=2)),
        (" 30s ", UTC, False, NOW - timedelta(seconds=30)),
    ],
)
def test_parse_time(text: str, zone: tzinfo, end_of_day: bool, expected: datetime) -> None:
    assert parse_time(text, NOW, zone, end_of_day=end_of_day) == expected


@pytest.mark.parametrize("text", ["yesterday", "2025-13-01", "2025-02-30", "1y", "", "-1h",
                                  "99999999999d"])
def test_parse_time_refuses_nonsense(text: str) -> None:
    with pytest.raises(TimeFormatError):
        parse_time(text, NOW, UTC)


def test_naive_time_without_zone_is_local() -> None:
    local = parse_time("2025-03-30 08:15", NOW, None)
    assert local.utcoffset() is not None
    assert local.replace(tzinfo=None) == datetime(2025, 3, 30, 8, 15)


# -- the command ---------------------------------------------------------------


def test_cli_table_and_filters(db_url: str, calls: list[uuid.UUID]) -> None:
    runner = CliRunner()
    result = runner.invoke(cdr, ["list", "--db", db_url, "--utc"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("started (UTC)") and len(lines) == 1 + len(calls)
    assert "Nguyễn Thị Minh Khai" in lines[1] and "IN PROGRESS" in lines[-1]

    result = runner.invoke(
        cdr, ["list", "--db", db_url, "--utc", "--extension", "1001", "--since", "2025-03-30",
              "--until", "2025-03-30"]
    )
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2  # header, the call of the 30th (not the 31st's)

    result = runner.invoke(cdr, ["list", "--db", db_url, "--extension", "4242"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "no calls\n")


def test_cli_csv_opens_in_a_spreadsheet(db_url: str, calls: list[uuid.UUID]) -> None:
    result = CliRunner().invoke(cdr, ["list", "--db", db_url, "--csv", "--limit", "3"])
    assert result.exit_code == 0, result.output
    data = result.stdout_bytes
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads the names right
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert [row["call_uuid"] for row in rows] == [str(c) for c in calls[2:]]
    assert rows[2]["caller_name"] == "Đặng Văn Ngữ"

    plain = CliRunner().invoke(cdr, ["list", "--db", db_url, "--csv", "--no-bom", "--utc"])
    assert plain.exit_code == 0
    assert plain.stdout_bytes.startswith(b"call_uuid,node,")
    assert "2025-03-30T00:30:00+00:00" in plain.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "--since"),
        (["--until", "2025-02-30"], "--until"),
        (["--since", "2025-03-02", "--until", "2025-03-01"], "later than --since"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_cli_refuses_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cdr, ["list", "--db", f"sqlite:///{tmp_path}/x.db", *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_cli_does_not_create_a_missing_database(tmp_path: Path) -> None:
    path = tmp_path / "var" / "pbx.sqlite3"
    result = CliRunner().invoke(cdr, ["list", "--db", f"sqlite:///{path}"])
    assert result.exit_code == 1
    assert f"no database file at {path}" in result.stderr
    assert not path.exists() and not path.parent.exists()


def test_cli_explains_a_database_without_cdrs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = make_engine(url)
    migrate(engine, "0001")  # before the CDR tables
    engine.dispose()
    result = CliRunner().invoke(cdr, ["list", "--db", url])
    assert result.exit_code == 1
    assert "no cdr table" in result.stderr


def test_cli_reports_an_unreachable_server_without_a_traceback() -> None:
    url = "postgresql+psycopg://pbx:hunter2@127.0.0.1:1/pbx?connect_timeout=2"
    result = CliRunner().invoke(cdr, ["list", "--db", url])
    assert result.exit_code == 1
    assert "cannot read the database" in result.stderr
    assert "hunter2" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# The real command line, as installed: `pbx cdr` registered on `pbx`.
PBX_CDR = [sys.executable, "-m", "pbx", "cdr"]


def test_real_command_prints_local_times(db_url: str, calls: list[uuid.UUID]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TZ": "Asia/Ho_Chi_Minh"}
    table = subprocess.run(
        [*PBX_CDR, "list", "--db", db_url],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("started (local)")
    assert lines[1].startswith("2025-03-30 07:30:00  1001")  # 00:30 UTC in Hanoi

    # A bare local date: the 30th in Hanoi began at 17:00 UTC on the 29th.
    listed = subprocess.run(
        [*PBX_CDR, "list", "--db", db_url, "--csv", "--until", "2025-03-30"],
        env=env, capture_output=True, timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    rows = list(csv.DictReader(io.StringIO(listed.stdout.decode("utf-8-sig"), newline="")))
    assert [row["caller_name"] for row in rows] == ["Nguyễn Thị Minh Khai", "王小明",
                                                    "'=HYPERLINK(\"http://x\")"]


def test_real_command_without_database(tmp_path: Path) -> None:
    result = subprocess.run(
        [*PBX_CDR, "list"],  # the default: var/pbx.sqlite3 under the cwd
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "no database file at var/pbx.sqlite3" in result.stderr
    assert not (tmp_path / "var").exists()
