"""``pbx hours close|open|auto|show`` on SQLite and PostgreSQL: what an
administrator sets is stored (so a restarted server finds it), ``--until``
in its forms, lifting one schedule's override or all, and bad input
refused with the option named and nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from pbx.cli.hours import parse_until
from pbx.cli.main import main
from pbx.store.hours import HoursStore

PLAN = """\
domain: pbx.example.com
timezone: Asia/Ho_Chi_Minh
departments:
  office: {name: Office}
extensions:
  1001: {name: An, department: office, password: an-secret-1001}
schedules:
  business_hours: {open: [{days: mon-fri, from: "08:00", to: "17:30"}]}
  taipei_hours: {timezone: Asia/Taipei, open: [{days: mon-fri, from: "09:00", to: "18:00"}]}
"""
SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture
def hours(tmp_path: Path, db_url: str, migrated: Engine) -> tuple[CliRunner, list[str]]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    return CliRunner(), ["--db", db_url, "--dialplan", str(plan), "--pid-file", str(tmp_path / "no-server.pid")]


def run(hours: tuple[CliRunner, list[str]], *args: str) -> Result:
    runner, where = hours
    show = args[0] == "show"  # show takes only --db
    return runner.invoke(main, ["hours", *args, *(where[:2] if show else where)])


def test_close_open_show_and_auto(hours: tuple[CliRunner, list[str]], migrated: Engine) -> None:
    done = run(hours, "close", "--schedule", "business_hours", "--until", "2099-02-08 10:00")
    assert done.exit_code == 0, done.output
    assert "business_hours: closed until 2099-02-08 10:00 +07" in done.output
    assert "no server told at once" in done.output and "running servers follow within 5 s" in done.output
    stored = HoursStore(migrated).active(datetime.now(UTC))  # what a (re)started server reads
    assert stored["business_hours"].mode == "closed"
    assert stored["business_hours"].until == datetime(2099, 2, 8, 10, 0, tzinfo=SAIGON)

    done = run(hours, "open")  # every schedule, until lifted
    assert done.exit_code == 0 and "every schedule: open until `pbx hours auto`" in done.output, done.output
    shown = run(hours, "show")
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines() == ["every schedule: open until pbx hours auto",
                                         "business_hours: closed until 2099-02-08 03:00 UTC"]

    lifted = run(hours, "auto", "--schedule", "business_hours")
    assert lifted.exit_code == 0 and "lifted 1 override:" in lifted.output, lifted.output
    assert set(HoursStore(migrated).active(datetime.now(UTC))) == {"*"}
    lifted = run(hours, "auto")
    assert lifted.exit_code == 0 and "lifted 1 override:" in lifted.output, lifted.output
    assert run(hours, "show").output.strip() == "no overrides: the schedules decide"


@pytest.mark.parametrize(("args", "message"), [
    (("close", "--schedule", "busines_hours"), "no schedule 'busines_hours'"),
    (("open", "--until", "tomorrow"), "expected HH:MM or \"YYYY-MM-DD HH:MM\""),
    (("close", "--until", "2001-01-01 10:00"), "is not in the future"),
    (("auto", "--schedule", "nope"), "no schedule 'nope'"),
])
def test_bad_input_names_the_option_and_stores_nothing(hours: tuple[CliRunner, list[str]], migrated: Engine,
                                                      args: tuple[str, ...], message: str) -> None:
    HoursStore(migrated).set("taipei_hours", "open", None, datetime.now(UTC))
    refused = run(hours, *args)
    assert refused.exit_code == 2, refused.output
    assert message in refused.output
    assert {k: v.mode for k, v in HoursStore(migrated).active(datetime.now(UTC)).items()} == {"taipei_hours": "open"}


def test_until_forms() -> None:
    now = datetime(2027, 2, 8, 9, 30, tzinfo=SAIGON)
    assert parse_until("17:00", now) == datetime(2027, 2, 8, 17, 0, tzinfo=SAIGON)        # later today
    assert parse_until("08:00", now) == datetime(2027, 2, 9, 8, 0, tzinfo=SAIGON)         # gone: tomorrow
    assert parse_until("2027-02-10 08:00", now) == datetime(2027, 2, 10, 8, 0, tzinfo=SAIGON)
    given = parse_until("2027-02-10T08:00+08:00", now)
    assert given.utcoffset() == timedelta(hours=8) and given == datetime(2027, 2, 10, 0, 0, tzinfo=UTC)
    with pytest.raises(click.BadParameter):
        parse_until("25:99", now)
