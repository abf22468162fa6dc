"""Applying a sync plan to the dialplan's files (and telling who did it).

New extensions get a random SIP password; only its digest HA1 values are
written, and the password is returned once for the admin (``pbx ldap
sync`` prints it, the API returns it) to hand over.

Suspending and resuming set the extension's ``status`` key, which the
extension lifecycle of the cost-control work defines (active, suspended,
retired). A dialplan model without it cannot suspend: such changes are
returned as not applied, and the sync says so, rather than deleting or
scrambling the extension.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pbx.ldap.sync import Change, Create, Resume, SetMember, Suspend, SyncPlan, Update
from pbx.routing.dialplan import Dialplan, Extension
from pbx.routing.extensions_file import ExtensionEdit, edit_extensions
from pbx.routing.members_file import set_members
from pbx.routing.short_numbers import DEFAULT_DESK_SECONDS, Member
from pbx.web.credentials import ha1_values, new_password

"""Whether extensions have a lifecycle ``status`` to suspend them by."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    plan: Dialplan
    applied: tuple[Change, ...]
    not_applied: tuple[Change, ...]
    passwords: tuple[tuple[str, str], ...]
    """(number, SIP password) of each new extension: to be shown once."""


def suspended_numbers(plan: Dialplan) -> set[str]:
    return {n for n, e in plan.extensions.items() if getattr(e, "status", "active") == "suspended"}


def apply_sync(dialplan: Path, plan: Dialplan, sync: SyncPlan) -> Applied:
    edits: list[ExtensionEdit] = []
    applied: list[Change] = []
    skipped: list[Change] = []
    passwords: list[tuple[str, str]] = []
    for change in sync.changes:
        match change:
            case Create(number=number, values=values):
                password = new_password()
                md5, sha256 = ha1_values(number, plan.domain, password)
                edits.append(ExtensionEdit(number=number, create=True,
                                           values={**values, "ha1_md5": md5, "ha1_sha256": sha256}))
                passwords.append((number, password))
            case Update(number=number, changes=changes):
                edits.append(ExtensionEdit(number=number, values={k: new for k, (_, new) in changes.items()}))
            case Suspend(number=number) | Resume(number=number):
                status = "suspended" if isinstance(change, Suspend) else "active"
                edits.append(ExtensionEdit(number=number, values={"status": status}))
            case SetMember():
                pass  # after the extensions: a new member may ring a new extension
        applied.append(change)
    after = edit_extensions(dialplan, _merged(edits)) if edits else plan
    after = _set_members(dialplan, after, [c for c in sync.changes if isinstance(c, SetMember)])
    return Applied(plan=after, applied=tuple(applied), not_applied=tuple(skipped), passwords=tuple(passwords))


def _merged(edits: list[ExtensionEdit]) -> list[ExtensionEdit]:
    # An update and a suspension of one extension become one edit.
    by_number: dict[str, ExtensionEdit] = {}
    for edit in edits:
        first = by_number.get(edit.number)
        by_number[edit.number] = edit if first is None else ExtensionEdit(
            number=edit.number, create=first.create, values={**first.values, **edit.values})
    return list(by_number.values())


def _set_members(dialplan: Path, plan: Dialplan, changes: list[SetMember]) -> Dialplan:
    """Write each group's member changes at once; a member that moves or is
    renamed keeps its mobile and ring settings."""
    from pbx.routing.loader import read_dialplan

    if not changes:
        return plan
    for group in sorted({c.group for c in changes}):
        members, moved = [], []
        current = plan.groups[group].members
        for change in (c for c in changes if c.group == group):
            before = current.get(change.moved_from or change.short)
            members.append(Member(short=change.short, name=change.name, extension=change.number,
                                  mobile=before.mobile if before else None,
                                  ring=before.ring if before else "together",
                                  desk_seconds=before.desk_seconds if before else DEFAULT_DESK_SECONDS))
            if change.moved_from is not None:
                moved.append(change.moved_from)
        set_members(dialplan, group, members, moved)
    return read_dialplan(dialplan).dialplan or plan
