"""The loader's part for auto attendants (``ivr_menus:``) and ``media:``:
checks with positions, then the model (:mod:`pbx.routing.ivr`).

Checks: a menu's internal number means nothing else on the keypad (not an
extension, a feature code, a short number, another menu or an outside
number); ``hours`` and ``closed`` go together and name a schedule and a
menu, and closed menus do not lead back to where they started; every
destination names something that exists; an outside number needs the
menu's own ``class_of_service`` and ``department`` (a menu has no rights
unless given some: callers from a trunk must not be able to dial out
through it); a greeting that no shipped phrase or the admin's prompt
directory provides is a warning; the RTP port range holds a pair.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from pbx.ivr.phrases import PHRASES
from pbx.routing.calendars import Schedule
from pbx.routing.ivr import HANGUP, Destination, IvrMenu, MediaSettings
from pbx.routing.loader_common import (DataPath, Keypad, Merged, Place, Report, check_reference, entries_of,
                                       section_of, suggest, value_at)

SECTION_NOUNS: Final = {"ivr_menus": "menu"}
_KINDS: Final = ("extension", "member", "hunt_group", "menu", "number", "hangup")


def _destinations(key: str, entry: dict[str, Any]) -> Iterator[tuple[DataPath, dict[str, Any]]]:
    options = entry.get("options")
    if isinstance(options, dict):
        for keys, target in options.items():
            if isinstance(target, dict):
                yield ("ivr_menus", key, "options", keys), target
    fallback = entry.get("fallback")
    if isinstance(fallback, dict):
        yield ("ivr_menus", key, "fallback"), fallback


def check_menus(plan: Merged, root: Place, report: Report) -> None:
    menus = section_of(plan, "ivr_menus")
    schedules = section_of(plan, "schedules")
    extensions = section_of(plan, "extensions")
    for key, entry in entries_of(plan, "ivr_menus"):
        path: DataPath = ("ivr_menus", key)
        owner = f"menu {key!r}"
        check_reference(plan, (*path, "hours"), schedules, "schedule", owner, root, report)
        check_reference(plan, (*path, "closed"), menus, "menu", owner, root, report)
        check_reference(plan, (*path, "class_of_service"), section_of(plan, "classes_of_service"),
                        "class of service", owner, root, report)
        check_reference(plan, (*path, "department"), section_of(plan, "departments"), "department", owner, root,
                        report)
        if ("hours" in entry) != ("closed" in entry):
            given = "hours" if "hours" in entry else "closed"
            report(plan.key_place((*path, given), root),
                   f"{owner}: 'hours' (a schedule) and 'closed' (the menu for closed hours) go together")
        if entry.get("closed") == key:
            report(plan.value_place((*path, "closed"), root), f"{owner}: the closed-hours menu must be another menu")
        elif _closed_loop(menus, key):
            report(plan.value_place((*path, "closed"), root), f"{owner}: its closed-hours menus lead back to it")
        for where, target in _destinations(key, entry):
            _check_destination(plan, where, target, entry, owner, extensions, menus, root, report)
        check_prompt(plan, (*path, "greeting"), owner, root, report)


def check_prompt(plan: Merged, path: DataPath, owner: str, root: Place, report: Report) -> None:
    """Warn when the prompt named at ``path`` neither ships nor is in the
    administrator's ``media.prompt_dir``."""
    name = value_at(plan, path)
    if isinstance(name, str) and plan.valid(path) and name not in PHRASES and not _own_prompt(plan, name):
        report(plan.value_place(path, root),
               f"{owner}: no prompt {name!r} ships with the PBX; put your recording in media.prompt_dir"
               f" (<dir>/<language>/{name}.wav)" + suggest(name, PHRASES), "warning")


def _closed_loop(menus: dict[str, Any], start: str) -> bool:
    seen = {start}
    current = menus.get(start)
    while isinstance(current, dict) and isinstance(current.get("closed"), str):
        following = str(current["closed"])
        if following in seen:
            return following == start
        seen.add(following)
        current = menus.get(following)
    return False


def _own_prompt(plan: Merged, name: str) -> bool:
    directory = value_at(plan, ("media", "prompt_dir"))
    if not isinstance(directory, str):
        return False
    return any(Path(str(directory)).glob(f"*/{name}.wav"))


def _check_destination(plan: Merged, where: DataPath, target: dict[str, Any], entry: dict[str, Any], owner: str,
                       extensions: dict[str, Any], menus: dict[str, Any], root: Place, report: Report) -> None:
    if not plan.valid(where):
        return
    kind = next((k for k in _KINDS if k in target), None)
    what = f"{owner} option {where[-1]!r}" if where[2] == "options" else f"{owner} fallback"
    if kind == "extension":
        check_reference(plan, (*where, "extension"), extensions, "extension", what, root, report)
    elif kind == "menu":
        check_reference(plan, (*where, "menu"), menus, "menu", what, root, report)
    elif kind == "hunt_group":
        check_reference(plan, (*where, "hunt_group"), section_of(plan, "hunt_groups"), "hunt group", what, root,
                        report)
    elif kind == "member":
        text = target["member"]
        group, _, short = str(text).partition("/")
        found = section_of(plan, "groups").get(group)
        members = {str(k) for part in ("members", "file_members")
                   for k in ((found or {}).get(part) or {})} if isinstance(found, dict) else set()
        if plan.complete and short not in members:
            report(plan.value_place((*where, "member"), root), f"{what} names no member {text!r}")
    elif kind == "number" and ("class_of_service" not in entry or "department" not in entry):
        report(plan.value_place((*where, "number"), root),
               f"{what}: an outside number needs the menu's class_of_service (its rights) and department"
               " (its number plan and routes); a menu has no rights of its own")


def check_menu_numbers(plan: Merged, root: Place, report: Report) -> None:
    """A menu's number, like an extension, must mean one thing on the keypad."""
    keypad = Keypad(plan, root)
    numbers: dict[str, str] = {}
    for key, entry in entries_of(plan, "ivr_menus"):
        number = entry.get("number")
        path: DataPath = ("ivr_menus", key, "number")
        if not isinstance(number, str) or not plan.valid(path):
            continue
        what = f"number {number!r} of menu {key!r}"
        clash = f"is already menu {numbers[number]!r}'s number" if number in numbers else keypad.clash(number)
        if clash is not None:
            report(plan.value_place(path, root), f"{what} {clash}")
        numbers.setdefault(number, key)


def check_media(plan: Merged, root: Place, report: Report) -> None:
    ports = value_at(plan, ("media", "rtp_ports"))
    if isinstance(ports, str) and plan.valid(("media", "rtp_ports")):
        first, _, last = ports.partition("-")
        low, high = int(first), int(last)
        if not 1024 <= low < high <= 65535 or high - (low + low % 2) < 1:
            report(plan.value_place(("media", "rtp_ports"), root),
                   f"rtp_ports {ports!r}: FIRST must be below LAST, within 1024-65535, with room for an"
                   " even RTP port and the RTCP port above it")
    directory = value_at(plan, ("media", "prompt_dir"))
    if isinstance(directory, str) and plan.valid(("media", "prompt_dir")) and not Path(directory).is_dir():
        report(plan.value_place(("media", "prompt_dir"), root),
               f"prompt_dir {directory!r} is not a directory (relative paths are from where the PBX runs)",
               "warning")
    music_paths: list[DataPath] = [("media", "music_on_hold")]
    music_paths += [("departments", key, "music_on_hold") for key, _ in entries_of(plan, "departments")]
    for path in music_paths:
        music = value_at(plan, path)
        if isinstance(music, str) and plan.valid(path) and not Path(music).is_file():
            report(plan.value_place(path, root), f"music_on_hold {music!r} is not a file (relative paths are from"
                   " where the PBX runs); the shipped music plays instead", "warning")


CHECKS: Final = (check_menus, check_menu_numbers, check_media)


# ---------------------------------------------------------------- build


def build_media(plan: Merged) -> MediaSettings:
    data = section_of(plan, "media")
    fields: dict[str, Any] = {}
    if "rtp_ports" in data:
        first, _, last = str(data["rtp_ports"]).partition("-")
        fields["rtp_first"], fields["rtp_last"] = int(first), int(last)
    for key in ("language", "tones", "prompt_dir", "music_on_hold"):
        if key in data:
            fields[key] = str(data[key])
    if "announce_refusals" in data:
        fields["announce_refusals"] = data["announce_refusals"] is True
    return MediaSettings(**fields)


def _destination(target: dict[str, Any] | None) -> Destination:
    for kind in ("extension", "member", "hunt_group", "menu", "number"):
        if target and kind in target:
            value = str(target[kind])
            match kind:
                case "extension":
                    return Destination("extension", value)
                case "member":
                    return Destination("member", value)
                case "hunt_group":
                    return Destination("hunt_group", value)
                case "menu":
                    return Destination("menu", value)
                case _:
                    return Destination("number", value)
    return HANGUP


def build_menus(plan: Merged, schedules: dict[str, Schedule]) -> dict[str, IvrMenu]:
    menus = {}
    for key, entry in entries_of(plan, "ivr_menus"):
        options = entry.get("options") or {}
        fields: dict[str, Any] = {name: float(entry[name]) for name in ("timeout", "digit_timeout") if name in entry}
        fields.update({name: str(entry[name]) for name in ("number", "greeting", "language", "closed",
                                                            "class_of_service", "department") if name in entry})
        if "retries" in entry:
            fields["retries"] = int(entry["retries"])
        menus[key] = IvrMenu(
            key=key,
            options={str(keys): _destination(target) for keys, target in options.items()},
            dial_by_extension=entry.get("dial_by_extension") is True,
            fallback=_destination(entry.get("fallback")),
            hours=schedules[str(entry["hours"])] if "hours" in entry else None,
            **fields,
        )
    return menus
