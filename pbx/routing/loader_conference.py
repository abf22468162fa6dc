"""The loader's part for meet-me rooms (``conferences:``) and call park
(``parking:``): checks with positions, then the models
(:mod:`pbx.routing.conferences`, :mod:`pbx.routing.parking`).

Checks: a room's number means nothing else on the keypad (not an
extension, a feature code, a short number, a menu, a hunt group, another
room or an outside number); its PIN and moderator PIN differ (else nobody
could enter as a member). PINs are hashed as they are read; no message
here ever shows one.
"""

from __future__ import annotations

from typing import Any, Final

from pbx.routing.conferences import Conference, PinHash
from pbx.routing.loader_common import DataPath, Keypad, Merged, Place, Report, entries_of, section_of, value_at
from pbx.routing.parking import DEFAULT_RING_BACK, Parking

SECTION_NOUNS: Final = {"conferences": "conference"}


def check_conferences(plan: Merged, root: Place, report: Report) -> None:
    keypad = Keypad(plan, root)
    hunt_groups = section_of(plan, "hunt_groups")
    menus = {str(entry.get("number")): key for key, entry in entries_of(plan, "ivr_menus") if "number" in entry}
    numbers: dict[str, str] = {}
    for key, entry in entries_of(plan, "conferences"):
        path: DataPath = ("conferences", key)
        pin, moderator = entry.get("pin"), entry.get("moderator_pin")
        if isinstance(pin, str) and pin == moderator and plan.valid((*path, "moderator_pin")):
            report(plan.value_place((*path, "moderator_pin"), root),
                   f"conference {key!r}: the moderator PIN must differ from the PIN")
        number = entry.get("number")
        if not isinstance(number, str) or not plan.valid((*path, "number")):
            continue
        if number in numbers:
            clash: str | None = f"is already conference {numbers[number]!r}'s number"
        elif number in hunt_groups:
            clash = f"is also hunt group {number!r}"
        elif number in menus:
            clash = f"is also menu {menus[number]!r}'s number"
        else:
            clash = keypad.clash(number)
        if clash is not None:
            report(plan.value_place((*path, "number"), root), f"number {number!r} of conference {key!r} {clash}")
        numbers.setdefault(number, key)


MAX_SLOTS: Final = 100


def check_parking(plan: Merged, root: Place, report: Report) -> None:
    """Slots FIRST-LAST, at most :data:`MAX_SLOTS`, none of them a number
    that already means something (an extension 705 in 701-720, a room)."""
    path: DataPath = ("parking", "slots")
    text = value_at(plan, path)
    if not isinstance(text, str) or not plan.valid(path):
        return
    first, last = (int(part) for part in text.split("-"))
    at = plan.value_place(path, root)
    if not first <= last < first + MAX_SLOTS or len(str(first)) != len(str(last)):
        report(at, f"parking slots {text!r}: FIRST must not be above LAST, both as long, at most {MAX_SLOTS} slots")
        return
    keypad = Keypad(plan, root)
    rooms = {str(entry.get("number")) for _, entry in entries_of(plan, "conferences")}
    menus = {str(entry.get("number")) for _, entry in entries_of(plan, "ivr_menus")}
    for number in (str(n) for n in range(first, last + 1)):
        clash = "is also a conference room's number" if number in rooms else \
            "is also a menu's number" if number in menus else \
            "is also hunt group" if number in section_of(plan, "hunt_groups") else keypad.clash(number)
        if clash is not None:
            report(at, f"parking slot {number!r} {clash}")
            return


CHECKS: Final = (check_conferences, check_parking)


def build_parking(plan: Merged) -> Parking | None:
    data = section_of(plan, "parking")
    if "slots" not in data:
        return None
    first, last = (int(part) for part in str(data["slots"]).split("-"))
    return Parking(first=first, last=last, ring_back=int(data.get("ring_back", DEFAULT_RING_BACK)))


def build_conferences(plan: Merged) -> dict[str, Conference]:
    rooms = {}
    for key, entry in entries_of(plan, "conferences"):
        fields: dict[str, Any] = {}
        for name in ("pin", "moderator_pin"):
            if name in entry:
                fields[name] = PinHash.of(str(entry[name]), key)
        if "max_members" in entry:
            fields["max_members"] = int(entry["max_members"])
        if "language" in entry:
            fields["language"] = str(entry["language"])
        rooms[key] = Conference(key=key, number=str(entry["number"]), **fields)
    return rooms
