"""``pbx ext forward``: an extension's forwards and do not disturb, set by
an administrator.

The settings live in the store (``extension_features``), like what a user
sets from the phone with ``*72``/``*73``, ``*90``/``*91``, ``*92``/``*93``
and ``*78``/``*79`` (the newest change wins); running servers read the
store every few seconds, so a change applies within about 5 s on every
node sharing the database. The dialplan is read to check the extension
and the target: a forward must point at an extension, a hunt group, or a
number the extension itself may dial (its class of service), as a forward
is a call placed on its behalf and billed to it.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from pbx.cli.cdr import _first_line, open_database
from pbx.cli.defaults import DEFAULT_DB
from pbx.cli.hunt import valid_plan
from pbx.routing.dialplan import FORWARD_KINDS, Dialplan, Extension
from pbx.routing.feature_codes import ForwardKind
from pbx.routing.rights import forward_refusal
from pbx.store.features import set_features


def _fail(message: str) -> None:
    click.echo(f"pbx ext forward: {message}", err=True)
    sys.exit(1)


def _extension(path: Path, number: str) -> tuple[Dialplan, Extension]:
    plan = valid_plan(path, "ext forward")
    extension = plan.extension(number)
    if extension is None:
        _fail(f"no extension {number!r} in {path}")
    assert extension is not None
    return plan, extension


def _check_target(plan: Dialplan, extension: Extension, target: str) -> None:
    refusal = forward_refusal(plan, extension, target, datetime.now(UTC))
    if refusal is not None:
        _fail(refusal)


@click.command()
@click.argument("number")
@click.option("--always", help="forward every call to this number (*72)")
@click.option("--busy", help="forward when busy or on do not disturb (*90)")
@click.option("--no-answer", "no_answer", help="forward after the ring time (*92)")
@click.option("--unreachable", help="forward when no phone is registered")
@click.option("--off", "off", multiple=True, type=click.Choice(FORWARD_KINDS),
              help="switch a forward off (repeatable)")
@click.option("--dnd", type=click.Choice(["on", "off"]), help="do not disturb (*78 / *79)")
@click.option("--dialplan", "dialplan", required=True, type=click.Path(path_type=Path),
              help="the dialplan file that defines the extension")
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True,
              help="SQLAlchemy database URL (as for pbx serve)")
def forward(number: str, always: str | None, busy: str | None, no_answer: str | None, unreachable: str | None,
            off: tuple[ForwardKind, ...], dnd: str | None, dialplan: Path, db_url: str) -> None:
    """Show or set extension NUMBER's forwards and do not disturb."""
    plan, extension = _extension(dialplan, number)
    changes: dict[ForwardKind, str | None] = {kind: None for kind in off}
    for kind, target in (("always", always), ("busy", busy), ("no_answer", no_answer),
                         ("unreachable", unreachable)):
        if target is not None:
            _check_target(plan, extension, target)
            changes[kind] = target  # type: ignore[index]
    engine = open_database(db_url, "extension_features")
    try:
        settings = set_features(engine, extension, changes, None if dnd is None else dnd == "on", time.time())
    except SQLAlchemyError as error:
        _fail(f"cannot use the store: {_first_line(error)}")
    finally:
        engine.dispose()
    shown = ", ".join(f"{kind} -> {getattr(settings.forward, kind) or 'off'}" for kind in FORWARD_KINDS)
    click.echo(f"{number}: {shown}; do not disturb {'on' if settings.dnd else 'off'}")
    if changes or dnd is not None:
        click.echo("running servers take it up within about 5 s")
