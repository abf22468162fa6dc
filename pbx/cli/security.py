"""``pbx security blocks list|clear``: the lock-out's blocks, from the store.

The store is where blocks live (every node refreshes its cache from it
every few seconds), so these commands work on the database, whether or not
a server is running, and a cleared block is lifted on every node.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from pbx.cli.cdr import open_database
from pbx.cli.defaults import DEFAULT_DB
from pbx.store.blocks import BlockStore

_DB_HELP = "SQLAlchemy database URL (as for pbx serve)."


@click.group()
def security() -> None:
    """Brute-force protection: blocks set by the lock-out."""


@security.group()
def blocks() -> None:
    """Blocks of a source address, for one username or for all."""


@blocks.command("list")
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, help=_DB_HELP)
def list_blocks(db_url: str) -> None:
    """Blocks in force now, soonest to end first."""
    engine = open_database(db_url, "blocked_sources")
    try:
        now = datetime.now(UTC)
        found = BlockStore(engine).active(now)
    finally:
        engine.dispose()
    if not found:
        click.echo("no blocks in force")
        return
    click.echo(f"{'source':<40} {'username':<16} {'failures':>8}  {'ends (UTC)':<20} reason")
    for block in found:
        who = block.username or "(every username)"
        ends = block.until.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{block.source:<40} {who:<16} {block.failures:>8}  {ends:<20} {block.reason}")


@blocks.command("clear")
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, help=_DB_HELP)
@click.option("--source", help="The blocked IP address.")
@click.option("--username", help="Only this username's block on --source (default: all of them).")
@click.option("--all", "everything", is_flag=True, help="Lift every block.")
def clear_blocks(db_url: str, source: str | None, username: str | None, everything: bool) -> None:
    """Lift blocks: on one source (or one of its usernames), or all.
    Running servers drop them within a few seconds."""
    if everything == (source is not None):
        raise click.UsageError("give either --source ADDRESS or --all")
    if username is not None and source is None:
        raise click.UsageError("--username needs --source")
    engine = open_database(db_url, "blocked_sources")
    try:
        removed = BlockStore(engine).unblock(source, username)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--source") from None
    finally:
        engine.dispose()
    click.echo(f"lifted {removed} block{'s' if removed != 1 else ''}")
