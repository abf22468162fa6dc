"""``pbx check``: validate a dialplan without running it."""

from __future__ import annotations

import sys
from pathlib import Path

import click


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
