"""``pbx cdr ...``: reading call detail records from the command line.

Registered on the main command group (``main.add_command(cdr)``); runs on its
own too: ``python -c "from pbx.cli.cdr import cdr; cdr()" list``.
"""

from __future__ import annotations

import io
import re
import sys
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Final

import click
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from pbx.cdr.query import format_table, list_calls, write_csv
from pbx.cdr.records import Disposition
from pbx.cli.defaults import DEFAULT_DB
from pbx.store.db import DatabaseUrlError, make_engine, normalise_url

_RELATIVE: Final = re.compile(r"(\d+)\s*([smhdw])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DATE_ONLY: Final = re.compile(r"\d{4}-\d{2}-\d{2}")

TIME_HELP: Final = (
    "YYYY-MM-DD, 'YYYY-MM-DD HH:MM[:SS]' (local time, or UTC with --utc, unless"
    " it ends in a zone such as Z or +07:00), or an age such as 90m, 1h, 7d, 2w"
    " (s m h d w: seconds to weeks)."
)


class TimeFormatError(ValueError):
    """The text is none of the accepted time forms."""


def _local_midnight(day: date, zone: tzinfo | None) -> datetime:
    naive = datetime.combine(day, time())
    return naive.replace(tzinfo=zone) if zone is not None else naive.astimezone()


def parse_time(text: str, now: datetime, zone: tzinfo | None, *, end_of_day: bool = False) -> datetime:
    """The instant `text` names, as an aware datetime.

    Naive times are in `zone` (None: the system's local zone).  An age
    ("7d") counts back from `now`.  A bare date is its midnight, or with
    `end_of_day` the next midnight, so ``--until 2025-03-31`` takes in
    all of that day.
    """
    value = text.strip()
    if (match := _RELATIVE.fullmatch(value)) is not None:
        amount, unit = int(match.group(1)), match.group(2)
        try:
            return now - timedelta(**{_UNITS[unit]: amount})
        except OverflowError:
            raise TimeFormatError(f"{text!r}: too far back") from None
    try:
        if _DATE_ONLY.fullmatch(value):
            day = date.fromisoformat(value)
            if end_of_day:
                day += timedelta(days=1)
            return _local_midnight(day, zone)
        moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise TimeFormatError(f"{text!r}: expected {TIME_HELP}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=zone) if zone is not None else moment.astimezone()
    return moment


def open_database(url: str, table: str = "cdr") -> Engine:
    """An engine on an existing database that has ``table``, or a ClickException."""
    try:
        parsed = normalise_url(url)
    except DatabaseUrlError as error:
        raise click.ClickException(str(error)) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        # make_engine would create the file (and its folder): a typo in --db
        # must not leave an empty database behind or list nothing silently.
        if not database.startswith("file:") and not Path(database).is_file():
            raise click.ClickException(
                f"no database file at {database} (check --db; pbx serve creates it)"
            )
    engine = make_engine(url)
    try:
        has_table = inspect(engine).has_table(table)
    except SQLAlchemyError as error:
        engine.dispose()
        raise click.ClickException(f"cannot read the database: {_first_line(error)}") from None
    if not has_table:
        engine.dispose()
        raise click.ClickException(
            f"the database has no {table} table yet: run pbx serve with this --db once to upgrade it"
        )
    return engine


def _first_line(error: SQLAlchemyError) -> str:
    # The driver's own message (e.g. "connection refused"), without the SQL
    # and parameters SQLAlchemy appends.
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


@click.group()
def cdr() -> None:
    """Call detail records."""


@cdr.command("list")
@click.option(
    "--db",
    "db_url",
    default=DEFAULT_DB,
    show_default=True,
    help="SQLAlchemy database URL (as for pbx serve).",
)
@click.option("--since", help="Calls started at or after this. " + TIME_HELP)
@click.option("--until", help="Calls started before this (same forms); a bare date includes that whole day.",)
@click.option("--extension", "-e", help="Only calls this number placed, dialled or reached.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N calls.")
@click.option("--hunt-group", "hunt_group", metavar="NUMBER", help="Only calls to this hunt group.")
@click.option("--account-code", "account_code", metavar="ID",
              help="Only calls placed with this account code (its id, as pbx codes list shows it).")
@click.option("--owner", "account_owner", metavar="NAME", help="Only calls placed with an account code of this owner.")
@click.option("--disposition", type=click.Choice([d.value for d in Disposition], case_sensitive=False),
              help="Only calls that ended this way (REJECTED, ANSWERED ...).")
@click.option("--department", help="Only calls placed from this department (its key).")
@click.option("--class", "call_class", help="Only calls of this call class (mobile, international ...).")
@click.option("--min-cost", type=click.IntRange(min=0), help="Only calls that cost at least this (minor units).")
@click.option("--max-cost", type=click.IntRange(min=0), help="Only calls that cost at most this (minor units).")
@click.option(
    "--csv", "as_csv", is_flag=True, help="CSV with a header row (UTF-8, opens in spreadsheets)."
)
@click.option(
    "--bom/--no-bom",
    default=True,
    show_default=True,
    help="Start the CSV with a UTF-8 byte order mark (how Excel knows it is UTF-8).",
)
@click.option(
    "--utc", is_flag=True, help="Show times in UTC and read --since/--until without a zone as UTC."
)
def list_command(
    db_url: str,
    since: str | None,
    until: str | None,
    extension: str | None,
    limit: int | None,
    hunt_group: str | None,
    account_code: str | None,
    account_owner: str | None,
    disposition: str | None,
    department: str | None,
    call_class: str | None,
    min_cost: int | None,
    max_cost: int | None,
    as_csv: bool,
    bom: bool,
    utc: bool,
) -> None:
    """List calls, oldest first: an aligned table, or CSV with --csv.

    Times are shown in the local time zone (set TZ to change it) unless
    --utc is given.
    """
    zone: tzinfo | None = UTC if utc else None
    now = datetime.now(UTC)
    try:
        start = None if since is None else parse_time(since, now, zone)
    except TimeFormatError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    try:
        end = None if until is None else parse_time(until, now, zone, end_of_day=True)
    except TimeFormatError as error:
        raise click.BadParameter(str(error), param_hint="--until") from None
    if start is not None and end is not None and end <= start:
        raise click.BadParameter("must be later than --since", param_hint="--until")

    engine = open_database(db_url)
    try:
        rows = list_calls(engine, since=start, until=end, extension=extension, limit=limit,
                          hunt_group=hunt_group, account_code=account_code, account_owner=account_owner,
                          disposition=disposition.upper() if disposition else None, department=department,
                          call_class=call_class, min_cost=min_cost, max_cost=max_cost)
    except SQLAlchemyError as error:
        raise click.ClickException(f"cannot read the CDRs: {_first_line(error)}") from None
    finally:
        engine.dispose()

    if as_csv:
        # Bytes, so the encoding (and BOM) is ours, not the terminal's.
        sys.stdout.flush()
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8-sig" if bom else "utf-8", newline="")
        try:
            write_csv(rows, out, zone)
            out.flush()
        finally:
            out.detach()  # leave stdout itself open
        return
    if not rows:
        click.echo("no calls", err=True)
        return
    for line in format_table(rows, zone):
        click.echo(line)
