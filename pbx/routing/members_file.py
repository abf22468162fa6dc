"""``pbx group add|remove``: change a short-number group's members file.

A group that keeps its members in a ``members_file`` is managed here rather
than by hand. The file is edited as YAML round-trip (comments, order and
quoting of the other members survive), written to a temporary file and
renamed over the old one, so a running server polling it never reads half a
file. The whole dialplan is then validated: if the change made it invalid
(a short number that collides with an extension, say), the old file is put
back and the problems are returned. A running server sees the new file on
its next poll or at once when signalled (``pbx reload``); a server polling
in between may see the invalid file, which it refuses and keeps its plan.

Two changes at once are serialised with a lock on the members file's
folder, so neither loses the other's member.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import StringIO
from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from pbx.routing.loader import Problem, read_dialplan
from pbx.routing.plan_edit import key_in as _key_in
from pbx.routing.plan_edit import locked as _locked
from pbx.routing.plan_edit import round_trip_yaml as _yaml
from pbx.routing.plan_edit import write_atomically as _write_atomically
from pbx.routing.short_numbers import Member

MEMBERS_FILE_HEADER = (
    "Members of short-number group {group!r}: short number -> person.\n"
    "Managed by `pbx group add|remove`; hand edits are fine too.\n"
)


class GroupAdminError(Exception):
    """The change was not made; the message (and problems) say why."""

    def __init__(self, message: str, problems: tuple[Problem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Change:
    group: str
    short: str
    members_file: Path
    action: str  # "added", "replaced" or "removed"


def _members_file(dialplan: Path, group: str) -> Path:
    result = read_dialplan(dialplan)
    if result.dialplan is None:
        raise GroupAdminError(f"{dialplan} has errors; fix them first", result.errors)
    groups = result.dialplan.groups
    if group not in groups:
        known = ", ".join(sorted(groups)) or "none"
        raise GroupAdminError(f"no short-number group {group!r} in {dialplan} (groups: {known})")
    members_file = groups[group].members_file
    if members_file is None:
        raise GroupAdminError(
            f"group {group!r} lists its members inline in the dialplan; give it a members_file "
            "to manage them with pbx group")
    return Path(members_file)


def _read(path: Path, group: str) -> tuple[str | None, CommentedMap]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        members = CommentedMap()
        members.yaml_set_start_comment(MEMBERS_FILE_HEADER.format(group=group))
        return None, members
    data = _yaml().load(text)
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise GroupAdminError(f"{path}: expected a mapping of short numbers to members")
    return text, data


def _commit(dialplan: Path, path: Path, old_text: str | None, data: CommentedMap) -> None:
    buffer = StringIO()
    _yaml().dump(data, buffer)
    _write_atomically(path, buffer.getvalue())
    result = read_dialplan(dialplan)
    if result.dialplan is None:
        if old_text is None:
            path.unlink(missing_ok=True)
        else:
            _write_atomically(path, old_text)
        raise GroupAdminError("the change would make the dialplan invalid; nothing was changed",
                              result.errors)


def new_key(short: str) -> object:
    # Written like the hand-written keys around it: 604 bare, 0604 quoted
    # (YAML would read a bare 0604 as a number); the loader reads both as text.
    return int(short) if not short.startswith("0") else short


def add_member(dialplan: Path, group: str, member: Member) -> Change:
    """Add ``member`` to ``group`` (or replace the member with its short number)."""
    path = _members_file(dialplan, group)
    if not path.parent.is_dir():
        raise GroupAdminError(f"folder {path.parent} of members file {path} does not exist")
    with _locked(path.parent):
        return _add(dialplan, group, member, path)


def _add(dialplan: Path, group: str, member: Member, path: Path) -> Change:
    old_text, data = _read(path, group)
    action = _put(data, member)
    _commit(dialplan, path, old_text, data)
    return Change(group, member.short, path, action)


def set_members(dialplan: Path, group: str, members: list[Member], moved: list[str]) -> list[Change]:
    """Add or replace ``members`` and take out the short numbers in
    ``moved`` (members that now have another one), in one write and one
    validation: how the directory sync keeps a group."""
    path = _members_file(dialplan, group)
    if not path.parent.is_dir():
        raise GroupAdminError(f"folder {path.parent} of members file {path} does not exist")
    with _locked(path.parent):
        old_text, data = _read(path, group)
        changes = []
        for short in moved:
            if (existing := _key_in(data, short)) is not None:
                del data[existing]
                changes.append(Change(group, short, path, "removed"))
        changes += [Change(group, member.short, path, _put(data, member)) for member in members]
        _commit(dialplan, path, old_text, data)
    return changes


def _put(data: CommentedMap, member: Member) -> str:
    entry = CommentedMap()
    if member.name:
        entry["name"] = member.name
    if member.extension is not None:
        entry["extension"] = member.extension
    if member.mobile is not None:
        entry["mobile"] = member.mobile
    if member.hunt_group is not None:
        entry["hunt_group"] = member.hunt_group
    if member.ring != "together":
        entry["ring"] = member.ring
        entry["desk_seconds"] = member.desk_seconds
    entry.fa.set_flow_style()
    existing = _key_in(data, member.short)
    if existing is not None:
        data[existing] = entry  # keep the key as it was written
        return "replaced"
    data[new_key(member.short)] = entry
    return "added"


def remove_member(dialplan: Path, group: str, short: str) -> Change:
    """Remove the member with short number ``short`` from ``group``'s members file."""
    path = _members_file(dialplan, group)
    if not path.parent.is_dir():
        raise GroupAdminError(f"group {group!r} has no member with short number {short!r} ({path} does not exist)")
    with _locked(path.parent):
        old_text, data = _read(path, group)
        existing = _key_in(data, short)
        if existing is None:
            raise GroupAdminError(f"group {group!r} has no member with short number {short!r} in {path}"
                                  + _inline_hint(dialplan, group, short))
        del data[existing]
        _commit(dialplan, path, old_text, data)
    return Change(group, short, path, "removed")


def _inline_hint(dialplan: Path, group: str, short: str) -> str:
    plan = read_dialplan(dialplan).dialplan
    if plan is None or short not in plan.groups[group].members:
        return ""
    where = plan.place(f"groups.{group}.members.{short}") or str(dialplan)
    return f"; it is written in the dialplan itself at {where}: remove it there"
