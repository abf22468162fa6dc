"""``pbx ldap sync [--dry-run]``: employees from the directory into
extensions (the dialplan's ``ldap:`` section says where and how).

A dry run prints what would change and changes nothing. A real run writes
the dialplan's files (atomically, validated), records each change in the
audit log, prints each new extension's SIP password once, and asks the
running server to reload.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pbx.cli.defaults import DEFAULT_DB, DEFAULT_PID_FILE


@click.group()
def ldap() -> None:
    """LDAP / Active Directory sync of employees."""


@ldap.command()
@click.option("--dialplan", "dialplan", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, help="where the audit log is kept")
@click.option("--dry-run", is_flag=True, help="only show what would change")
@click.option("--pid-file", type=click.Path(path_type=Path), default=DEFAULT_PID_FILE, show_default=True,
              help="the pid file of `pbx serve`, to ask it to reload")
def sync(dialplan: Path, db_url: str, dry_run: bool, pid_file: Path) -> None:
    """Create, update, suspend and resume extensions from the directory."""
    from pbx.ldap.run import SyncError, sync_directory
    from pbx.ldap.sync import describe
    from pbx.server.control import ControlError, signal_reload
    from pbx.store.db import make_engine, migrate

    engine = None
    if not dry_run:
        engine = make_engine(db_url)
        migrate(engine)
    try:
        result = sync_directory(dialplan, dry_run=dry_run, engine=engine)
    except SyncError as err:
        for problem in err.problems:
            click.echo(str(problem), err=True)
        click.echo(f"pbx ldap sync: {err}", err=True)
        sys.exit(1)
    finally:
        if engine is not None:
            engine.dispose()
    for skipped in result.planned.skipped:
        click.echo(f"skip {skipped.dn}: {skipped.reason}")
    if dry_run:
        for change in result.planned.changes:
            click.echo(describe(change))
        click.echo(f"dry run: {len(result.planned.changes)} change(s), nothing written")
        return
    applied = result.applied
    if applied is None:
        click.echo("nothing to change")
        return
    for change in applied.applied:
        click.echo(describe(change))
    for change in applied.not_applied:
        click.echo(f"NOT DONE {describe(change)}: this PBX's extensions have no status to suspend by")
    for number, password in applied.passwords:
        click.echo(f"new extension {number}: SIP password {password} (shown once)")
    try:
        pid = signal_reload(pid_file)
        click.echo(f"asked pbx serve (pid {pid}) to reload")
    except ControlError as err:
        click.echo(f"no server was asked to reload ({err}); a running one notices the files within a second")
