"""The loader's part for short-number groups (``groups:``): checks and model.

A group lists members inline (``members:``) and/or in a ``members_file``
that :mod:`pbx.routing.loader` reads like a dialplan file — every node with
its place — and puts under ``groups.<key>.file_members`` in the merged
data, so the checks here report problems in either place the same way.

Checks: members name known extensions (or a known hunt group, and then
nothing else); a short number is 2 to 8 digits,
given once per group, and means nothing else on the keypad (not an
extension, a feature code, nor a number any number plan gives an outside
class such as emergency); an extension is one member per group; patterns
of ``allow_outside`` parse. Warnings for settings that do nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from pbx.routing.classes import INTERNAL
from pbx.routing.loader_common import (DataPath, Merged, Place, Report, check_reference, entries_of,
                                       pattern_at, plan_entries, section_of, strings_in)
from pbx.routing.patterns import parse_pattern
from pbx.routing.short_numbers import DEFAULT_DESK_SECONDS, Member, RingPolicy, ShortNumberGroup

FILE_MEMBERS: Final = "file_members"
"""Where the loader puts a members file's content inside a group's data."""

SECTION_NOUNS: Final = {"groups": "group"}


def _members(entry: dict[str, Any], key: str) -> Iterator[tuple[DataPath, str, Any]]:
    """(path, short number, member data) of a group: inline first, then
    those from its members file."""
    for part in ("members", FILE_MEMBERS):
        members = entry.get(part)
        if isinstance(members, dict):
            for short, member in members.items():
                yield ("groups", key, part, short), short, member


def _outside_rows(plan: Merged, root: Place) -> list[tuple[Any, str]]:
    return [(located, call_class) for rows in plan_entries(plan, root, None).values()
            for located, call_class in rows if call_class != INTERNAL]


def check_groups(plan: Merged, root: Place, report: Report) -> None:
    extensions = section_of(plan, "extensions")
    hunt_groups = section_of(plan, "hunt_groups")
    outside = _outside_rows(plan, root)
    for key, entry in entries_of(plan, "groups"):
        group_path: DataPath = ("groups", key)
        owner = f"group {key!r}"
        if "members" not in entry and "members_file" not in entry:
            report(plan.key_place(group_path, root), f"{owner} has no members and no members_file", "warning")
        shorts: dict[str, DataPath] = {}
        numbers: dict[str, DataPath] = {}
        for path, short, member in _members(entry, key):
            where = plan.key_place(path, root)
            if short in shorts:
                report(where, f"short number {short!r} is already a member of {owner} at"
                       f" {plan.key_place(shorts[short], root)}")
                continue
            shorts[short] = path
            if not isinstance(member, dict) or path in plan.invalid:
                continue  # not a member at all, or its short number was refused: said once
            who = f"member {short!r} of {owner}"
            if "hunt_group" in member:
                check_reference(plan, (*path, "hunt_group"), hunt_groups, "hunt group", who, root, report)
                for person in ("extension", "mobile", "ring", "desk_seconds"):
                    if person in member:
                        report(plan.key_place((*path, person), root),
                               f"{who} is hunt group {member['hunt_group']!r}: it has no {person} of its own")
                continue
            if "extension" not in member and "mobile" not in member:
                report(where, f"{who} needs an extension, a mobile or a hunt_group")
            check_reference(plan, (*path, "extension"), extensions, "extension", who, root, report)
            extension = member.get("extension")
            if isinstance(extension, str) and plan.valid((*path, "extension")):
                if extension in numbers:
                    report(plan.value_place((*path, "extension"), root),
                           f"extension {extension!r} is already member {numbers[extension][-1]!r} of {owner} at"
                           f" {plan.key_place(numbers[extension], root)}")
                numbers.setdefault(extension, path)
            _check_mobile(plan, path, member, who, extensions, outside, root, report)
            ring = member.get("ring", "together")
            if "desk_seconds" in member and ring != "desk_first":
                report(plan.key_place((*path, "desk_seconds"), root),
                       f"{who}: desk_seconds applies only with ring: desk_first", "warning")
            if ring == "desk_first" and not ("extension" in member and "mobile" in member):
                report(plan.value_place((*path, "ring"), root),
                       f"{who}: desk_first needs both an extension and a mobile; only one rings", "warning")
        for index, text in strings_in(entry.get("allow_outside")):
            pattern_at(plan, (*group_path, "allow_outside", index), text, root, report)
        if "allow_outside" in entry and entry.get("in_group_only") is not True:
            report(plan.key_place((*group_path, "allow_outside"), root),
                   f"{owner}: allow_outside applies only with in_group_only: true", "warning")


def _check_mobile(plan: Merged, path: DataPath, member: dict[str, Any], who: str, extensions: dict[str, Any],
                  outside: list[tuple[Any, str]], root: Place, report: Report) -> None:
    mobile = member.get("mobile")
    if not isinstance(mobile, str) or not plan.valid((*path, "mobile")):
        return
    at = plan.value_place((*path, "mobile"), root)
    if mobile in extensions:
        report(at, f"{who}: mobile {mobile!r} is extension {mobile!r}; give it as 'extension'")
    elif plan.complete and not any(located.pattern.matches(mobile) for located, _ in outside):
        report(at, f"{who}: no number plan gives mobile {mobile!r} an outside class: its calls are refused",
               "warning")


def check_short_number_keypad(plan: Merged, root: Place, report: Report) -> None:
    """A short number, like an extension, must mean one thing on the keypad
    (see ``check_keypad`` in :mod:`pbx.routing.loader_routing`)."""
    extensions = section_of(plan, "extensions")
    features = section_of(plan, "feature_codes")
    outside = _outside_rows(plan, root)
    for key, entry in entries_of(plan, "groups"):
        for path, short, _ in _members(entry, key):
            if not plan.valid(path[:4]):
                continue
            what = f"short number {short!r} of group {key!r}"
            where = plan.key_place(path, root)
            if short in extensions:
                report(where, f"{what} is also extension {short!r} at {plan.key_place(('extensions', short), root)}")
                continue
            if short in features:
                report(where, f"{what} is also feature code {short!r} at"
                       f" {plan.key_place(('feature_codes', short), root)}")
                continue
            for located, call_class in outside:
                if located.pattern.matches(short):
                    report(where, f"{what} collides with {call_class} numbers {located.rule}"
                           f" ({located.pattern.text}) at {plan.value_place(located.path, root)}")
                    break


CHECKS: Final = (check_groups, check_short_number_keypad)


# ---------------------------------------------------------------- build


def build_groups(plan: Merged) -> dict[str, ShortNumberGroup]:
    """The groups from checked, valid data, in file order."""
    groups = {}
    for key, entry in entries_of(plan, "groups"):
        members = {short: _member(short, data) for _, short, data in _members(entry, key)}
        groups[key] = ShortNumberGroup(
            key=key,
            name=str(entry.get("name", "")),
            members=members,
            in_group_only=entry.get("in_group_only") is True,
            allow_outside=tuple(parse_pattern(str(text)) for text in entry.get("allow_outside", [])),
            members_file=plan.members_files.get(key),
        )
    return groups


def _member(short: str, data: dict[str, Any]) -> Member:
    ring: RingPolicy = "desk_first" if data.get("ring") == "desk_first" else "together"
    return Member(
        short=short,
        name=str(data.get("name", "")),
        extension=str(data["extension"]) if "extension" in data else None,
        mobile=str(data["mobile"]) if "mobile" in data else None,
        ring=ring,
        desk_seconds=int(data.get("desk_seconds", DEFAULT_DESK_SECONDS)),
        hunt_group=str(data["hunt_group"]) if "hunt_group" in data else None,
    )


def member_places(plan: Merged) -> list[tuple[str, Place]]:
    """``groups.<key>.members.<short>`` for members read from a members
    file, so explain and logs name them the same as inline ones."""
    places = []
    for key, entry in entries_of(plan, "groups"):
        for path, short, _ in _members(entry, key):
            if path[2] == FILE_MEMBERS:
                node = plan.places.get(path)
                if node is not None:
                    places.append((f"groups.{key}.members.{short}", node.key or node.value))
    return places
