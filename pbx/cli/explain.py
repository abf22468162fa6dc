"""``pbx explain``: what the dialplan does with a call, and why."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.option("--from", "source", required=True, metavar="EXTENSION|trunk:KEY[/NUMBER]",
              help="the calling extension, or trunk:KEY for a call in from that trunk")
@click.option("--to", "dialled", required=True, metavar="NUMBER", help="the number dialled (the DID for a trunk)")
@click.option("--at", "at", metavar='"YYYY-MM-DD HH:MM"',
              help="when, in the dialplan's time zone (or ISO 8601 with an offset); default: now")
@click.option("--dialplan", "dialplan", type=click.Path(path_type=Path), default=Path("dialplans/example.yaml"),
              show_default=True)
def explain(source: str, dialled: str, at: str | None, dialplan: Path) -> None:
    """Show what the dialplan does with a call, and every rule behind it."""
    from datetime import datetime, timezone

    from pbx.routing.explain import ExplainError, explain_call, parse_at
    from pbx.routing.loader import read_dialplan

    result = read_dialplan(dialplan)
    if result.dialplan is None:
        for problem in result.errors:
            click.echo(str(problem), err=True)
        click.echo(f"{dialplan}: {len(result.errors)} error(s)", err=True)
        sys.exit(1)
    plan = result.dialplan
    try:
        moment = parse_at(at, plan.timezone) if at is not None else datetime.now(timezone.utc)
        click.echo(explain_call(plan, source, dialled, moment))
    except ExplainError as err:
        click.echo(f"pbx explain: {err}", err=True)
        sys.exit(2)
