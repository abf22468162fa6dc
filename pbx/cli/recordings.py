"""``pbx recordings list|export|purge``: the call recordings on disk.

The directory, retention and size budget come from the dialplan's
``recording:`` section (``--dialplan``), or ``--dir`` and the options given.
``list`` joins each file with its call's CDR row (caller, number dialled)
when the database can be read: a file's name is its call's id.
"""

from __future__ import annotations

import shutil
import time
import uuid
import wave
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from pbx.cdr.query import display_width
from pbx.cdr.writer import CDR
from pbx.cli.cdr import open_database
from pbx.cli.defaults import DEFAULT_DB
from pbx.recording.files import SUFFIX, BadRecordingName, StoredFile, file_name, is_recording, purge, scan, to_purge
from pbx.recording.policy import RecordingSettings

_DIALPLAN = click.option("--dialplan", type=click.Path(path_type=Path), default=Path("dialplans/example.yaml"),
                         show_default=True, help="The dialplan whose recording: section names the directory.")
_DIR = click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False),
                    help="The recording directory (instead of the dialplan's).")


def _settings(dialplan: Path, directory: Path | None) -> RecordingSettings:
    if directory is not None and not dialplan.is_file():
        return RecordingSettings(directory=str(directory))
    from pbx.routing.loader import read_dialplan

    result = read_dialplan(dialplan)
    if result.dialplan is None:
        for problem in result.errors:
            click.echo(str(problem), err=True)
        raise click.ClickException(f"cannot read {dialplan} (fix it, or give --dir)")
    settings = result.dialplan.recording
    if directory is not None:
        return RecordingSettings(directory=str(directory), retention_days=settings.retention_days,
                                 max_megabytes=settings.max_megabytes)
    return settings


def _seconds(path: Path) -> float | None:
    try:
        with wave.open(str(path), "rb") as source:
            return source.getnframes() / source.getframerate()
    except (OSError, wave.Error, EOFError, ZeroDivisionError):
        return None


def _cdr_rows(db_url: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """CDR facts by recording file name, found by the call id the name is
    made of (so a file a crash left unlinked still shows its call); empty,
    with a note, when the database cannot be read."""
    if not names:
        return {}
    ids = {str(uuid.UUID(name.removesuffix(SUFFIX))): name for name in names}
    try:
        engine = open_database(db_url)
    except click.ClickException as err:
        click.echo(f"note: no CDR details ({err.message})", err=True)
        return {}
    try:
        with engine.connect() as conn:
            query = select(CDR.c.call_uuid, CDR.c.caller_number, CDR.c.dialed_number, CDR.c.started_at,
                           CDR.c.billsec).where(CDR.c.call_uuid.in_(list(ids)))
            return {ids[str(uuid.UUID(str(row.call_uuid)))]: dict(row._mapping) for row in conn.execute(query)}
    except SQLAlchemyError as err:
        click.echo(f"note: no CDR details ({str(err).splitlines()[0]})", err=True)
        return {}
    finally:
        engine.dispose()


@click.group()
def recordings() -> None:
    """Call recordings: list, export, purge."""


@recordings.command("list")
@_DIALPLAN
@_DIR
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, help="Database URL (as for pbx serve).")
def list_command(dialplan: Path, directory: Path | None, db_url: str) -> None:
    """List the recordings, oldest first, with their calls."""
    settings = _settings(dialplan, directory)
    folder = Path(settings.directory)
    files = scan(folder)
    if not files:
        click.echo(f"no recordings in {folder}")
        return
    calls = _cdr_rows(db_url, [f.name for f in files])
    headers = ["file", "ended (UTC)", "seconds", "KB", "caller", "dialled"]
    lines = []
    for stored in files:
        call = calls.get(stored.name, {})
        seconds = _seconds(folder / stored.name)
        lines.append([stored.name, datetime.fromtimestamp(stored.modified, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                      "?" if seconds is None else f"{seconds:.1f}", str(stored.size // 1024),
                      str(call.get("caller_number") or "-"), str(call.get("dialed_number") or "-")])
    widths = [max(display_width(row[i]) for row in [headers, *lines]) for i in range(len(headers))]
    for row in [headers, *lines]:
        click.echo("  ".join(value + " " * (width - display_width(value)) for value, width in zip(row, widths))
                   .rstrip())
    total = sum(f.size for f in files)
    click.echo(f"{len(files)} recordings, {total / 1048576:.1f} MB of {settings.max_megabytes} MB")


@recordings.command("export")
@click.argument("call")
@click.argument("destination", type=click.Path(path_type=Path))
@_DIALPLAN
@_DIR
def export_command(call: str, destination: Path, dialplan: Path, directory: Path | None) -> None:
    """Copy the recording of CALL (its call id, or the file name) to DESTINATION."""
    settings = _settings(dialplan, directory)
    try:
        name = call if is_recording(call) else file_name(call)
    except BadRecordingName:
        raise click.BadParameter(f"{call!r} is neither a call id (32 hex digits, as pbx cdr list shows) "
                                 "nor a recording's file name", param_hint="CALL") from None
    source = Path(settings.directory) / name
    if not source.is_file():
        raise click.ClickException(f"no recording {name} in {settings.directory} (purged, or never recorded)")
    if destination.is_dir():
        destination = destination / name
    try:
        shutil.copyfile(source, destination)
    except OSError as err:
        raise click.ClickException(f"cannot write {destination}: {err.strerror or err}") from None
    click.echo(f"{destination}")


@recordings.command("purge")
@_DIALPLAN
@_DIR
@click.option("--retention-days", type=click.IntRange(min=0), help="Instead of the dialplan's (0: no age limit).")
@click.option("--max-megabytes", type=click.IntRange(min=0), help="Instead of the dialplan's (0: no size limit).")
@click.option("--dry-run", is_flag=True, help="Only say what would go.")
def purge_command(dialplan: Path, directory: Path | None, retention_days: int | None, max_megabytes: int | None,
                  dry_run: bool) -> None:
    """Remove recordings past the retention period, then the oldest beyond
    the size budget (pbx serve does the same after each recorded call)."""
    settings = _settings(dialplan, directory)
    folder = Path(settings.directory)
    days = settings.retention_days if retention_days is None else retention_days
    budget = (settings.max_megabytes if max_megabytes is None else max_megabytes) * 1024 * 1024
    now = time.time()
    gone: list[StoredFile]
    if dry_run:
        gone = to_purge(scan(folder), now=now, retention_days=days, max_bytes=budget)
    else:
        try:
            gone = purge(folder, now=now, retention_days=days, max_bytes=budget)
        except OSError as err:
            raise click.ClickException(f"cannot purge {folder}: {err.strerror or err}") from None
    for stored in gone:
        click.echo(f"{'would remove' if dry_run else 'removed'} {stored.name}")
    click.echo(f"{len(gone)} recordings {'would go' if dry_run else 'purged'}, "
               f"{sum(f.size for f in gone) / 1048576:.1f} MB")
