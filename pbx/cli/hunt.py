"""``pbx hunt login|logout|status``: hunt group agents from the command line.

The log-in state lives in the store (``hunt_member_state``), like the
state a ``*45``/``*46`` from a phone writes; running servers read the store
every few seconds (``SWEEP_INTERVAL``), so a change applies to their calls
within about 5 s, on every node that shares the database. The dialplan is
read to check the group and the member, so a typo is refused instead of
writing a row no server will ever look at.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from pbx.calls.hunt_state import HuntState
from pbx.cli.cdr import _first_line, open_database
from pbx.cli.defaults import DEFAULT_DB
from pbx.routing.dialplan import Dialplan
from pbx.routing.hunt_groups import HuntGroup
from pbx.routing.loader import read_dialplan
from pbx.store.hunt import HuntStore, set_agent_login

DIALPLAN = click.option("--dialplan", "dialplan", required=True, type=click.Path(path_type=Path),
                        help="the dialplan file that defines the hunt groups")
DB = click.option("--db", "db_url", default=DEFAULT_DB, show_default=True,
                  help="SQLAlchemy database URL (as for pbx serve)")


@click.group()
def hunt() -> None:
    """Hunt group agents: log in, log out, see who is in."""


def _fail(message: str) -> None:
    click.echo(f"pbx hunt: {message}", err=True)
    sys.exit(1)


def _plan(path: Path) -> Dialplan:
    return valid_plan(path, "hunt")


def valid_plan(path: Path, command: str) -> Dialplan:
    """The dialplan at ``path``; its problems printed and exit 1 if it has
    any (``pbx <command>: ... has errors``)."""
    result = read_dialplan(path)
    if result.dialplan is None:
        for problem in result.errors:
            click.echo(str(problem), err=True)
        click.echo(f"pbx {command}: {path} has errors", err=True)
        sys.exit(1)
    return result.dialplan


def _groups(plan: Dialplan, number: str | None) -> list[HuntGroup]:
    if number is None:
        return list(plan.hunt_groups.values())
    group = plan.hunt_groups.get(number)
    if group is None:
        known = ", ".join(plan.hunt_groups) or "none"
        _fail(f"no hunt group {number!r} in the dialplan (hunt groups: {known})")
    assert group is not None
    return [group]


def _set(dialplan: Path, db_url: str, member: str, number: str | None, logged_in: bool) -> None:
    plan = _plan(dialplan)
    groups = [g for g in _groups(plan, number) if g.member(member) is not None]
    if not groups:
        _fail(f"{member} is not a member of " + (f"hunt group {number}" if number else "any hunt group"))
    engine = open_database(db_url, "hunt_member_state")
    try:
        set_agent_login(engine, [g.number for g in groups], member, logged_in, time.time())
    except SQLAlchemyError as error:
        _fail(f"cannot write the store: {_first_line(error)}")
    finally:
        engine.dispose()
    word = "logged in to" if logged_in else "logged out of"
    click.echo(f"{member} {word} hunt group(s) {', '.join(g.number for g in groups)};"
               " running servers take it up within about 5 s")


@hunt.command()
@click.argument("member")
@click.argument("group_number", metavar="[GROUP]", required=False)
@DIALPLAN
@DB
def login(member: str, group_number: str | None, dialplan: Path, db_url: str) -> None:
    """Log MEMBER in to GROUP (to every group of theirs without one)."""
    _set(dialplan, db_url, member, group_number, True)


@hunt.command()
@click.argument("member")
@click.argument("group_number", metavar="[GROUP]", required=False)
@DIALPLAN
@DB
def logout(member: str, group_number: str | None, dialplan: Path, db_url: str) -> None:
    """Log MEMBER out of GROUP (out of every group of theirs without one)."""
    _set(dialplan, db_url, member, group_number, False)


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


@hunt.command()
@click.argument("group_number", metavar="[GROUP]", required=False)
@DIALPLAN
@DB
def status(group_number: str | None, dialplan: Path, db_url: str) -> None:
    """Each group's members: logged in or out, last call, calls today."""
    plan = _plan(dialplan)
    groups = _groups(plan, group_number)
    engine = open_database(db_url, "hunt_member_state")
    try:
        state = HuntState()
        state.merge(HuntStore(engine).load())
    except SQLAlchemyError as error:
        _fail(f"cannot read the store: {_first_line(error)}")
    finally:
        engine.dispose()
    today = datetime.now(plan.timezone).date().isoformat()
    for group in groups:
        last = state.last_member(group.number)
        click.echo(f"{group.number} {group.name} ({group.strategy})" + (f", last call: {last}" if last else ""))
        for member in group.members:
            record = state.record(group.number, member.key)
            click.echo(f"  {member.key:<14} {'in ' if record.logged_in else 'OUT'}  tier {member.tier}"
                       f"  last answered {_when(record.last_answered_at)}  last ended {_when(record.last_ended_at)}"
                       f"  calls today {state.calls_today(group.number, member.key, today)}")
