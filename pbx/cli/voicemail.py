"""``pbx voicemail list|purge|pin``: the messages in the mailboxes, the
retention purge run by hand (``pbx serve`` also runs it every hour), and
an administrator's PIN for a mailbox (a user who forgot theirs, or one who
will open it with ``*98`` before setting one with ``*97``).

Both read the database ``pbx serve`` writes (any node's: the metadata is
shared); ``purge`` also removes the files, under the dialplan's
``voicemail.directory``. Running servers see the change at their next
count refresh (30 s) and update the lamps then.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from pbx.cli.cdr import open_database
from pbx.cli.check import plan_or_exit
from pbx.cli.defaults import DEFAULT_DB

_DB_HELP = "SQLAlchemy database URL (as for pbx serve)."


@click.group()
def voicemail() -> None:
    """Voicemail: list messages, purge old ones, set a mailbox's PIN."""


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
    from pbx.store.voicemail import VoicemailStore

    plan = plan_or_exit(dialplan)

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


@voicemail.command()
@click.argument("mailbox")
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, help=_DB_HELP)
@click.option("--dialplan", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="the dialplan whose PIN policy applies")
def pin(mailbox: str, db_url: str, dialplan: Path) -> None:
    """Set MAILBOX's PIN (asked twice, never echoed, stored hashed); a lock-out ends."""
    from pbx.store.voicemail import VoicemailStore

    plan = plan_or_exit(dialplan)
    extension = plan.extension(mailbox)
    if extension is None:
        raise click.BadParameter(f"no extension {mailbox} in {dialplan}", param_hint="MAILBOX")
    settings = plan.voicemail.for_extension(extension)
    if not settings.enabled:
        raise click.BadParameter(f"extension {mailbox} has no mailbox (voicemail enabled: false)",
                                 param_hint="MAILBOX")
    chosen = click.prompt("PIN", hide_input=True, confirmation_prompt=True)
    policy = settings.pin
    if not policy.allows(chosen):
        raise click.ClickException(f"a PIN is {policy.min_length} to {policy.max_length} digits, not all the same")
    engine = open_database(db_url, "voicemail_boxes")
    try:
        VoicemailStore(engine).set_pin(mailbox, chosen, datetime.now(UTC))
    finally:
        engine.dispose()
    click.echo(f"PIN of mailbox {mailbox} set")
