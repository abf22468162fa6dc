"""What a directory sync would change: the pure diff between the users an
LDAP search returned and the dialplan's extensions.

Rules:

- A user is matched to an extension by its number (the ``extension``
  attribute). A user without a usable number, or whose department maps
  to none, is skipped and reported, never guessed.
- A new number makes an extension (name, department, e-mail, mobile, the
  entry's DN); its SIP password is made when the change is applied.
- An extension the sync manages (one with ``ldap_dn``) whose user changed
  gets the changed fields; a hand-made extension with the same number as a
  directory user is taken over (its DN is recorded) but keeps its password.
- A managed extension whose user is gone from the search, or disabled (AD's
  userAccountControl bit 0x2), is suspended, never deleted; one whose user
  is back is resumed. Hand-made extensions are never suspended.
- Where ``ldap.groups`` maps a short-number group to an attribute, an
  enabled user with a short number there becomes that group's member
  (name and extension); a changed name is updated, a changed short number
  moves the member (keeping its mobile and ring settings). A short number
  held by another person, or by a member without this extension (a
  mobile-only member written by hand), or equal to an extension number, is
  skipped and reported, never taken over. Members are never removed: a
  user who leaves has their extension suspended, which stops it ringing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from pbx.ldap.settings import LdapSettings
from pbx.routing.dialplan import EXTENSION_NUMBER, Dialplan, Extension

SHORT_NUMBER: Final = re.compile(r"[0-9]{2,8}")

ACCOUNTDISABLE: Final = 0x2
"""userAccountControl's "account disabled" flag (Active Directory)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryUser:
    """One entry as the search returned it (first value of each attribute)."""

    dn: str
    extension: str | None
    name: str | None
    department: str | None
    email: str | None = None
    mobile: str | None = None
    account_control: str | None = None
    short_numbers: Mapping[str, str] = field(default_factory=dict)
    """Short-number group key -> the value of its ``ldap.groups`` attribute."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Create:
    number: str
    values: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    number: str
    changes: Mapping[str, tuple[str | None, str | None]]
    """field -> (old, new); new None removes the key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspend:
    number: str
    reason: str
    """``disabled`` in the directory, or ``missing`` from it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume:
    number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMember:
    """Add or update a short-number group's member for a directory user."""

    group: str
    short: str
    number: str
    """The user's extension: the member rings it."""
    name: str
    old_name: str | None = None
    """The member's name before, when it is an update."""
    moved_from: str | None = None
    """The short number the member had before, when it moves."""


Change = Create | Update | Suspend | Resume | SetMember


@dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    dn: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncPlan:
    changes: tuple[Change, ...] = ()
    skipped: tuple[Skipped, ...] = field(default_factory=tuple)


def is_disabled(user: DirectoryUser) -> bool:
    value = (user.account_control or "").strip()
    return value.isdigit() and bool(int(value) & ACCOUNTDISABLE)


def _clean_number(text: str | None) -> str | None:
    # The attribute holds the extension itself ("1042", or "10 42"); a full
    # phone number (+84 28 3822 1042) is not one, and guessing which digits
    # are the extension would give someone else's.
    if text is None:
        return None
    kept = text.strip().replace(" ", "").replace("-", "")
    return kept if EXTENSION_NUMBER.fullmatch(kept) else None


def _department(user: DirectoryUser, settings: LdapSettings, plan: Dialplan) -> str | None:
    value = (user.department or "").strip()
    if value in settings.departments:
        return settings.departments[value]
    if value in plan.departments:
        return value
    return settings.default_department


def _wanted(user: DirectoryUser, number: str, department: str) -> dict[str, str | None]:
    return {"name": (user.name or number).strip()[:100], "department": department,
            "email": user.email or None, "mobile": _mobile(user.mobile), "ldap_dn": user.dn}


def _mobile(text: str | None) -> str | None:
    if not text:
        return None
    kept = "".join(c for c in text.strip() if c.isdigit() or c == "+")
    return kept if 3 <= len(kept.lstrip("+")) <= 20 and "+" not in kept[1:] else None


def _current(extension: Extension) -> dict[str, str | None]:
    return {"name": extension.name, "department": extension.department, "email": extension.email,
            "mobile": extension.mobile, "ldap_dn": extension.ldap_dn}


def plan_sync(users: Iterable[DirectoryUser], plan: Dialplan, settings: LdapSettings,
              suspended: Iterable[str] = ()) -> SyncPlan:
    """The changes that bring ``plan`` in step with ``users``.

    ``suspended``: numbers of extensions suspended now (so a returning user
    is resumed and a missing one is not suspended twice).
    """
    already = set(suspended)
    changes: list[Change] = []
    skipped: list[Skipped] = []
    seen: dict[str, str] = {}
    members_wanted: list[tuple[DirectoryUser, str, str]] = []
    claimed: dict[tuple[str, str], str] = {}
    for user in sorted(users, key=lambda u: u.dn):
        number = _clean_number(user.extension)
        if number is None:
            skipped.append(Skipped(dn=user.dn, reason=f"no usable extension number ({user.extension!r})"))
            continue
        if number in seen:
            skipped.append(Skipped(dn=user.dn, reason=f"extension {number} is also {seen[number]}"))
            continue
        seen[number] = user.dn
        department = _department(user, settings, plan)
        if department is None or department not in plan.departments:
            skipped.append(Skipped(dn=user.dn, reason=f"department {user.department!r} maps to no department"))
            continue
        wanted = _wanted(user, number, department)
        existing = plan.extensions.get(number)
        disabled = is_disabled(user)
        if not disabled and user.short_numbers:
            members_wanted.append((user, number, str(wanted["name"])))
        if existing is None:
            if not disabled:  # a disabled account gets no new extension
                changes.append(Create(number=number, values={k: v for k, v in wanted.items() if v is not None}))
            continue
        current = _current(existing)
        differ = {k: (current[k], v) for k, v in wanted.items() if current[k] != v}
        if differ:
            changes.append(Update(number=number, changes=differ))
        if disabled and number not in already:
            changes.append(Suspend(number=number, reason="disabled"))
        elif not disabled and number in already and existing.ldap_dn is not None:
            changes.append(Resume(number=number))
    for user, number, name in members_wanted:
        _members_of(user, number, name, plan, settings, changes, skipped, claimed)
    for number, extension in plan.extensions.items():
        if extension.ldap_dn is not None and number not in seen and number not in already:
            changes.append(Suspend(number=number, reason="missing"))
    return SyncPlan(changes=tuple(changes), skipped=tuple(skipped))


def _members_of(user: DirectoryUser, number: str, name: str, plan: Dialplan, settings: LdapSettings,
                changes: list[Change], skipped: list[Skipped], claimed: dict[tuple[str, str], str]) -> None:
    """The member changes for one enabled user, in each mapped group."""
    for key in settings.groups:
        raw = user.short_numbers.get(key)
        group = plan.groups.get(key)
        if raw is None or group is None:
            continue
        short = raw.strip().replace(" ", "")
        if SHORT_NUMBER.fullmatch(short) is None:
            skipped.append(Skipped(dn=user.dn, reason=f"group {key}: short number {raw!r} is not 2 to 8 digits"))
            continue
        if (key, short) in claimed:
            other = claimed[key, short]
            skipped.append(Skipped(dn=user.dn, reason=f"group {key}: short number {short} is also {other}"))
            continue
        claimed[key, short] = user.dn
        if plan.extension(short) is not None:
            skipped.append(Skipped(dn=user.dn, reason=f"group {key}: short number {short} is an extension number"))
            continue
        existing = group.members.get(short)
        if existing is None:
            before = next((m.short for m in group.members.values() if m.extension == number), None)
            changes.append(SetMember(group=key, short=short, number=number, name=name, moved_from=before))
        elif existing.extension != number:
            holder = existing.name or existing.extension or existing.mobile
            skipped.append(Skipped(dn=user.dn, reason=f"group {key}: short number {short} is {holder}'s"))
        elif existing.name != name:
            changes.append(SetMember(group=key, short=short, number=number, name=name, old_name=existing.name))


def describe(change: Change) -> str:
    """One line for the dry run and the log; never a secret."""
    match change:
        case Create(number=number, values=values):
            return f"create {number}: " + ", ".join(f"{k}={v}" for k, v in values.items())
        case Update(number=number, changes=changes):
            return f"update {number}: " + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items())
        case Suspend(number=number, reason=reason):
            return f"suspend {number}: {reason} in the directory"
        case Resume(number=number):
            return f"resume {number}: back in the directory"
        case SetMember(group=group, short=short, number=number, name=name, old_name=old, moved_from=moved):
            if moved is not None:
                return f"member {group}/{short}: {name} (extension {number}), moved from {moved}"
            if old is not None:
                return f"member {group}/{short}: name {old!r} -> {name!r}"
            return f"member {group}/{short}: add {name} (extension {number})"
