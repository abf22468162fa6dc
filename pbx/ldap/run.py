"""One directory sync, start to end: read the dialplan, search the
directory, plan the changes, apply them (or only show them), audit them.
Blocking: ``pbx ldap sync`` runs it as is, the server in a thread."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from pbx.ldap.apply import Applied, apply_sync, suspended_numbers
from pbx.ldap.directory import DirectoryError, read_users
from pbx.ldap.sync import SyncPlan, describe, plan_sync
from pbx.routing.loader import read_dialplan
from pbx.routing.members_file import GroupAdminError
from pbx.web.store import WebStore

ACTOR = "ldap-sync"


class SyncError(Exception):
    """The sync could not run; the message (and problems) say why."""

    def __init__(self, message: str, problems: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncResult:
    planned: SyncPlan
    applied: Applied | None
    """None for a dry run."""


def sync_directory(dialplan: Path, *, dry_run: bool, engine: Engine | None = None,
                   actor: str = ACTOR) -> SyncResult:
    """Plan the sync and, unless ``dry_run``, apply it; each applied change
    goes to the audit log as done by ``actor`` (the periodic sync's own
    name, or who asked for this run)."""
    result = read_dialplan(dialplan)
    plan = result.dialplan
    if plan is None:
        raise SyncError(f"{dialplan} has errors; fix them first", tuple(result.errors))
    if plan.ldap is None:
        raise SyncError(f"{dialplan} has no ldap: section")
    try:
        users = read_users(plan.ldap)
    except DirectoryError as err:
        raise SyncError(str(err)) from None
    planned = plan_sync(users, plan, plan.ldap, suspended_numbers(plan))
    if dry_run or not planned.changes:
        return SyncResult(planned=planned, applied=None)
    try:
        applied = apply_sync(dialplan, plan, planned)
    except GroupAdminError as err:
        raise SyncError(str(err), err.problems) from None
    if engine is not None:
        store = WebStore(engine)
        now = datetime.now(UTC)
        for change in applied.applied:
            store.audit(actor=actor, action=f"ldap.{type(change).__name__.lower()}", target=change.number, now=now,
                        detail={"change": describe(change)})
    return SyncResult(planned=planned, applied=applied)
