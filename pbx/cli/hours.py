"""``pbx hours close|open|auto|show``: an administrator's override of the
opening hours auto attendants follow.

The override lives in the database (it survives restarts and holds on
every node sharing it). The server named by ``--pid-file`` is told at once
(SIGHUP: the next call follows the override); running servers read it
every few seconds anyway, and on SIGHUP (``pbx reload``).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from pbx.cli.cdr import open_database
from pbx.cli.defaults import DEFAULT_DB, DEFAULT_PID_FILE
from pbx.routing.ivr import ALL_SCHEDULES, HoursMode

_DB_HELP = "SQLAlchemy database URL (as for pbx serve)."
_PLAN_HELP = "the dialplan whose schedules and time zone are meant"


def _plan_zone(dialplan: Path, schedule: str) -> datetime:
    """Now, in the dialplan's time zone; checks that ``schedule`` exists."""
    from pbx.routing.loader import read_dialplan

    result = read_dialplan(dialplan)
    if result.dialplan is None:
        for problem in result.errors:
            click.echo(str(problem), err=True)
        sys.exit(1)
    plan = result.dialplan
    if schedule != ALL_SCHEDULES and schedule not in plan.schedules:
        raise click.BadParameter(f"no schedule {schedule!r} in {dialplan} (schedules: "
                                 f"{', '.join(sorted(plan.schedules)) or 'none'})", param_hint="--schedule")
    return datetime.now(UTC).astimezone(plan.timezone)


def parse_until(text: str, now: datetime) -> datetime:
    """``HH:MM`` (the next such time), ``YYYY-MM-DD HH:MM`` (local to
    ``now``'s zone) or ISO 8601 with an offset."""
    text = text.strip()
    try:
        clock = datetime.strptime(text, "%H:%M")
    except ValueError:
        pass
    else:
        moment = now.replace(hour=clock.hour, minute=clock.minute, second=0, microsecond=0)
        return moment if moment > now else moment + timedelta(days=1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected HH:MM or \"YYYY-MM-DD HH:MM\"", param_hint="--until") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=now.tzinfo)


F = TypeVar("F", bound=Callable[..., None])


def _options(command: F) -> F:
    for option in reversed([
        click.option("--schedule", default=ALL_SCHEDULES, show_default=True,
                     help="the schedule to override; * is every schedule"),
        click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, help=_DB_HELP),
        click.option("--dialplan", type=click.Path(path_type=Path), default=Path("dialplans/example.yaml"),
                     show_default=True, help=_PLAN_HELP),
        click.option("--pid-file", type=click.Path(path_type=Path), default=DEFAULT_PID_FILE, show_default=True,
                     help="the pid file of `pbx serve`, told at once"),
    ]):
        command = option(command)
    return command


@click.group()
def hours() -> None:
    """Force opening hours open or closed (auto attendants follow them)."""


def _tell_server(pid_file: Path) -> None:
    """SIGHUP to the local server: it reads the overrides before the next call."""
    from pbx.server.control import ControlError, signal_reload

    try:
        pid = signal_reload(pid_file)
    except ControlError as err:
        click.echo(f"no server told at once ({err}): running servers follow within 5 s")
        return
    click.echo(f"told pbx serve (pid {pid}): its next call follows this (other nodes within 5 s)")


def _set(mode: HoursMode, until: str | None, schedule: str, db_url: str, dialplan: Path, pid_file: Path) -> None:
    from pbx.store.hours import HoursStore

    now = _plan_zone(dialplan, schedule)
    end = parse_until(until, now) if until is not None else None
    if end is not None and end <= now:
        raise click.BadParameter(f"{until!r} is not in the future", param_hint="--until")
    engine = open_database(db_url, "hours_overrides")
    try:
        HoursStore(engine).set(schedule, mode, end, now)
    finally:
        engine.dispose()
    what = "every schedule" if schedule == ALL_SCHEDULES else schedule
    click.echo(f"{what}: {mode}" + (f" until {end:%Y-%m-%d %H:%M %Z}" if end else " until `pbx hours auto`"))
    _tell_server(pid_file)


@hours.command("close")
@click.option("--until", help='when the override ends: HH:MM or "YYYY-MM-DD HH:MM" (dialplan time zone)')
@_options
def close(until: str | None, schedule: str, db_url: str, dialplan: Path, pid_file: Path) -> None:
    """Closed now, whatever the schedule says (e.g. an unplanned day off)."""
    _set("closed", until, schedule, db_url, dialplan, pid_file)


@hours.command("open")
@click.option("--until", help='when the override ends: HH:MM or "YYYY-MM-DD HH:MM" (dialplan time zone)')
@_options
def open_(until: str | None, schedule: str, db_url: str, dialplan: Path, pid_file: Path) -> None:
    """Open now, whatever the schedule says (e.g. a Saturday sale)."""
    _set("open", until, schedule, db_url, dialplan, pid_file)


@hours.command("auto")
@_options
def auto(schedule: str, db_url: str, dialplan: Path, pid_file: Path) -> None:
    """Back to the schedules: lift the override (of --schedule, or all with *)."""
    from pbx.store.hours import HoursStore

    _plan_zone(dialplan, schedule)
    engine = open_database(db_url, "hours_overrides")
    try:
        removed = HoursStore(engine).clear(None if schedule == ALL_SCHEDULES else schedule)
    finally:
        engine.dispose()
    click.echo(f"lifted {removed} override{'s' if removed != 1 else ''}: the schedules decide")
    _tell_server(pid_file)


@hours.command("show")
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, help=_DB_HELP)
def show(db_url: str) -> None:
    """Overrides in force now."""
    from pbx.store.hours import HoursStore

    engine = open_database(db_url, "hours_overrides")
    try:
        found = HoursStore(engine).active(datetime.now(UTC))
    finally:
        engine.dispose()
    if not found:
        click.echo("no overrides: the schedules decide")
    for schedule, override in sorted(found.items()):
        end = f"until {override.until:%Y-%m-%d %H:%M} UTC" if override.until else "until pbx hours auto"
        click.echo(f"{'every schedule' if schedule == ALL_SCHEDULES else schedule}: {override.mode} {end}")
