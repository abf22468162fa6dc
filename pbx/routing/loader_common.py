"""What the loader's steps share: the merged data with every node's place,
how a check reports a problem, and helpers the checks use to read the data.

:mod:`pbx.routing.loader` reads each file into a :class:`Document` and merges
them into one :class:`Merged`; the checks in :mod:`pbx.routing.loader`,
:mod:`pbx.routing.loader_routing` and :mod:`pbx.routing.loader_groups` read
that, and report through a :class:`Report`. Every helper here tolerates data
the schema already refused (it skips it).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

from pbx.routing.classes import INTERNAL
from pbx.routing.patterns import Pattern, PatternError, parse_pattern

Severity = Literal["error", "warning"]
DataPath = tuple[str | int, ...]
"""Where a value sits in the loaded data: ``("extensions", "1001", "name")``."""


# ------------------------------------------------------------------ positions


class Place(NamedTuple):
    """A 1-based position in a file.

    A named tuple, not a dataclass: a plan of 20,000 extensions makes
    300,000 of these and :class:`NodePlace`, which a tuple makes in half
    the time of a frozen dataclass.
    """

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class NodePlace(NamedTuple):
    """Where a value's key (None for list items and the root) and value start."""

    key: Place | None
    value: Place


RawPlace = tuple[str, str, int, int, int, int]
"""A node's place as the converter records it: (file, rule name, key line,
key column, line, column), the key's line 0 when it has none."""


class PlaceTable:
    """Every node's place by its path in the data.

    Stored as plain tuples (:data:`RawPlace`), which cost a tenth of two
    :class:`Place` and a :class:`NodePlace` per node; those are made when a
    place is asked for, mostly to report a problem.
    """

    __slots__ = ("raw",)

    def __init__(self) -> None:
        self.raw: dict[DataPath, RawPlace] = {}

    def get(self, path: DataPath) -> NodePlace | None:
        raw = self.raw.get(path)
        return None if raw is None else _node_place(raw)

    def __getitem__(self, path: DataPath) -> NodePlace:
        return _node_place(self.raw[path])

    def __contains__(self, path: DataPath) -> bool:
        return path in self.raw

    def put(self, path: DataPath, key: Place | None, value: Place) -> None:
        """Record a place not read from a node (an empty file's root)."""
        key_line, key_column = (key.line, key.column) if key is not None else (0, 0)
        self.raw[path] = (value.path, dotted(path), key_line, key_column, value.line, value.column)

    def update(self, other: PlaceTable) -> None:
        self.raw.update(other.raw)


def _node_place(raw: RawPlace) -> NodePlace:
    path, _, key_line, key_column, line, column = raw
    return NodePlace(Place(path, key_line, key_column) if key_line else None, Place(path, line, column))


@dataclass(slots=True)
class Document:
    """One parsed file: plain data plus the place of every node in it."""

    display: str
    real: Path
    data: dict[str, Any] | None = None
    places: PlaceTable = field(default_factory=PlaceTable)
    invalid: set[DataPath] = field(default_factory=set)
    """Paths the schema rejected; semantic checks skip what lies under them."""


# ---------------------------------------------------------------- merge


@dataclass(slots=True, kw_only=True)
class Merged:
    """All files' top-level sections merged, with each node's place kept."""

    data: dict[str, Any]
    places: PlaceTable
    invalid: set[DataPath]
    complete: bool = True
    """False if some file could not be read or parsed: absences prove nothing."""
    members_files: dict[str, str] = field(default_factory=dict)
    """Group key -> its members file as found from the file naming it."""

    @classmethod
    def of(
        cls,
        documents: Sequence[Document],
        report: Callable[[Place, str], None],
        nouns: Mapping[str, str],
    ) -> Merged:
        """Merge ``documents``; ``nouns`` names one entry of each mapping section
        ("extension") for the messages about an entry given twice."""
        merged = cls(data={}, places=PlaceTable(), invalid=set())
        for doc in documents:
            if doc.data is not None:
                merged._add(doc, report, nouns)
            else:
                merged.complete = False
        return merged

    def _add(self, doc: Document, report: Callable[[Place, str], None], nouns: Mapping[str, str]) -> None:
        assert doc.data is not None
        whole: dict[str | int, int] = {}  # sections taken whole -> how far their list items shift
        entries: dict[str | int, set[str | int]] = {}  # sections merged entry by entry -> entries taken
        kept: list[tuple[DataPath, RawPlace]] = []
        for section, value in doc.data.items():
            if section == "include":
                continue
            here = doc.places[(section,)]
            if section not in self.data:
                self.data[section] = value
                whole[section] = 0
                continue
            existing = self.data[section]
            first = self.places[(section,)]
            if isinstance(existing, dict) and isinstance(value, dict):
                noun = nouns.get(section)
                taken = entries.setdefault(section, set())
                for key, entry in value.items():
                    if key in existing:
                        what = f"{noun} {key!r}" if noun else repr(dotted((section, key)))
                        first_at = self.places[(section, key)].key or first.value
                        at = doc.places[(section, key)].key or here.value
                        report(at, f"{what} is already defined at {first_at}")
                        continue
                    existing[key] = entry
                    taken.add(key)
            elif isinstance(existing, list) and isinstance(value, list):
                whole[section] = len(existing)
                kept.append(((section,), self.places.raw[(section,)]))
                existing.extend(value)
            elif not isinstance(existing, dict | list) and not isinstance(value, dict | list):
                report(here.key or here.value, f"{section!r} is already set at {first.key or first.value}")
            # else: a section of the wrong type; the schema reported it.
        places = self.places.raw
        if not entries and not kept and not any(whole.values()):
            # Sections new to the plan (all of a first file's): taken whole,
            # nothing renumbered.
            if len(whole) == len(doc.data):  # every section: all but the root's place
                places.update(doc.places.raw)
                places.pop((), None)
            else:
                places.update({path: place for path, place in doc.places.raw.items() if path and path[0] in whole})
            self.invalid.update(path for path in doc.invalid if path and path[0] in whole)
            return
        # One pass over the file's places (not one per section or entry:
        # a second file adding 10,000 extensions made that 10,000 passes).
        for path, place in doc.places.raw.items():
            if self._taken(path, whole, entries):
                shifted = self._shifted(path, whole)
                # A list item renumbered after another file's has a new rule name.
                places[shifted] = place if shifted is path else (place[0], dotted(shifted), *place[2:6])
        for path in doc.invalid:
            if self._taken(path, whole, entries):
                self.invalid.add(path)
        places.update(kept)

    @staticmethod
    def _taken(path: DataPath, whole: dict[str | int, int], entries: dict[str | int, set[str | int]]) -> bool:
        if not path:
            return False
        if path[0] in whole:
            return True
        taken = entries.get(path[0])
        return taken is not None and len(path) > 1 and path[1] in taken

    @staticmethod
    def _shifted(path: DataPath, whole: dict[str | int, int]) -> DataPath:
        """``path`` with a list section's item renumbered after another file's."""
        shift = whole.get(path[0])
        if shift and len(path) > 1 and isinstance(path[1], int):
            return (path[0], path[1] + shift, *path[2:])
        return path

    def valid(self, path: DataPath) -> bool:
        """True if the schema found nothing wrong at or under ``path``."""
        size = len(path)
        return not any(bad[:size] == path or path[: len(bad)] == bad for bad in self.invalid)

    def value_place(self, path: DataPath, fallback: Place) -> Place:
        raw = self.places.raw.get(path)
        return Place(raw[0], raw[4], raw[5]) if raw is not None else fallback

    def key_place(self, path: DataPath, fallback: Place) -> Place:
        raw = self.places.raw.get(path)
        if raw is None:
            return fallback
        return Place(raw[0], raw[2], raw[3]) if raw[2] else Place(raw[0], raw[4], raw[5])


# ---------------------------------------------------------------- reporting


class Report(Protocol):
    def __call__(self, place: Place, message: str, severity: Severity = "error") -> None: ...


Check = Callable[[Merged, Place, Report], None]


def _ignore(place: Place, message: str, severity: str = "error") -> None:
    del place, message, severity


# ---------------------------------------------------------------- reading the data


def dotted(path: DataPath) -> str:
    """``("routes", 0, "name")`` as ``routes[0].name``: how messages and rule names write a path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def section_of(plan: Merged, key: str) -> dict[str, Any]:
    value = plan.data.get(key)
    return value if isinstance(value, dict) else {}


def strings_in(value: object) -> list[tuple[int, str]]:
    if not isinstance(value, list):
        return []
    return [(index, item) for index, item in enumerate(value) if isinstance(item, str)]


def entries_of(plan: Merged, key: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, entry in section_of(plan, key).items():
        if isinstance(entry, dict):
            yield name, entry


def value_at(plan: Merged, path: DataPath) -> Any:
    current: Any = plan.data
    for part in path:
        if isinstance(current, dict) and isinstance(part, str):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            return None
    return current


def check_reference(
    plan: Merged,
    path: DataPath,
    known: Iterable[str],
    what: str,
    owner: str,
    root: Place,
    report: Report,
) -> None:
    """Report the value at ``path`` if it names no ``what`` in ``known``."""
    name = value_at(plan, path)
    names = set(known)
    if isinstance(name, str) and plan.valid(path) and name not in names and plan.complete:
        report(plan.value_place(path, root), f"{owner} names unknown {what} {name!r}" + suggest(name, names))


def pattern_at(plan: Merged, path: DataPath, text: object, root: Place, report: Report) -> Pattern | None:
    """The parsed pattern at ``path``, or None after reporting why not."""
    if not isinstance(text, str) or not plan.valid(path):
        return None
    try:
        return parse_pattern(text)
    except PatternError as error:
        report(plan.value_place(path, root), f"pattern {text!r}: {error.message} (character {error.offset + 1})")
        return None


# ---------------------------------------------------------------- patterns by place


@dataclass(frozen=True, slots=True)
class Located:
    """A pattern with the path it was written at."""

    path: DataPath
    pattern: Pattern
    rule: str = ""
    """For a number plan entry, its rule name (``number_plans.vietnam[4]``)."""


def plan_table(plan: Merged, name: str) -> tuple[DataPath, list[Any]]:
    """Where number plan ``name``'s entries are, and the entries: the plan
    is a bare list, or a mapping of its country facts with ``entries``."""
    value = section_of(plan, "number_plans").get(name)
    if isinstance(value, dict):
        entries = value.get("entries")
        return ("number_plans", name, "entries"), entries if isinstance(entries, list) else []
    return ("number_plans", name), value if isinstance(value, list) else []


def plan_entries(plan: Merged, root: Place, report: Report | None) -> dict[str, list[tuple[Located, str]]]:
    """Parsed entries of every number plan: (pattern, class), reporting bad
    patterns when ``report`` is given."""
    quiet: Report = _ignore
    out: dict[str, list[tuple[Located, str]]] = {}
    for name in section_of(plan, "number_plans"):
        rows: list[tuple[Located, str]] = []
        where, entries = plan_table(plan, name)
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            path: DataPath = (*where, index, "pattern")
            pattern = pattern_at(plan, path, entry.get("pattern"), root, report or quiet)
            call_class = entry.get("class")
            if pattern is not None and isinstance(call_class, str):
                rows.append((Located(path, pattern, f"number_plans.{name}[{index}]"), call_class))
        out[name] = rows
    return out


def _keys_of(value: object) -> list[object]:
    return list(value) if isinstance(value, dict) else []


class Keypad:
    """What numbers already mean on the keypad (extensions, feature codes,
    short numbers, outside numbers), for a section whose entries add
    numbers of their own (menus, conference rooms)."""

    def __init__(self, plan: Merged, root: Place) -> None:
        self._plan, self._root = plan, root
        self._extensions = section_of(plan, "extensions")
        self._features = section_of(plan, "feature_codes")
        # A group's members may be anything in a broken plan (its own check
        # says so): only a mapping's keys are short numbers.
        self._shorts = {str(short): (group, part) for group, entry in entries_of(plan, "groups")
                        for part in ("members", "file_members")
                        for short in _keys_of(entry.get(part))}
        self._outside = [(located, call_class) for rows in plan_entries(plan, root, None).values()
                         for located, call_class in rows if call_class != INTERNAL]

    def clash(self, number: str) -> str | None:
        """How ``number`` is taken already (the end of a message), or None."""
        plan, root = self._plan, self._root
        if number in self._extensions:
            return f"is also extension {number!r} at {plan.key_place(('extensions', number), root)}"
        if number in self._features:
            return f"is also feature code {number!r}"
        if number in self._shorts:
            group, part = self._shorts[number]
            return (f"is also short number {number!r} of group {group!r} at"
                    f" {plan.key_place(('groups', group, part, number), root)}")
        for located, call_class in self._outside:
            if located.pattern.matches(number):
                return f"collides with {call_class} numbers {located.rule} ({located.pattern.text})"
        return None
