"""Call classes and the number plans that assign them.

A *number plan* is an ordered table of ``pattern -> call class`` entries
(``0[35789]XXXXXXXX -> mobile``); the first entry that matches the dialled
number decides its class. Classes are what a class of service allows or
denies, what routes may select on and what the CDR records. The built-in
classes below always exist; a dialplan may add its own (``call_classes:``).

Rule: ``emergency`` is special everywhere — a number of that class is never
refused by a class of service, a black list or a white list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pbx.routing.numbering import Numbering
from pbx.routing.patterns import Pattern

INTERNAL: Final = "internal"
EMERGENCY: Final = "emergency"
LOCAL: Final = "local"
"""Numbers dialled without their area code: the plan's ``area_code`` makes
them whole in E.164."""
INBOUND: Final = "inbound"
"""Class recorded for calls that came in from a trunk to a DID."""

BUILTIN_CLASSES: Final[Mapping[str, str]] = {
    INTERNAL: "another extension of this PBX",
    EMERGENCY: "police, fire, ambulance: never barred",
    LOCAL: "a fixed line in the same area, dialled without area code",
    "mobile": "a mobile phone in the same country",
    "national": "a fixed line elsewhere in the country",
    "international": "a number abroad",
    "premium": "premium-rate services (paid by the caller)",
    "toll_free": "free-phone numbers",
}
"""Classes every dialplan has, with what they are for."""

RESERVED_CLASSES: Final = frozenset({INBOUND})
"""Names a dialplan may not define as its own call class."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberPlanEntry:
    """One row of a number plan."""

    pattern: Pattern
    call_class: str
    name: str = ""
    """What these numbers are, for people (``Police``, ``Viettel mobile``)."""
    rule: str
    """Where the row is: ``number_plans.<plan>[<index>]``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberPlan:
    """An ordered classification table, such as one country's numbering."""

    key: str
    entries: tuple[NumberPlanEntry, ...]
    numbering: Numbering | None = None
    """The country's dialling facts that turn its numbers into E.164; None
    for a plan written as a bare table (then only a trunk that sends E.164
    gives a number its E.164 form)."""

    def classify(self, number: str) -> NumberPlanEntry | None:
        """The first entry whose pattern matches ``number``, or None."""
        for entry in self.entries:
            if entry.pattern.matches(number):
                return entry
        return None

    def completes(self, number: str) -> bool:
        """True if more digits after ``number`` could make a number some
        entry matches (regular expressions cannot tell, and count as no)."""
        return any(entry.pattern.could_extend(number) for entry in self.entries)
