"""``pbx check``: validate a dialplan without running it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pbx.routing.dialplan import Dialplan


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
def check(file: Path) -> None:
    """Validate a dialplan: problems as FILE:LINE:COLUMN: message."""
    from pbx.routing.loader import check_dialplan

    problems = check_dialplan(file)
    for problem in problems:
        click.echo(str(problem), err=problem.severity == "error")
    errors = sum(1 for p in problems if p.severity == "error")
    if errors:
        click.echo(f"{file}: {errors} error(s)", err=True)
        sys.exit(1)
    click.echo(f"{file}: ok")


def plan_or_exit(path: Path) -> Dialplan:
    """The dialplan at ``path`` for a command that needs one; its errors
    (FILE:LINE:COLUMN) and exit status 1 when it has any."""
    from pbx.routing.loader import read_dialplan

    result = read_dialplan(path)
    if result.dialplan is None:
        for problem in result.errors:
            click.echo(str(problem), err=True)
        sys.exit(1)
    return result.dialplan
