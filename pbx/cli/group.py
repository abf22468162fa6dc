"""``pbx group add|remove|list``: short-number group members from the
command line.

A change is written to the group's ``members_file`` (see
:mod:`pbx.routing.members_file`), then the running server named by the pid file is
asked to reload, so a new member's short number works for the next call and
a removed one's stops. Without a running server that is not an error: the
server reads the file when it starts (and notices changes to it by itself
within a second while it runs).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pbx.cli.defaults import DEFAULT_PID_FILE

DIALPLAN = click.option("--dialplan", "dialplan", required=True, type=click.Path(path_type=Path),
                        help="the dialplan file that defines the group")
PID_FILE = click.option("--pid-file", type=click.Path(path_type=Path), default=DEFAULT_PID_FILE,
                        show_default=True, help="the pid file of `pbx serve`, to ask it to reload")


@click.group()
def group() -> None:
    """Members of short-number groups (集团短号)."""


def _fail(message: str, problems: tuple[object, ...] = ()) -> None:
    for problem in problems:
        click.echo(str(problem), err=True)
    click.echo(f"pbx group: {message}", err=True)
    sys.exit(1)


def tell_server(pid_file: Path) -> None:
    from pbx.server.control import ControlError, signal_reload

    try:
        pid = signal_reload(pid_file)
    except ControlError as err:
        click.echo(f"no server was asked to reload ({err}); a running one notices the file within a second,"
                   " a stopped one reads it when it starts")
        return
    click.echo(f"asked pbx serve (pid {pid}) to reload: the change applies to the next call")


@group.command()
@click.argument("group_key", metavar="GROUP")
@click.argument("short", metavar="SHORT")
@click.option("--name", default="", help="the person's name")
@click.option("--extension", metavar="NUMBER", help="their extension")
@click.option("--mobile", metavar="NUMBER", help="their mobile, as members dial it")
@click.option("--hunt-group", metavar="NUMBER", help="a hunt group this short number rings instead of a person")
@click.option("--ring", type=click.Choice(["together", "desk_first"]), default="together", show_default=True,
              help="ring desk and mobile together, or the desk first")
@click.option("--desk-seconds", type=click.IntRange(1, 600), default=15, show_default=True,
              help="with desk_first: seconds before the mobile rings too")
@DIALPLAN
@PID_FILE
def add(group_key: str, short: str, name: str, extension: str | None, mobile: str | None,
        hunt_group: str | None, ring: str, desk_seconds: int, dialplan: Path, pid_file: Path) -> None:
    """Add a member under SHORT to GROUP, or replace the one it has."""
    from pbx.routing.members_file import GroupAdminError, add_member
    from pbx.routing.short_numbers import Member

    try:
        member = Member(short=short, name=name, extension=extension, mobile=mobile, hunt_group=hunt_group,
                        ring="desk_first" if ring == "desk_first" else "together", desk_seconds=desk_seconds)
    except ValueError as err:
        _fail(str(err))
        return
    try:
        change = add_member(dialplan, group_key, member)
    except GroupAdminError as err:
        _fail(str(err), err.problems)
        return
    click.echo(f"{change.action} member {short} of group {group_key} in {change.members_file}")
    tell_server(pid_file)


@group.command()
@click.argument("group_key", metavar="GROUP")
@click.argument("short", metavar="SHORT")
@DIALPLAN
@PID_FILE
def remove(group_key: str, short: str, dialplan: Path, pid_file: Path) -> None:
    """Remove the member with short number SHORT from GROUP."""
    from pbx.routing.members_file import GroupAdminError, remove_member

    try:
        change = remove_member(dialplan, group_key, short)
    except GroupAdminError as err:
        _fail(str(err), err.problems)
        return
    click.echo(f"removed member {short} of group {group_key} from {change.members_file}")
    tell_server(pid_file)


@group.command(name="list")
@click.argument("group_key", metavar="[GROUP]", required=False)
@DIALPLAN
def list_members(group_key: str | None, dialplan: Path) -> None:
    """Show the groups (or GROUP) and their members."""
    from pbx.routing.loader import read_dialplan

    result = read_dialplan(dialplan)
    plan = result.dialplan
    if plan is None:
        _fail(f"{dialplan} has errors", result.errors)
        return
    if group_key is not None and group_key not in plan.groups:
        _fail(f"no short-number group {group_key!r} in {dialplan} (groups: {', '.join(plan.groups) or 'none'})")
    for key, found in plan.groups.items():
        if group_key is not None and key != group_key:
            continue
        notes = [f"members file {found.members_file}" if found.members_file else "members inline"]
        if found.in_group_only:
            allowed = ", ".join(pattern.text for pattern in found.allow_outside) or "nothing"
            notes.append(f"in group only; outside allowed: {allowed}")
        click.echo(f"{found.title}: {'; '.join(notes)}")
        if not found.members:
            click.echo("  (no members)")
        for member in found.members.values():
            if member.hunt_group is not None:
                click.echo(f"  {member.short:<8} {member.name or '-':<24} hunt group {member.hunt_group}")
                continue
            ring = f"desk first, mobile after {member.desk_seconds} s" if member.ring == "desk_first" else "together"
            if member.extension is None or member.mobile is None:
                ring = "-"
            click.echo(f"  {member.short:<8} {member.name or '-':<24} extension {member.extension or '-':<8}"
                       f" mobile {member.mobile or '-':<14} {ring}")
