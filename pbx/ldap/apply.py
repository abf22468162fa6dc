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

from pbx.ldap.sync import Change, Create, Resume, Suspend, SyncPlan, Update
from pbx.routing.dialplan import Dialplan, Extension
from pbx.routing.extensions_file import ExtensionEdit, edit_extensions
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
        applied.append(change)
    after = edit_extensions(dialplan, _merged(edits)) if edits else plan
    return Applied(plan=after, applied=tuple(applied), not_applied=tuple(skipped), passwords=tuple(passwords))


def _merged(edits: list[ExtensionEdit]) -> list[ExtensionEdit]:
    # An update and a suspension of one extension become one edit.
    by_number: dict[str, ExtensionEdit] = {}
    for edit in edits:
        first = by_number.get(edit.number)
        by_number[edit.number] = edit if first is None else ExtensionEdit(
            number=edit.number, create=first.create, values={**first.values, **edit.values})
    return list(by_number.values())
