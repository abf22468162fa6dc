"""Creating and changing extensions in the dialplan's files, safely.

Used by the HTTP API and the LDAP sync. The same way as ``pbx group``
(:mod:`pbx.routing.members_file`, whose helpers this reuses): each file is
edited as YAML round-trip, so comments, order and quoting elsewhere
survive; written to a temporary file and renamed over the old one; then the
whole plan is validated once, and every file is put back if the changes
made it invalid. An extension is changed in the file that defines it; a
new one goes where the ``extensions`` section is (the root file if none).
Several edits are applied as one batch, so a directory sync of hundreds of
users validates the plan once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from pbx.routing.dialplan import Dialplan
from pbx.routing.loader import read_dialplan
from pbx.routing.members_file import GroupAdminError, new_key as _new_key
from pbx.routing.plan_edit import key_in as _key_of
from pbx.routing.plan_edit import locked as _locked
from pbx.routing.plan_edit import round_trip_yaml as _yaml
from pbx.routing.plan_edit import write_atomically as _write_atomically


class ExtensionEditError(GroupAdminError):
    """The change was not made; the message (and problems) say why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtensionEdit:
    """Set (or, with None, remove) keys of one extension's entry."""

    number: str
    values: Mapping[str, object | None] = field(default_factory=dict)
    create: bool = False
    """True: the extension must not exist yet; False: it must."""


def _file_of(plan: Dialplan, root: Path, rule: str) -> Path:
    where = plan.place(rule)
    return root if where is None else Path(where.rsplit(":", 2)[0])


@contextmanager
def _all_locked(folders: Sequence[Path]) -> Iterator[None]:
    # Always in the same order, so two batches cannot wait on each other.
    with ExitStack() as stack:
        for folder in sorted(set(folders)):
            stack.enter_context(_locked(folder))
        yield


def edit_extensions(dialplan: Path, edits: Sequence[ExtensionEdit]) -> Dialplan:
    """Apply ``edits``; the plan as it is afterwards."""
    result = read_dialplan(dialplan)
    plan = result.dialplan
    if plan is None:
        raise ExtensionEditError(f"{dialplan} has errors; fix them first", result.errors)
    section_file = _file_of(plan, dialplan, "extensions") if plan.extensions else dialplan
    by_file: dict[Path, list[ExtensionEdit]] = {}
    for edit in edits:
        exists = edit.number in plan.extensions
        if edit.create and exists:
            raise ExtensionEditError(f"extension {edit.number} already exists")
        if not edit.create and not exists:
            raise ExtensionEditError(f"no extension {edit.number}")
        target = section_file if edit.create else _file_of(plan, dialplan, f"extensions.{edit.number}")
        by_file.setdefault(target, []).append(edit)
    if not by_file:
        return plan
    with _all_locked([path.parent for path in by_file]):
        old: dict[Path, str] = {}
        try:
            for path, file_edits in by_file.items():
                old[path] = path.read_text(encoding="utf-8")
                _write_atomically(path, _edited(path, old[path], file_edits))
            after = read_dialplan(dialplan)
        except BaseException:
            _restore(old)
            raise
        if after.dialplan is None:
            _restore(old)
            raise ExtensionEditError("the change would make the dialplan invalid; nothing was changed",
                                     after.errors)
        return after.dialplan


def _restore(old: Mapping[Path, str]) -> None:
    for path, text in old.items():
        _write_atomically(path, text)


def _edited(path: Path, text: str, edits: Sequence[ExtensionEdit]) -> str:
    data = _yaml().load(text)
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise ExtensionEditError(f"{path}: expected a mapping at the top")
    section = data.get("extensions")
    if section is None:
        section = data["extensions"] = CommentedMap()
    if not isinstance(section, CommentedMap):
        raise ExtensionEditError(f"{path}: extensions is not a mapping")
    for edit in edits:
        key = _key_of(section, edit.number)
        last = next(reversed(section), None) if key is None else None
        if key is None:
            key = _new_key(edit.number)
            section[key] = CommentedMap()
        entry = section[key]
        if not isinstance(entry, CommentedMap):
            raise ExtensionEditError(f"{path}: extension {edit.number} is not a mapping")
        for name, value in edit.values.items():
            if value is None:
                entry.pop(name, None)
            else:
                entry[name] = value
        if last is not None:
            _move_trailing_comment(section[last], entry)
    buffer = StringIO()
    _yaml().dump(data, buffer)
    return buffer.getvalue()


def _move_trailing_comment(before: object, after: CommentedMap) -> None:
    """Move the comment block that follows the section's last entry (in
    YAML's eyes it belongs to that entry's last value: the comment heading
    the next section) to the entry now last, so it stays above that section."""
    while isinstance(before, CommentedMap) and len(before):
        last = next(reversed(before))
        held = before.ca.items.get(last)
        if held is not None and len(held) > 2 and held[2] is not None:
            token, held[2] = held[2], None
            if len(after):
                after.ca.items.setdefault(next(reversed(after)), [None, None, None, None])[2] = token
            return
        before = before[last]
