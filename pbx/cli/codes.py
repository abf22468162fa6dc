"""``pbx codes add|list|disable|enable|rotate|remove|lockouts|unlock``:
account codes, kept in the database as keyed hashes.

A new or rotated code is printed once and never again: the database holds
only its HMAC (the secret is outside it, see :mod:`pbx.store.code_key`),
so nobody can show it later. Running servers look codes up for every call:
a change here holds from the next call on, on every node, without a reload.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click
from sqlalchemy import Engine

from pbx.accountcodes.codes import Status, StoredCode, WeakCode
from pbx.cli.cdr import TIME_HELP, TimeFormatError, parse_time
from pbx.cli.check import plan_or_exit
from pbx.cli.defaults import DEFAULT_DB
from pbx.routing.dialplan import Dialplan
from pbx.store.code_key import CodeKeyError, load_code_key
from pbx.store.codes import CodeInUse, CodeStore, NoSuchCode, codes_matching, new_digits
from pbx.store.db import DatabaseUrlError, make_engine, migrate

F = TypeVar("F", bound=Callable[..., None])
_RNG = random.SystemRandom()


def _options(command: F) -> F:
    for option in reversed([
        click.option("--db", "db_url", default=DEFAULT_DB, show_default=True,
                     help="SQLAlchemy database URL (as for pbx serve)."),
        click.option("--dialplan", type=click.Path(path_type=Path), default=Path("dialplans/example.yaml"),
                     show_default=True, help="the dialplan whose classes of service, departments and code length"
                     " are meant"),
    ]):
        command = option(command)
    return command


def _store(db_url: str) -> tuple[CodeStore, Engine]:
    try:
        engine = make_engine(db_url)
        migrate(engine)
        store = CodeStore(engine, load_code_key())
        store.check_secret(datetime.now(UTC), adopt=False)
        return store, engine
    except (DatabaseUrlError, CodeKeyError) as error:
        raise click.ClickException(str(error)) from None


def _when(text: str | None, plan: Dialplan, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text, datetime.now(UTC), plan.timezone, end_of_day=name == "--valid-until")
    except TimeFormatError as error:
        raise click.BadParameter(str(error), param_hint=name) from None


def _digits(given: str | None, store: CodeStore, plan: Dialplan) -> str:
    """The code given (checked), or a fresh one of the plan's length."""
    try:
        return new_digits(store, plan.account_codes.length, _RNG, given)
    except (WeakCode, CodeInUse) as error:
        raise click.BadParameter(str(error), param_hint="--code") from None


def _show_once(code: StoredCode, digits: str) -> None:
    click.echo(f"code #{code.id} for {code.owner} ({code.class_of_service}): {digits}")
    click.echo("shown once: the PBX keeps only a keyed hash of it", err=True)


@click.group()
def codes() -> None:
    """Account codes: personal codes that carry their owner's rights to any phone."""


@codes.command("add")
@click.option("--owner", required=True, help="whose code it is (a person's name)")
@click.option("--class-of-service", "class_of_service", required=True, help="the rights it carries")
@click.option("--department", help="the owner's department key")
@click.option("--employee-id", "employee_id", help="the owner's employee id")
@click.option("--code", "given", metavar="DIGITS", help="use these digits instead of generating a code")
@click.option("--valid-from", "valid_from", help="the code works from then. " + TIME_HELP)
@click.option("--valid-until", "valid_until", help="the code stops working then (a date: after that day)")
@_options
def add(owner: str, class_of_service: str, department: str | None, employee_id: str | None, given: str | None,
        valid_from: str | None, valid_until: str | None, db_url: str, dialplan: Path) -> None:
    """Add a code and print it (once)."""
    plan = plan_or_exit(dialplan)
    if class_of_service not in plan.classes_of_service:
        raise click.BadParameter(f"no class of service {class_of_service!r} in {dialplan} (have: "
                                 f"{', '.join(sorted(plan.classes_of_service)) or 'none'})",
                                 param_hint="--class-of-service")
    if department is not None and department not in plan.departments:
        raise click.BadParameter(f"no department {department!r} in {dialplan}", param_hint="--department")
    start, end = _when(valid_from, plan, "--valid-from"), _when(valid_until, plan, "--valid-until")
    if start is not None and end is not None and end <= start:
        raise click.BadParameter("must be later than --valid-from", param_hint="--valid-until")
    store, engine = _store(db_url)
    try:
        digits = _digits(given, store, plan)
        try:
            code = store.add(digits, owner=owner, class_of_service=class_of_service, department=department,
                             employee_id=employee_id, valid_from=start, valid_until=end, now=datetime.now(UTC))
        except CodeInUse:
            raise click.BadParameter("that code is already in use; choose another", param_hint="--code") from None
        _show_once(code, digits)
    finally:
        engine.dispose()


def _state(code: StoredCode, now: datetime) -> str:
    from pbx.accountcodes.codes import unusable_because

    why = unusable_because(code, now)
    state = "usable" if why is None else why.replace("_", " ")
    return state + (" FLAGGED" if code.flagged_at is not None else "")


def _day(moment: datetime | None, plan: Dialplan) -> str:
    return "-" if moment is None else moment.astimezone(plan.timezone).strftime("%Y-%m-%d %H:%M")


@codes.command("list")
@_options
def list_codes(db_url: str, dialplan: Path) -> None:
    """Every code: id, owner, rights, validity, refused uses; never the digits."""
    plan = plan_or_exit(dialplan)
    store, engine = _store(db_url)
    try:
        found = store.all()
    finally:
        engine.dispose()
    if not found:
        click.echo("no codes", err=True)
        return
    now = datetime.now(UTC)
    rows = [("id", "owner", "employee", "department", "class of service", "state", "from", "until", "refused")]
    rows += [(f"#{c.id}", c.owner, c.employee_id or "-", c.department or "-", c.class_of_service, _state(c, now),
              _day(c.valid_from, plan), _day(c.valid_until, plan), str(c.failed_attempts)) for c in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _each(which: str, db_url: str, work: Callable[[CodeStore, StoredCode], None]) -> None:
    store, engine = _store(db_url)
    try:
        try:
            found: Sequence[StoredCode] = codes_matching(store, which)
        except NoSuchCode as error:
            raise click.ClickException(str(error)) from None
        for code in found:
            work(store, code)
    finally:
        engine.dispose()


def _set_status(which: str, db_url: str, status: Status) -> None:
    def work(store: CodeStore, code: StoredCode) -> None:
        store.set_status(code.id, status, datetime.now(UTC))
        click.echo(f"code {code.label}: {'enabled' if status == 'active' else 'disabled'}")

    _each(which, db_url, work)


@codes.command("disable")
@click.argument("which", metavar="ID|OWNER")
@_options
def disable(which: str, db_url: str, dialplan: Path) -> None:
    """Stop a code (or all of an owner's) from working, from the next call on."""
    _set_status(which, db_url, "disabled")


@codes.command("enable")
@click.argument("which", metavar="ID|OWNER")
@_options
def enable(which: str, db_url: str, dialplan: Path) -> None:
    """Let a disabled code work again."""
    _set_status(which, db_url, "active")


@codes.command("rotate")
@click.argument("which", metavar="ID|OWNER")
@click.option("--code", "given", metavar="DIGITS", help="use these digits instead of generating new ones")
@_options
def rotate(which: str, given: str | None, db_url: str, dialplan: Path) -> None:
    """Give a code new digits (printed once); the old ones stop working at once."""
    plan = plan_or_exit(dialplan)
    store, engine = _store(db_url)
    try:
        try:
            found = codes_matching(store, which)
        except NoSuchCode as error:
            raise click.ClickException(str(error)) from None
        if len(found) != 1:
            raise click.ClickException(f"{which!r} names {len(found)} codes; give one id: "
                                       + ", ".join(f"#{code.id}" for code in found))
        digits = _digits(given, store, plan)
        try:
            store.rotate(found[0].id, digits, datetime.now(UTC))
        except CodeInUse:
            raise click.BadParameter("that code is already in use; choose another", param_hint="--code") from None
        _show_once(found[0], digits)
    finally:
        engine.dispose()


@codes.command("remove")
@click.argument("which", metavar="ID|OWNER")
@_options
def remove(which: str, db_url: str, dialplan: Path) -> None:
    """Delete a code (its calls keep its id and owner in the CDR)."""
    def work(store: CodeStore, code: StoredCode) -> None:
        store.remove(code.id)
        click.echo(f"code {code.label}: removed")

    _each(which, db_url, work)


@codes.command("lockouts")
@_options
def lockouts(db_url: str, dialplan: Path) -> None:
    """Phones locked out for wrong codes now, and until when."""
    plan = plan_or_exit(dialplan)
    store, engine = _store(db_url)
    try:
        found = store.lockouts(datetime.now(UTC))
    finally:
        engine.dispose()
    if not found:
        click.echo("no phone is locked out", err=True)
    for state in found:
        click.echo(f"{state.source.removeprefix('ext:')}  locked until {_day(state.locked_until, plan)}")


@codes.command("unlock")
@click.argument("extension")
@_options
def unlock(extension: str, db_url: str, dialplan: Path) -> None:
    """Lift a phone's lock-out (and forget its wrong codes)."""
    store, engine = _store(db_url)
    try:
        lifted = store.unlock(f"ext:{extension}")
    finally:
        engine.dispose()
    click.echo(f"{extension}: " + ("unlocked" if lifted else "was not locked"))
