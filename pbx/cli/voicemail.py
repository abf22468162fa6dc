"""``pbx voicemail list|purge``: the messages in the mailboxes, and the
retention purge run by hand (``pbx serve`` also runs it every hour).

Both read the database ``pbx serve`` writes (any node's: the metadata is
shared); ``purge`` also removes the files, under the dialplan's
``voicemail.directory``. Running servers see the change at their next
count refresh (30 s) and update the lamps then.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from pbx.cli.cdr import open_database
from pbx.cli.defaults import DEFAULT_DB

_DB_HELP = "SQLAlchemy database URL (as for pbx serve)."


@click.group()
def voicemail() -> None:
    """Voicemail messages: list them, purge old ones."""


@voicemail.command("list")
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, help=_DB_HELP)
@click.option("--mailbox", help="only this extension's mailbox")
def list_messages(db_url: str, mailbox: str | None) -> None:
    """Every message: mailbox, when (UTC), length, caller, new or heard, file."""
    from pbx.store.voicemail import VoicemailStore

    engine = open_database(db_url, "voicemail_messages")
    try:
        store = VoicemailStore(engine)
        found = store.messages(mailbox) if mailbox is not None else store.all_messages()
    finally:
        engine.dispose()
    if not found:
        click.echo("no messages")
        return
    click.echo(f"{'id':>6}  {'mailbox':<8} {'received (UTC)':<19} {'seconds':>7}  {'caller':<24} {'state':<5} file")
    for m in found:
        caller = f"{m.caller_number} {m.caller_name}" if m.caller_name else m.caller_number
        click.echo(f"{m.id:>6}  {m.mailbox:<8} {m.received_at:%Y-%m-%d %H:%M:%S} {m.seconds:>7.1f}  "
                   f"{caller[:24]:<24} {'heard' if m.heard else 'new':<5} {m.file}")


@voicemail.command()
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, help=_DB_HELP)
@click.option("--dialplan", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="the dialplan whose retention_days and directory apply")
def purge(db_url: str, dialplan: Path) -> None:
    """Delete the messages older than their mailbox's retention_days, and their files."""
    from pbx.routing.loader import read_dialplan
    from pbx.store.voicemail import VoicemailStore

    result = read_dialplan(dialplan)
    if result.dialplan is None:
        for problem in result.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    plan = result.dialplan

    def retention(mailbox: str) -> int | None:
        extension = plan.extension(mailbox)
        return None if extension is None else plan.voicemail.for_extension(extension).retention_days

    engine = open_database(db_url, "voicemail_messages")
    try:
        gone = VoicemailStore(engine).purge(datetime.now(UTC), retention)
    finally:
        engine.dispose()
    directory = Path(plan.voicemail.directory)
    for message in gone:
        (directory / message.file).unlink(missing_ok=True)
    click.echo(f"purged {len(gone)} message(s)")
