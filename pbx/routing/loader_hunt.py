"""The loader's part for hunt groups (``hunt_groups:``): checks and model.

Checks, each reported at its place: members name known extensions (or give
an outside number, which needs the group's ``department``: whose rights
call it); a member is listed once per group; an overflow destination is
exactly one of extension, hunt group, number, IVR menu or announcement,
and names what exists (an announcement a shipped prompt or one in
``media.prompt_dir``, else a warning); a queue's times are sensible; a
schedule (``during``/``outside``) comes with an
``otherwise`` group and the other way round; overflow and ``otherwise``
never lead back to the group they start from (a call would go round for
ever); a group number means one thing on the keypad (not an extension, a
feature code, a short number nor an outside number); inbound numbers name
existing groups. Warnings for settings that do nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from pbx.routing.calendars import Schedule
from pbx.routing.classes import INTERNAL
from pbx.routing.hunt_groups import (CONDITIONS, DEFAULT_MAX_LENGTH, DEFAULT_MAX_WAIT, DEFAULT_MEMBER_SECONDS,
                                     DEFAULT_TOTAL_SECONDS, LOGIN_CODE, LOGOUT_CODE, Condition, Destination,
                                     HuntGroup, HuntMember, Overflow, QueueSettings, Strategy)
from pbx.routing.loader_common import (DataPath, Merged, Place, Report, check_reference, entries_of,
                                       plan_entries, section_of, suggest)
from pbx.routing.loader_ivr import check_prompt

SECTION_NOUNS: Final = {"hunt_groups": "hunt group"}
KINDS: Final = ("extension", "hunt_group", "number", "ivr", "announcement")


def _members(entry: dict[str, Any], number: str) -> Iterator[tuple[DataPath, dict[str, Any]]]:
    """(path, member as a mapping) of each member; a bare extension number
    is ``{extension: ...}``."""
    members = entry.get("members")
    if not isinstance(members, list):
        return
    for index, item in enumerate(members):
        path: DataPath = ("hunt_groups", number, "members", index)
        if isinstance(item, dict):
            yield path, item
        elif isinstance(item, str | int) and not isinstance(item, bool):
            yield path, {"extension": str(item)}


def _destinations(entry: dict[str, Any], number: str) -> Iterator[tuple[DataPath, str, dict[str, Any]]]:
    overflow = entry.get("overflow")
    if not isinstance(overflow, dict):
        return
    for condition in ("default", *CONDITIONS):
        destination = overflow.get(condition)
        if isinstance(destination, dict):
            yield ("hunt_groups", number, "overflow", condition), condition, destination


def check_hunt_groups(plan: Merged, root: Place, report: Report) -> None:
    extensions = section_of(plan, "extensions")
    groups = section_of(plan, "hunt_groups")
    schedules = section_of(plan, "schedules")
    for number, entry in entries_of(plan, "hunt_groups"):
        group_path: DataPath = ("hunt_groups", number)
        owner = f"hunt group {number!r}"
        seen: dict[str, DataPath] = {}
        outside_members = False
        for path, member in _members(entry, number):
            if not plan.valid(path):
                continue
            where = plan.value_place(path, root)
            kinds = [kind for kind in ("extension", "number") if kind in member]
            if len(kinds) != 1:
                report(where, f"{owner}: a member gives 'extension' or 'number', exactly one")
                continue
            key = str(member[kinds[0]])
            if key in seen:
                report(where, f"{owner}: member {key!r} is already listed at {plan.value_place(seen[key], root)}")
                continue
            seen[key] = path
            if kinds[0] == "extension":
                if key not in extensions and plan.complete:
                    report(where, f"{owner} names unknown extension {key!r}" + suggest(key, extensions))
            else:
                outside_members = True
                if key in extensions:
                    report(where, f"{owner}: number {key!r} is extension {key!r}; give it as 'extension'")
        needs_rights = outside_members or any("number" in d for _, _, d in _destinations(entry, number))
        if needs_rights and "department" not in entry:
            report(plan.key_place(group_path, root), f"{owner} calls outside numbers: give it a 'department'"
                   " (whose number plan, caller ID and class of service they are called with)")
        check_reference(plan, (*group_path, "department"), section_of(plan, "departments"), "department", owner,
                        root, report)
        check_reference(plan, (*group_path, "class_of_service"), section_of(plan, "classes_of_service"),
                        "class of service", owner, root, report)
        for path, condition, destination in _destinations(entry, number):
            _check_destination(plan, path, f"{owner}: overflow {condition}", destination, number, extensions,
                               groups, root, report)
        _check_queue(plan, group_path, entry, owner, root, report)
        given = [key for key in ("during", "outside") if key in entry]
        for key in given:
            check_reference(plan, (*group_path, key), schedules, "schedule", owner, root, report)
        if len(given) > 1:
            report(plan.key_place((*group_path, "outside"), root), f"{owner}: give 'during' or 'outside', not both")
        if given and "otherwise" not in entry:
            report(plan.key_place((*group_path, given[0]), root),
                   f"{owner}: '{given[0]}' needs an 'otherwise' group for the rest of the time")
        if "otherwise" in entry:
            if not given:
                report(plan.key_place((*group_path, "otherwise"), root),
                       f"{owner}: 'otherwise' needs 'during' or 'outside' (a schedule)")
            check_reference(plan, (*group_path, "otherwise"), groups, "hunt group", owner, root, report)
        _check_times(plan, group_path, entry, owner, root, report)
    _check_cycles(plan, root, report)
    _check_inbound(plan, groups, root, report)


def _check_destination(plan: Merged, path: DataPath, owner: str, destination: dict[str, Any], number: str,
                       extensions: dict[str, Any], groups: dict[str, Any], root: Place, report: Report) -> None:
    where = plan.value_place(path, root)
    kinds = [kind for kind in KINDS if kind in destination]
    if len(kinds) != 1:
        report(where, f"{owner}: give 'extension', 'hunt_group', 'number', 'ivr' or 'announcement', exactly one")
        return
    check_reference(plan, (*path, "hunt_group"), groups, "hunt group", owner, root, report)
    check_reference(plan, (*path, "ivr"), section_of(plan, "ivr_menus"), "IVR menu", owner, root, report)
    check_prompt(plan, (*path, "announcement"), owner, root, report)
    target = destination.get("extension")
    if target is not None and str(target) not in extensions and plan.complete:
        report(plan.value_place((*path, "extension"), root),
               f"{owner} names unknown extension {str(target)!r}" + suggest(str(target), extensions))
    if destination.get("hunt_group") == number:
        report(plan.value_place((*path, "hunt_group"), root), f"{owner} overflows to the group itself")


def _check_queue(plan: Merged, path: DataPath, entry: dict[str, Any], owner: str, root: Place,
                 report: Report) -> None:
    queue = entry.get("queue")
    if not isinstance(queue, dict) or not plan.valid((*path, "queue")):
        return
    conditions = queue.get("conditions", ["busy"])
    if isinstance(conditions, list) and len(set(conditions)) != len(conditions):
        report(plan.value_place((*path, "queue", "conditions"), root), f"{owner}: a queue condition is listed twice")
    every = queue.get("announce_position_every", 0)
    wait = queue.get("max_wait", DEFAULT_MAX_WAIT)
    if isinstance(every, int) and isinstance(wait, int) and every >= wait and "announce_position_every" in queue:
        report(plan.value_place((*path, "queue", "announce_position_every"), root),
               f"{owner}: announce_position_every ({every}) is not below max_wait ({wait}): the position is"
               " said only once", "warning")
    if "busy" in conditions and entry.get("skip_busy") is not True:
        report(plan.key_place((*path, "queue"), root),
               f"{owner}: a queue on 'busy' without skip_busy: true queues only when every member answers busy"
               " (members on a call are rung, call waiting)", "warning")


def _check_times(plan: Merged, path: DataPath, entry: dict[str, Any], owner: str, root: Place,
                 report: Report) -> None:
    member_seconds = entry.get("member_seconds", DEFAULT_MEMBER_SECONDS)
    total = entry.get("total_seconds", DEFAULT_TOTAL_SECONDS)
    if not isinstance(member_seconds, int) or not isinstance(total, int):
        return
    if entry.get("strategy", "linear") != "ring_all" and member_seconds >= total and "member_seconds" in entry:
        report(plan.value_place((*path, "member_seconds"), root),
               f"{owner}: member_seconds ({member_seconds}) is not below total_seconds ({total}):"
               " only the first member will ever ring", "warning")


def _edges(entry: dict[str, Any], number: str) -> list[tuple[DataPath, str]]:
    """Where a call to the group may be sent on: overflow groups and the
    ``otherwise`` group, with the path that says so."""
    out = [(path, str(destination["hunt_group"])) for path, _, destination in _destinations(entry, number)
           if "hunt_group" in destination]
    if "otherwise" in entry:
        out.append((("hunt_groups", number, "otherwise"), str(entry["otherwise"])))
    return out


def _check_cycles(plan: Merged, root: Place, report: Report) -> None:
    graph = {number: _edges(entry, number) for number, entry in entries_of(plan, "hunt_groups")}
    reported: set[str] = set()
    for start in graph:
        # Depth-first from each group; a path that reaches `start` again is a loop.
        stack: list[tuple[str, list[str], DataPath | None]] = [(start, [start], None)]
        visited: set[str] = set()
        while stack:
            node, trail, first = stack.pop()
            for path, following in graph.get(node, []):
                origin = first or path
                if following == start and start not in reported:
                    reported.update(trail)
                    report(plan.value_place(origin, root), f"hunt group {start!r} sends calls round in a loop: "
                           + " -> ".join([*trail, start]))
                elif following not in visited and following in graph:
                    visited.add(following)
                    stack.append((following, [*trail, following], origin))


def _check_inbound(plan: Merged, groups: dict[str, Any], root: Place, report: Report) -> None:
    for did, entry in entries_of(plan, "inbound"):
        path: DataPath = ("inbound", did)
        current: Any = entry
        while isinstance(current, dict):
            check_reference(plan, (*path, "hunt_group"), groups, "hunt group", f"inbound number {did!r}", root,
                            report)
            current = current.get("otherwise")
            path = (*path, "otherwise")


def check_hunt_keypad(plan: Merged, root: Place, report: Report) -> None:
    """A group number, like an extension, must mean one thing on the keypad;
    the agent codes must not be taken by ``feature_codes``."""
    extensions = section_of(plan, "extensions")
    features = section_of(plan, "feature_codes")
    shorts = {str(short): key for key, entry in entries_of(plan, "groups")
              for part in ("members", "file_members") if isinstance(entry.get(part), dict)
              for short in entry[part]}
    outside = [(located, call_class) for rows in plan_entries(plan, root, None).values()
               for located, call_class in rows if call_class != INTERNAL]
    for number in section_of(plan, "hunt_groups"):
        where = plan.key_place(("hunt_groups", number), root)
        what = f"hunt group number {number!r}"
        if number in extensions:
            report(where, f"{what} is also extension {number!r} at {plan.key_place(('extensions', number), root)}")
        elif number in features:
            report(where, f"{what} is also feature code {number!r}")
        elif number in shorts:
            report(where, f"{what} is also a short number of group {shorts[number]!r}")
        else:
            for located, call_class in outside:
                if located.pattern.matches(number):
                    report(where, f"{what} collides with {call_class} numbers {located.rule}"
                           f" ({located.pattern.text}) at {plan.value_place(located.path, root)}")
                    break
    if section_of(plan, "hunt_groups"):
        for code in features:
            if code.startswith((LOGIN_CODE, LOGOUT_CODE)):
                report(plan.key_place(("feature_codes", code), root),
                       f"feature code {code!r} is taken by the hunt group agent codes ({LOGIN_CODE}, {LOGOUT_CODE})")


CHECKS: Final = (check_hunt_groups, check_hunt_keypad)


# ---------------------------------------------------------------- build


def build_hunt_groups(plan: Merged, schedules: dict[str, Schedule]) -> dict[str, HuntGroup]:
    """The hunt groups from checked, valid data, in file order."""
    built = {}
    for number, entry in entries_of(plan, "hunt_groups"):
        members = tuple(_member(data) for _, data in _members(entry, number))
        schedule_name = entry.get("outside", entry.get("during"))
        strategy: Strategy = entry.get("strategy", "linear")
        built[number] = HuntGroup(
            number=number,
            name=str(entry["name"]),
            strategy=strategy,
            members=members,
            member_seconds=int(entry.get("member_seconds", DEFAULT_MEMBER_SECONDS)),
            total_seconds=int(entry.get("total_seconds", DEFAULT_TOTAL_SECONDS)),
            skip_busy=entry.get("skip_busy") is True,
            department=str(entry["department"]) if "department" in entry else None,
            class_of_service=str(entry["class_of_service"]) if "class_of_service" in entry else None,
            overflow=_overflow(entry, number),
            schedule=schedules[str(schedule_name)] if schedule_name is not None else None,
            outside="outside" in entry,
            otherwise=str(entry["otherwise"]) if "otherwise" in entry else None,
            queue=_queue(entry.get("queue")),
        )
    return built


def _queue(data: Any) -> QueueSettings | None:
    if not isinstance(data, dict):
        return None
    conditions: tuple[Condition, ...] = tuple(dict.fromkeys(data.get("conditions", ["busy"])))
    return QueueSettings(max_wait=int(data.get("max_wait", DEFAULT_MAX_WAIT)),
                         max_length=int(data.get("max_length", DEFAULT_MAX_LENGTH)),
                         announce_position_every=int(data.get("announce_position_every", 0)),
                         conditions=conditions)


def _member(data: dict[str, Any]) -> HuntMember:
    return HuntMember(
        extension=str(data["extension"]) if "extension" in data else None,
        number=str(data["number"]) if "number" in data else None,
        tier=int(data.get("tier", 1)),
        weight=int(data.get("weight", 1)),
        ring_seconds=int(data["ring_seconds"]) if "ring_seconds" in data else None,
    )


def _destination(data: dict[str, Any]) -> Destination:
    return Destination(**{kind: str(data[kind]) for kind in KINDS if kind in data})


def _overflow(entry: dict[str, Any], number: str) -> Overflow:
    given = {condition: _destination(data) for _, condition, data in _destinations(entry, number)}
    default = given.pop("default", None)
    chosen: dict[Condition, Destination | None] = {condition: given.get(condition, default)
                                                   for condition in CONDITIONS}
    return Overflow(**chosen)
