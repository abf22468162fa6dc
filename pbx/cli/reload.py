"""``pbx reload``: ask a running ``pbx serve`` to reload its dialplan."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pbx.cli.defaults import DEFAULT_PID_FILE


@click.command()
@click.option("--pid-file", type=click.Path(path_type=Path), default=DEFAULT_PID_FILE, show_default=True,
              help="the pid file `pbx serve` wrote")
@click.option("--dialplan", "dialplan", type=click.Path(path_type=Path),
              help="check this file first and do not signal the server if it has errors")
def reload(pid_file: Path, dialplan: Path | None) -> None:
    """Ask a running `pbx serve` to reload its dialplan (SIGHUP).

    The server validates the files itself and keeps its running plan if
    they have errors; its log says which (dialplan_reload_rejected)."""
    from pbx.server.control import ControlError, signal_reload

    if dialplan is not None:
        from pbx.routing.loader import check_dialplan

        problems = check_dialplan(dialplan)
        for problem in problems:
            click.echo(str(problem), err=True)
        if any(p.is_error for p in problems):
            click.echo(f"{dialplan}: has errors; the server was not asked to reload", err=True)
            sys.exit(1)
    try:
        pid = signal_reload(pid_file)
    except ControlError as err:
        click.echo(f"pbx reload: {err}", err=True)
        sys.exit(1)
    click.echo(f"asked pbx serve (pid {pid}) to reload its dialplan")
