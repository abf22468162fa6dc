"""``pbx ext suspend|resume|retire|show``: an extension's life, from the
command line (``pbx ext forward`` lives in :mod:`pbx.cli.forward`).

The status is written into the dialplan (``extensions.<number>.status``,
in the file that defines the extension; validated, atomic) and the running
server is asked to reload: a suspended or retired extension's
registrations are dropped at once, it can no longer register or call, and
calls to it are refused (480, or 404 once retired, unless its
``inactive_status`` says otherwise). Its CDRs stay.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from pbx.cli.defaults import DEFAULT_PID_FILE
from pbx.cli.forward import forward
from pbx.cli.group import tell_server

DIALPLAN = click.option("--dialplan", "dialplan", required=True,
                        type=click.Path(path_type=Path, exists=True, dir_okay=False), help="the dialplan file")
PID_FILE = click.option("--pid-file", type=click.Path(path_type=Path), default=DEFAULT_PID_FILE,
                        show_default=True, help="the pid file of `pbx serve`, to ask it to reload")


@click.group()
def ext() -> None:
    """Extensions: suspend, resume, retire; forward."""


ext.add_command(forward)


def _change(number: str, status: str | None, dialplan: Path, pid_file: Path) -> None:
    from pbx.routing.loader import read_dialplan
    from pbx.routing.plan_edit import DELETE, PlanEditError, set_value

    plan = read_dialplan(dialplan).dialplan
    if plan is not None and number not in plan.extensions:
        click.echo(f"pbx ext: no extension {number} in {dialplan}", err=True)
        sys.exit(1)
    try:
        written = set_value(dialplan, ("extensions", number, "status"), DELETE if status is None else status)
    except PlanEditError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
        click.echo(f"pbx ext: {error}", err=True)
        sys.exit(1)
    click.echo(f"extension {number} is {status or 'active'} ({written})")
    tell_server(pid_file)


@ext.command()
@click.argument("number")
@DIALPLAN
@PID_FILE
def suspend(number: str, dialplan: Path, pid_file: Path) -> None:
    """Stop NUMBER registering and calling, for now (calls to it: 480)."""
    _change(number, "suspended", dialplan, pid_file)


@ext.command()
@click.argument("number")
@DIALPLAN
@PID_FILE
def resume(number: str, dialplan: Path, pid_file: Path) -> None:
    """Make a suspended or retired NUMBER active again."""
    _change(number, None, dialplan, pid_file)


@ext.command()
@click.argument("number")
@DIALPLAN
@PID_FILE
def retire(number: str, dialplan: Path, pid_file: Path) -> None:
    """Take NUMBER out of use for good (calls to it: 404); its CDRs stay."""
    _change(number, "retired", dialplan, pid_file)


@ext.command()
@click.argument("number", required=False)
@DIALPLAN
def show(number: str | None, dialplan: Path) -> None:
    """Each extension's status now, and its validity."""
    from pbx.routing.loader import read_dialplan

    plan = read_dialplan(dialplan).dialplan
    if plan is None:
        click.echo(f"pbx ext: {dialplan} has errors (pbx check)", err=True)
        sys.exit(1)
    now = datetime.now(UTC)
    for found in plan.extensions.values():
        if number is not None and found.number != number:
            continue
        span = ""
        if found.valid_from is not None or found.valid_until is not None:
            start = f"{found.valid_from:%Y-%m-%d %H:%M}" if found.valid_from else "…"
            end = f"{found.valid_until:%Y-%m-%d %H:%M}" if found.valid_until else "…"
            span = f"  valid {start} to {end}"
        project = f"  project {found.project}" if found.project else ""
        click.echo(f"{found.number:<8} {found.state_at(now):<13} {found.name}{project}{span}")
