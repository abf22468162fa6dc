"""The loader's part for the routing sections: their checks and their model.

:mod:`pbx.routing.loader` reads and merges the files and validates each
against ``schema.json``; this module does what needs more than one node —
references between sections, patterns, dates and time zones, numbers that
collide on the keypad, rules that can never match — and then builds the
routing part of the :class:`~pbx.routing.dialplan.Dialplan`.

Every check tolerates data the schema already refused (it skips it), so
one mistake gives one message. Errors stop loading; warnings do not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import functools
import zoneinfo
from collections.abc import Callable, Iterable
from typing import Any, Final

from pbx.routing.calendars import (
    Calendar,
    DateSpan,
    Schedule,
    WeeklySlot,
    YearlySpan,
    parse_days,
    parse_month_day,
    parse_span,
    parse_time,
    public_holidays,
)
from pbx.routing.classes import (BUILTIN_CLASSES, EMERGENCY, INTERNAL, LOCAL, RESERVED_CLASSES, NumberPlan,
                                 NumberPlanEntry)
from pbx.routing.classes_of_service import ClassOfService, NumberList, OutsideCallLimits, TimedRule
from pbx.routing.loader_common import (DataPath, Located, Merged, Place, Report, check_reference, dotted,
                                       entries_of, pattern_at, plan_entries, plan_table, section_of, strings_in,
                                       suggest, value_at)
from pbx.routing.numbering import Numbering, NotE164, e164_images, list_entry
from pbx.routing.patterns import Pattern, PatternError, parse_pattern
from pbx.routing.routes import InboundTarget, Route
from pbx.routing.trunk_config import Gateway, NumberRewrite, Trunk

SECTION_NOUNS: Final = {
    "number_plans": "number plan",
    "number_lists": "number list",
    "calendars": "calendar",
    "schedules": "schedule",
    "classes_of_service": "class of service",
    "trunks": "trunk",
    "inbound": "inbound number",
    "feature_codes": "feature code",
    "call_classes": "call class",
}
"""Mapping sections of named entries, and what one entry is called."""

_SAMPLE_YEAR: Final = 2026


def _items(plan: Merged, key: str) -> list[Any]:
    value = plan.data.get(key)
    return value if isinstance(value, list) else []


def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _check_zone(plan: Merged, path: DataPath, root: Place, report: Report) -> None:
    name = value_at(plan, path)
    if isinstance(name, str) and plan.valid(path) and _zone(name) is None:
        report(plan.value_place(path, root), f"unknown time zone {name!r}" + suggest(name, _zone_names())
               + " (use an IANA name such as Asia/Ho_Chi_Minh or Asia/Taipei)")


def _references(plan: Merged, path: DataPath, known: Iterable[str], what: str, owner: str,
                root: Place, report: Report) -> None:
    for index, _ in strings_in(value_at(plan, path)):
        check_reference(plan, (*path, index), known, what, owner, root, report)


def _where(plan: Merged, path: DataPath, root: Place) -> str:
    return str(plan.value_place(path, root))


# ---------------------------------------------------------------- checks


def check_timezones(plan: Merged, root: Place, report: Report) -> None:
    _check_zone(plan, ("timezone",), root, report)
    for name, _ in entries_of(plan, "schedules"):
        _check_zone(plan, ("schedules", name, "timezone"), root, report)


def known_classes(plan: Merged) -> set[str]:
    return set(BUILTIN_CLASSES) | {name for name in section_of(plan, "call_classes")}


def check_call_classes(plan: Merged, root: Place, report: Report) -> None:
    for name in section_of(plan, "call_classes"):
        if name in BUILTIN_CLASSES or name in RESERVED_CLASSES:
            kind = "built in" if name in BUILTIN_CLASSES else "reserved"
            report(plan.key_place(("call_classes", name), root), f"call class {name!r} is {kind}; choose another name")


def check_number_plans(plan: Merged, root: Place, report: Report) -> None:
    classes = known_classes(plan)
    tables = section_of(plan, "number_plans")
    for name, rows in plan_entries(plan, root, report).items():
        for index, (located, _) in enumerate(rows):
            for earlier, _ in rows[:index]:
                if earlier.pattern.covers(located.pattern):
                    report(plan.value_place(located.path, root),
                           f"this entry can never match: every number it matches is taken first by"
                           f" {earlier.rule} ({earlier.pattern.text}) at"
                           f" {_where(plan, earlier.path, root)}", "warning")
                    break
        where, entries = plan_table(plan, name)
        for index, entry in enumerate(entries):
            if isinstance(entry, dict):
                check_reference(plan, (*where, index, "class"), classes, "call class",
                           f"number plan {name!r}", root, report)
    check_reference(plan, ("number_plan",), tables, "number plan", "'number_plan'", root, report)
    for key, _ in entries_of(plan, "departments"):
        check_reference(plan, ("departments", key, "number_plan"), tables, "number plan", f"department {key!r}",
                   root, report)
    if len(tables) > 1 and "number_plan" not in plan.data and plan.complete:
        for key, department in entries_of(plan, "departments"):
            if "number_plan" not in department:
                report(plan.key_place(("departments", key), root),
                       f"department {key!r} names no number_plan and there is no default 'number_plan'"
                       f" to choose among {', '.join(sorted(tables))}")


def numbering_of(entry: object) -> Numbering | None:
    """The country facts of a number plan written as a mapping, or None
    (a bare list, or facts the schema refused)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("country_code"), str):
        return None
    prefixes = entry.get("international_prefixes", [])
    try:
        return Numbering(country_code=entry["country_code"], national_prefix=str(entry.get("national_prefix", "")),
                         international_prefixes=tuple(str(p) for p in prefixes if isinstance(p, str)),
                         area_code=str(entry.get("area_code", "")))
    except ValueError:
        return None


def check_number_lists(plan: Merged, root: Place, report: Report) -> None:
    """List entries are E.164 patterns: the old dialled form is an error
    (with the E.164 spelling under the default plan, when there is one);
    an entry no number plan can produce is a warning."""
    lists = section_of(plan, "number_lists")
    images = _e164_images(plan, root)
    default = _default_numbering(plan)
    for name, items in lists.items():
        for index, text in strings_in(items):
            path: DataPath = ("number_lists", name, index)
            if not plan.valid(path):
                continue
            at = plan.value_place(path, root)
            try:
                pattern = list_entry(text)
            except NotE164 as error:
                hint = _e164_spelling(text, default)
                report(at, f"number list entry {text!r} is not in E.164: {error.message};"
                       + (f" write it as {hint!r}" if hint else " write it with + and the country code (+53 for Cuba)"))
                continue
            except PatternError as error:
                report(at, f"pattern {text!r}: {error.message} (character {error.offset + 1})")
                continue
            if images is not None and plan.complete and not any(image.overlaps(pattern) is not False
                                                                 for image in images):
                report(at, f"no number plan can produce list entry {text!r}: no number a caller may dial has this"
                       " E.164 form", "warning")
    _references(plan, ("blacklist",), lists, "number list", "'blacklist'", root, report)
    _lists_need_facts(plan, root, report)


def _outside_rows(plan: Merged, root: Place) -> dict[str, list[tuple[Located, str]]]:
    """Entries of each plan that are neither internal nor emergency: the
    numbers that get an E.164 form."""
    return {name: [(located, call_class) for located, call_class in rows if call_class not in (INTERNAL, EMERGENCY)]
            for name, rows in plan_entries(plan, root, None).items()}


def _e164_images(plan: Merged, root: Place) -> list[Pattern] | None:
    """Patterns covering every E.164 number the plans can make; None when
    that cannot be known (a plan without country facts, a regex entry)."""
    tables = section_of(plan, "number_plans")
    images: list[Pattern] = []
    for name, rows in _outside_rows(plan, root).items():
        numbering = numbering_of(tables.get(name))
        for located, call_class in rows:
            made = e164_images(located.pattern, numbering, local=call_class == LOCAL) if numbering else None
            if made is None:
                return None
            images.extend(made)
    return images


def _default_numbering(plan: Merged) -> Numbering | None:
    tables = section_of(plan, "number_plans")
    key = plan.data.get("number_plan")
    if not isinstance(key, str):
        key = next(iter(tables)) if len(tables) == 1 else None
    return numbering_of(tables.get(key)) if key is not None else None


def _e164_spelling(text: str, numbering: Numbering | None) -> str | None:
    """An entry written as dialled, spelt in E.164 by the default plan's
    facts, if that gives one pattern."""
    if numbering is None:
        return None
    try:
        made = e164_images(parse_pattern(text), numbering)
    except PatternError:
        return None
    return made[0].text if made is not None and len(made) == 1 else None


def _lists_need_facts(plan: Merged, root: Place, report: Report) -> None:
    """Warn about plans whose numbers lists cannot see in E.164."""
    used = bool(strings_in(plan.data.get("blacklist"))) or any(
        strings_in(entry.get(key)) for _, entry in entries_of(plan, "classes_of_service")
        for key in ("blacklist", "whitelist"))
    if not used or not plan.complete:
        return
    tables = section_of(plan, "number_plans")
    for name, rows in _outside_rows(plan, root).items():
        if rows and numbering_of(tables.get(name)) is None and plan.valid(("number_plans", name)):
            report(plan.key_place(("number_plans", name), root),
                   f"number plan {name!r} has no country_code: lists see its numbers in E.164 only where"
                   " their trunk is sent E.164, and black lists refuse the rest (unverifiable_number)",
                   "warning")


def check_calendars(plan: Merged, root: Place, report: Report) -> None:
    for name, entry in entries_of(plan, "calendars"):
        path: DataPath = ("calendars", name)
        country = entry.get("public_holidays")
        if isinstance(country, str) and plan.valid((*path, "public_holidays")):
            subdivision = entry.get("subdivision")
            try:
                public_holidays(country, subdivision if isinstance(subdivision, str) else None, _SAMPLE_YEAR)
            except NotImplementedError:
                where = (*path, "subdivision") if isinstance(subdivision, str) else (*path, "public_holidays")
                shown = f"{country}/{subdivision}" if isinstance(subdivision, str) else country
                report(plan.value_place(where, root),
                       f"the holidays package has no public holidays for {shown!r}")
        elif "subdivision" in entry:
            report(plan.key_place((*path, "subdivision"), root), "'subdivision' needs 'public_holidays'")
        for key in ("dates", "annual", "lunar"):
            for index, text in strings_in(entry.get(key)):
                problem = _span_problem(key, text)
                if problem is not None:
                    report(plan.value_place((*path, key, index), root), f"calendar {name!r}: {problem}")


def _span_problem(kind: str, text: str) -> str | None:
    try:
        _parse_calendar_span(kind, text)
    except ValueError as error:
        return str(error)
    return None


def _parse_calendar_span(kind: str, text: str) -> DateSpan | YearlySpan:
    first, last = parse_span(text)
    if kind == "dates":
        try:
            start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        except ValueError:
            raise ValueError(f"{text!r} must be YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD") from None
        if end < start:
            raise ValueError(f"{text!r} ends before it starts")
        return DateSpan(start, end)
    lunar = kind == "lunar"
    return YearlySpan(parse_month_day(first, lunar=lunar), parse_month_day(last, lunar=lunar))


def check_schedules(plan: Merged, root: Place, report: Report) -> None:
    calendars = section_of(plan, "calendars")
    for name, entry in entries_of(plan, "schedules"):
        path: DataPath = ("schedules", name)
        slots = entry.get("open")
        for index, slot in enumerate(slots if isinstance(slots, list) else []):
            if not isinstance(slot, dict) or not plan.valid((*path, "open", index)):
                continue
            try:
                _slot(slot)
            except ValueError as error:
                report(plan.value_place((*path, "open", index), root), f"schedule {name!r}: {error}")
        _references(plan, (*path, "closed_on"), calendars, "calendar", f"schedule {name!r}", root, report)


def _slot(slot: dict[str, Any]) -> WeeklySlot:
    days, start, end = str(slot["days"]), str(slot["from"]), str(slot["to"])
    start_minute = parse_time(start)
    if start_minute == 24 * 60:
        raise ValueError("'from' cannot be 24:00")
    return WeeklySlot(days=parse_days(days), start=start_minute, end=parse_time(end),
                      text=f"{days} {start}-{end}")


def check_classes_of_service(plan: Merged, root: Place, report: Report) -> None:
    profiles = section_of(plan, "classes_of_service")
    classes = known_classes(plan)
    lists = section_of(plan, "number_lists")
    schedules = section_of(plan, "schedules")
    for name, entry in entries_of(plan, "classes_of_service"):
        path: DataPath = ("classes_of_service", name)
        owner = f"class of service {name!r}"
        check_reference(plan, (*path, "extends"), profiles, "class of service", owner, root, report)
        for key in ("allow", "deny"):
            _references(plan, (*path, key), classes, "call class", owner, root, report)
        for key in ("blacklist", "whitelist"):
            _references(plan, (*path, key), lists, "number list", owner, root, report)
        _no_emergency_deny(plan, (*path, "deny"), owner, root, report)
        rules = entry.get("when")
        for index, rule in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(rule, dict):
                continue
            where: DataPath = (*path, "when", index)
            given = [key for key in ("during", "outside") if key in rule]
            if len(given) != 1:
                report(plan.value_place(where, root),
                       f"{owner}: a 'when' rule needs exactly one of 'during' or 'outside' (a schedule)")
            for key in given:
                check_reference(plan, (*where, key), schedules, "schedule", owner, root, report)
            for key in ("allow", "deny"):
                _references(plan, (*where, key), classes, "call class", owner, root, report)
            _no_emergency_deny(plan, (*where, "deny"), owner, root, report)
            if not rule.get("allow") and not rule.get("deny"):
                report(plan.value_place(where, root), f"{owner}: this 'when' rule allows and denies nothing",
                       "warning")
        if entry.get("whitelist_only") is True and not _inherited_whitelist(profiles, name):
            report(plan.value_place((*path, "whitelist_only"), root),
                   f"{owner} may dial only white-listed numbers but has no whitelist: only internal"
                   " and emergency calls will work", "warning")
    _check_extends_cycles(plan, root, report)
    for key, _ in entries_of(plan, "departments"):
        check_reference(plan, ("departments", key, "class_of_service"), profiles, "class of service",
                   f"department {key!r}", root, report)
    for number, entry in entries_of(plan, "extensions"):
        if "class_of_service" in entry:  # (20,000 extensions: only those that name one)
            check_reference(plan, ("extensions", number, "class_of_service"), profiles, "class of service",
                            f"extension {number!r}", root, report)


def _no_emergency_deny(plan: Merged, path: DataPath, owner: str, root: Place, report: Report) -> None:
    for index, name in strings_in(value_at(plan, path)):
        if name == EMERGENCY:
            report(plan.value_place((*path, index), root), f"{owner}: emergency calls can never be denied")


def _inherited_whitelist(profiles: dict[str, Any], name: str) -> bool:
    seen: set[str] = set()
    current: Any = name
    while isinstance(current, str) and current not in seen and isinstance(profiles.get(current), dict):
        seen.add(current)
        if strings_in(profiles[current].get("whitelist")):
            return True
        current = profiles[current].get("extends")
    return False


def _check_extends_cycles(plan: Merged, root: Place, report: Report) -> None:
    profiles = section_of(plan, "classes_of_service")
    reported: set[str] = set()
    for start in profiles:
        chain: list[str] = []
        current: Any = start
        while isinstance(current, str) and isinstance(profiles.get(current), dict):
            if current in chain:
                cycle = chain[chain.index(current):]
                if not reported & set(cycle):
                    reported.update(cycle)
                    first = cycle[0]
                    report(plan.value_place(("classes_of_service", first, "extends"), root),
                           "classes of service extend each other in a circle: "
                           + " -> ".join([*cycle, first]))
                break
            chain.append(current)
            current = profiles[current].get("extends")


def check_trunks(plan: Merged, root: Place, report: Report) -> None:
    for name, entry in entries_of(plan, "trunks"):
        path: DataPath = ("trunks", name)
        where = plan.key_place(path, root)
        if ("username" in entry) != ("password" in entry):
            report(where, f"trunk {name!r} needs both username and password, or neither")
        if entry.get("register") is True and "username" not in entry:
            report(plan.value_place((*path, "register"), root),
                   f"trunk {name!r} registers, so it needs a username and password")
        for index, text in strings_in(entry.get("inbound_sources")):
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                report(plan.value_place((*path, "inbound_sources", index), root),
                       f"trunk {name!r}: inbound source {text!r} is not an IP address or network (CIDR)")
                continue
            if network.prefixlen == 0:
                report(plan.value_place((*path, "inbound_sources", index), root),
                       f"trunk {name!r}: inbound source {text!r} is the whole Internet: anyone could call"
                       " in as the provider")
        for index, gateway in enumerate(entry.get("gateways") or []):
            if isinstance(gateway, dict):
                _check_gateway_tls(plan, (*path, "gateways", index), name, gateway, root, report)
        rewrites = [(index, rewrite) for index, rewrite in enumerate(entry.get("rewrites") or [])
                    if isinstance(rewrite, dict) and isinstance(rewrite.get("match", ""), str)]
        for position, (index, rewrite) in enumerate(rewrites):
            match = str(rewrite.get("match", ""))
            for earlier_index, earlier in rewrites[:position]:
                if match.startswith(str(earlier.get("match", ""))):
                    report(plan.value_place((*path, "rewrites", index), root),
                           f"trunk {name!r}: this rewrite can never apply: rewrite {earlier_index}"
                           f" (match {str(earlier.get('match', ''))!r}) takes its numbers first", "warning")
                    break


def _check_gateway_tls(plan: Merged, path: DataPath, trunk: str, gateway: dict[str, Any], root: Place,
                       report: Report) -> None:
    tls_keys = [key for key in ("tls_ca_file", "tls_server_name", "tls_pins") if key in gateway]
    if gateway.get("transport", "udp") != "tls":
        for key in tls_keys:
            report(plan.key_place((*path, key), root), f"trunk {trunk!r}: {key} needs transport: tls")
        return
    ca_file = gateway.get("tls_ca_file")
    if isinstance(ca_file, str) and not os.path.isfile(ca_file):
        report(plan.value_place((*path, "tls_ca_file"), root),
               f"trunk {trunk!r}: tls_ca_file {ca_file!r} is not a file (a relative path is taken from the"
               " directory the server runs in)")


def check_routes(plan: Merged, root: Place, report: Report) -> None:
    trunks = section_of(plan, "trunks")
    classes = known_classes(plan)
    departments = section_of(plan, "departments")
    seen: dict[str, DataPath] = {}
    parsed: list[tuple[DataPath, Pattern | None, set[str] | None, set[str] | None]] = []
    produced = {call_class for rows in plan_entries(plan, root, None).values() for _, call_class in rows}
    for index, route in enumerate(_items(plan, "routes")):
        if not isinstance(route, dict):
            continue
        path: DataPath = ("routes", index)
        name = route.get("name")
        owner = f"route {name!r}" if isinstance(name, str) else f"route {index}"
        if isinstance(name, str):
            if name in seen:
                report(plan.value_place((*path, "name"), root),
                       f"route name {name!r} is already used at {_where(plan, (*seen[name], 'name'), root)}")
            seen.setdefault(name, path)
        check_reference(plan, (*path, "trunk"), trunks, "trunk", owner, root, report)
        _references(plan, (*path, "classes"), classes, "call class", owner, root, report)
        _references(plan, (*path, "departments"), departments, "department", owner, root, report)
        pattern = pattern_at(plan, (*path, "pattern"), route.get("pattern"), root, report)
        if "pattern" in route and pattern is None:
            continue
        route_classes = {c for _, c in strings_in(route.get("classes"))} if "classes" in route else None
        route_departments = {d for _, d in strings_in(route.get("departments"))} if "departments" in route else None
        if route_classes is not None and plan.complete and not route_classes & (produced | {INTERNAL}):
            report(plan.value_place((*path, "classes"), root),
                   f"{owner} can never match: no number plan gives the classes"
                   f" {', '.join(sorted(route_classes))}", "warning")
        for earlier_path, earlier_pattern, earlier_classes, earlier_departments in parsed:
            if _route_covers(earlier_pattern, earlier_classes, earlier_departments,
                             pattern, route_classes, route_departments):
                report(plan.value_place(path, root),
                       f"{owner} can never match: route {value_at(plan, (*earlier_path, 'name'))!r} at"
                       f" {_where(plan, earlier_path, root)} takes all its calls first", "warning")
                break
        parsed.append((path, pattern, route_classes, route_departments))
    _check_unrouted(plan, root, report, parsed)


def _route_covers(
    pattern: Pattern | None, classes: set[str] | None, departments: set[str] | None,
    later: Pattern | None, later_classes: set[str] | None, later_departments: set[str] | None,
) -> bool:
    if pattern is not None and (later is None or pattern.covers(later) is not True):
        return False
    if classes is not None and (later_classes is None or not later_classes <= classes):
        return False
    return departments is None or (later_departments is not None and later_departments <= departments)


def _check_unrouted(plan: Merged, root: Place, report: Report,
                    routes: list[tuple[DataPath, Pattern | None, set[str] | None, set[str] | None]]) -> None:
    """Warn about number plan entries no route can carry."""
    if not plan.complete:
        return
    for rows in plan_entries(plan, root, None).values():
        for located, call_class in rows:
            if call_class == INTERNAL:
                continue
            reachable = any(
                (classes is None or call_class in classes)
                and (pattern is None or pattern.overlaps(located.pattern) is not False)
                for _, pattern, classes, _ in routes
            )
            if not reachable:
                report(plan.value_place(located.path, root),
                       f"no route takes these {call_class} numbers ({located.pattern.text}):"
                       " calls to them are refused with 404", "warning")


def check_inbound(plan: Merged, root: Place, report: Report) -> None:
    extensions = section_of(plan, "extensions")
    schedules = section_of(plan, "schedules")
    for did, entry in entries_of(plan, "inbound"):
        path: DataPath = ("inbound", did)
        owner = f"inbound number {did!r}"
        current: Any = entry
        while isinstance(current, dict):
            check_reference(plan, (*path, "extension"), extensions, "extension", owner, root, report)
            check_reference(plan, (*path, "menu"), section_of(plan, "ivr_menus"), "menu", owner, root, report)
            check_reference(plan, (*path, "conference"), section_of(plan, "conferences"), "conference room",
                            owner, root, report)
            if sum(kind in current for kind in ("extension", "member", "hunt_group", "menu", "conference")) != 1:
                report(plan.value_place(path, root),
                       f"{owner}: give 'extension', 'member', 'hunt_group', 'menu' or 'conference', exactly one")
            elif "member" in current:
                _check_member_target(plan, (*path, "member"), owner, root, report)
            given = [key for key in ("during", "outside") if key in current]
            for key in given:
                check_reference(plan, (*path, key), schedules, "schedule", owner, root, report)
            if len(given) > 1:
                report(plan.key_place((*path, "outside"), root), f"{owner}: give 'during' or 'outside', not both")
            if given and "otherwise" not in current:
                report(plan.key_place((*path, given[0]), root),
                       f"{owner}: '{given[0]}' needs an 'otherwise' target for the rest of the time")
            if "otherwise" in current and not given:
                report(plan.key_place((*path, "otherwise"), root),
                       f"{owner}: 'otherwise' needs 'during' or 'outside' (a schedule)")
            current = current.get("otherwise")
            path = (*path, "otherwise")


def _check_member_target(plan: Merged, path: DataPath, owner: str, root: Place, report: Report) -> None:
    """``member: GROUP/SHORT`` must name a member, inline or in the members file."""
    text = value_at(plan, path)
    if not isinstance(text, str) or not plan.valid(path) or not plan.complete or "/" not in text:
        return
    group, short = text.split("/", 1)
    groups = section_of(plan, "groups")
    entry = groups.get(group)
    if not isinstance(entry, dict):
        report(plan.value_place(path, root), f"{owner} names unknown group {group!r}" + suggest(group, groups))
        return
    # Not yet a mapping (``members: 601``) is the schema's to report, not a crash.
    listed = (entry.get("members"), entry.get("file_members"))
    members = {str(k) for found in listed if isinstance(found, dict) for k in found}
    if short not in members:
        report(plan.value_place(path, root), f"{owner}: group {group!r} has no member {short!r}")


def check_keypad(plan: Merged, root: Place, report: Report) -> None:
    """Numbers dialled from the same keypad must mean one thing."""
    extensions = list(section_of(plan, "extensions"))
    features = list(section_of(plan, "feature_codes"))
    rows = [(located, call_class) for entries in plan_entries(plan, root, None).values()
            for located, call_class in entries if call_class != INTERNAL]
    for code in features:
        if code in extensions:
            report(plan.key_place(("feature_codes", code), root),
                   f"feature code {code!r} is also extension {code!r} at"
                   f" {plan.key_place(('extensions', code), root)}")
    for kind, numbers, section in (("extension", extensions, "extensions"), ("feature code", features,
                                                                                "feature_codes")):
        for number in numbers:
            for located, call_class in rows:
                if located.pattern.matches(number):
                    report(plan.key_place((section, number), root),
                           f"{kind} {number!r} collides with {call_class} numbers"
                           f" {located.rule} ({located.pattern.text}) at"
                           f" {_where(plan, located.path, root)}")
                    break


CHECKS: Final[tuple[Callable[[Merged, Place, Report], None], ...]] = (
    check_timezones,
    check_call_classes,
    check_number_plans,
    check_number_lists,
    check_calendars,
    check_schedules,
    check_classes_of_service,
    check_trunks,
    check_routes,
    check_inbound,
    check_keypad,
)
"""Run by the loader after its own checks, in this order."""


# ---------------------------------------------------------------- build


def department_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """Routing keys of a department entry, for :class:`Department`."""
    return {key: str(entry[key]) for key in ("class_of_service", "number_plan", "caller_id", "language",
                                             "account_codes", "music_on_hold") if key in entry}


_EXTENSION_TEXT_KEYS: Final = ("class_of_service", "caller_id", "language", "account_codes")
EXTENSION_KEYS: Final = frozenset({*_EXTENSION_TEXT_KEYS, "outside_calls"})
"""The keys of an extension entry :func:`extension_fields` reads."""


def extension_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """Routing keys of an extension entry, for :class:`Extension`."""
    fields: dict[str, Any] = {key: str(entry[key]) for key in _EXTENSION_TEXT_KEYS if key in entry}
    return fields | outside_call_limits(entry)


def outside_call_limits(entry: dict[str, Any], base: OutsideCallLimits = OutsideCallLimits()) -> dict[str, Any]:
    """``outside_calls`` of an extension, a class of service or the
    ``security`` section over ``base``, as a keyword argument (none when
    not given)."""
    given = entry.get("outside_calls")
    if not isinstance(given, dict):
        return {}
    return {"outside_calls": dataclasses.replace(base, **{str(key): int(value) for key, value in given.items()})}


def build_routing(plan: Merged) -> dict[str, Any]:
    """Keyword arguments for :class:`Dialplan` from checked, valid data."""
    data = plan.data
    timezone = _zone(str(data["timezone"])) if "timezone" in data else dt.timezone.utc
    assert timezone is not None
    call_classes = dict(BUILTIN_CLASSES) | {str(k): str(v) for k, v in section_of(plan, "call_classes").items()}
    number_plans = {
        name: NumberPlan(key=name, entries=tuple(
            NumberPlanEntry(pattern=parse_pattern(str(entry["pattern"])), call_class=str(entry["class"]),
                            name=str(entry.get("name", "")), rule=f"number_plans.{name}[{index}]")
            for index, entry in enumerate(plan_table(plan, name)[1])
        ), numbering=numbering_of(value))
        for name, value in section_of(plan, "number_plans").items()
    }
    number_lists = {
        name: NumberList(key=name, patterns=tuple(list_entry(str(text)) for text in items))
        for name, items in section_of(plan, "number_lists").items()
    }
    calendars = {
        name: Calendar(
            key=name,
            public_holidays=entry.get("public_holidays"),
            subdivision=entry.get("subdivision"),
            dates=tuple(_date_span(text) for text in entry.get("dates", [])),
            annual=tuple(_yearly_span("annual", text) for text in entry.get("annual", [])),
            lunar=tuple(_yearly_span("lunar", text) for text in entry.get("lunar", [])),
        )
        for name, entry in entries_of(plan, "calendars")
    }
    schedules = {
        name: Schedule(
            key=name,
            timezone=_zone(str(entry["timezone"])) or timezone if "timezone" in entry else timezone,
            slots=tuple(_slot(slot) for slot in entry.get("open", [])),
            closed_on=tuple(calendars[c] for c in entry.get("closed_on", [])),
        )
        for name, entry in entries_of(plan, "schedules")
    }
    profiles = _build_profiles(plan, number_lists, schedules)
    trunks = {name: _trunk(name, entry) for name, entry in entries_of(plan, "trunks")}
    routes = tuple(
        Route(
            name=str(route["name"]),
            trunk=str(route["trunk"]),
            pattern=parse_pattern(str(route["pattern"])) if "pattern" in route else None,
            classes=frozenset(map(str, route["classes"])) if "classes" in route else None,
            departments=frozenset(map(str, route["departments"])) if "departments" in route else None,
        )
        for route in _items(plan, "routes")
    )
    inbound = {did: _inbound(f"inbound.{did}", entry, schedules) for did, entry in entries_of(plan, "inbound")}
    return {
        "timezone": timezone,
        "call_classes": call_classes,
        "number_plans": number_plans,
        "number_plan": data.get("number_plan"),
        "number_lists": number_lists,
        "blacklist": tuple(number_lists[name] for name in data.get("blacklist", [])),
        "calendars": calendars,
        "schedules": schedules,
        "classes_of_service": profiles,
        "feature_codes": {str(k): str(v) for k, v in section_of(plan, "feature_codes").items()},
        "trunks": trunks,
        "routes": routes,
        "inbound": inbound,
        "places": _places(plan, routes),
    }


def _date_span(text: str) -> DateSpan:
    span = _parse_calendar_span("dates", text)
    assert isinstance(span, DateSpan)
    return span


def _yearly_span(kind: str, text: str) -> YearlySpan:
    span = _parse_calendar_span(kind, text)
    assert isinstance(span, YearlySpan)
    return span


def _build_profiles(plan: Merged, lists: dict[str, NumberList],
                    schedules: dict[str, Schedule]) -> dict[str, ClassOfService]:
    entries = dict(entries_of(plan, "classes_of_service"))
    built: dict[str, ClassOfService] = {}

    def build(name: str) -> ClassOfService:
        if name in built:
            return built[name]
        entry = entries[name]
        parent = build(str(entry["extends"])) if "extends" in entry else None
        rules = []
        for index, rule in enumerate(entry.get("when", [])):
            outside = "outside" in rule
            rules.append(TimedRule(
                rule=f"classes_of_service.{name}.when[{index}]",
                schedule=schedules[str(rule["outside"] if outside else rule["during"])],
                outside=outside,
                allow=frozenset(map(str, rule.get("allow", []))),
                deny=frozenset(map(str, rule.get("deny", []))),
            ))
        profile = ClassOfService(
            key=name,
            description=str(entry.get("description", "")),
            parent=parent,
            allow=frozenset(map(str, entry.get("allow", []))),
            deny=frozenset(map(str, entry.get("deny", []))),
            when=tuple(rules),
            blacklist=tuple(lists[str(n)] for n in entry.get("blacklist", [])),
            whitelist=tuple(lists[str(n)] for n in entry.get("whitelist", [])),
            whitelist_only=entry.get("whitelist_only"),
            **outside_call_limits(entry),
        )
        built[name] = profile
        return profile

    for name in entries:
        build(name)
    return built


def _trunk(name: str, entry: dict[str, Any]) -> Trunk:
    options: dict[str, Any] = {
        key: entry[key] for key in ("username", "password", "domain", "register", "register_expires", "caller_id")
        if key in entry
    }
    if "invite_timeout" in entry:
        options["invite_timeout"] = float(entry["invite_timeout"])
    if "inbound_sources" in entry:
        options["inbound_sources"] = tuple(ipaddress.ip_network(str(text), strict=False)
                                           for text in entry["inbound_sources"])
    return Trunk(
        key=name,
        gateways=tuple(_gateway(g) for g in entry["gateways"]),
        rewrites=tuple(
            NumberRewrite(prefix_match=str(r.get("match", "")), strip=int(r.get("strip", 0)),
                          prepend=str(r.get("prepend", "")))
            for r in entry.get("rewrites", [])
        ),
        **options,
    )


def _gateway(entry: dict[str, Any]) -> Gateway:
    transport = entry.get("transport", "udp")
    return Gateway(
        host=str(entry["host"]), port=int(entry.get("port", 5061 if transport == "tls" else 5060)),
        transport=transport, tls_ca_file=entry.get("tls_ca_file"), tls_server_name=entry.get("tls_server_name"),
        tls_pins=tuple(p.replace(":", "").lower() for p in entry.get("tls_pins", [])),
    )


def _inbound(rule: str, entry: dict[str, Any], schedules: dict[str, Schedule]) -> InboundTarget:
    outside = "outside" in entry
    schedule_name = entry.get("outside") if outside else entry.get("during")
    otherwise = entry.get("otherwise")
    member = str(entry["member"]).split("/", 1) if "member" in entry else None
    return InboundTarget(
        rule=rule,
        extension=str(entry["extension"]) if "extension" in entry else None,
        member=(member[0], member[1]) if member is not None else None,
        hunt_group=str(entry["hunt_group"]) if "hunt_group" in entry else None,
        menu=str(entry["menu"]) if "menu" in entry else None,
        conference=str(entry["conference"]) if "conference" in entry else None,
        schedule=schedules[str(schedule_name)] if schedule_name is not None else None,
        outside=outside,
        otherwise=_inbound(f"{rule}.otherwise", otherwise, schedules) if isinstance(otherwise, dict) else None,
    )


def _places(plan: Merged, routes: tuple[Route, ...]) -> list[tuple[str, Place]]:
    """What rules are named besides their nodes' dotted paths: an entry of
    a number plan written as a mapping, and ``routes.<name>``."""
    places: list[tuple[str, Place]] = []
    for name in section_of(plan, "number_plans"):
        where, entries = plan_table(plan, name)
        if len(where) == 3:
            # Rules name an entry number_plans.<plan>[<index>] whichever way
            # the plan is written (the names are words: no clash with a path).
            for index in range(len(entries)):
                node = plan.places.get((*where, index))
                if node is not None:
                    places.append((f"number_plans.{name}[{index}]", node.value))
    for index, route in enumerate(routes):
        item = plan.places.get(("routes", index))
        if item is not None:
            places.append((route.rule, item.value))
    return places
