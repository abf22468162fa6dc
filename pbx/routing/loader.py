"""Read a dialplan from YAML files, reporting every problem as ``file:line:col``.

Loading runs in four steps, each adding to one list of :class:`Problem`:

1. **YAML** — each file is composed with ruamel.yaml into a node tree and
   converted to plain Python values by :class:`_Converter`, which records the
   1-based line and column of every mapping key and value and of every list
   item. Syntax errors, duplicate keys and unsupported tags become problems.
   Mapping keys keep their source text, so ``1001:`` and ``'1001':`` are the
   same extension and ``0100:`` stays ``"0100"``. A file in plain block
   YAML (one ``key: value`` or ``- item`` a line) is read line by line by
   :mod:`pbx.routing.yaml_fast` instead, with the same data and places
   (0.21-0.23 s of CPU for 20,000 extensions, where composing and
   converting took 0.30-0.31; README, "Performance"); anything else, and
   every error, goes the composed way.
2. **Schema** — each file is validated on its own against ``schema.json``
   (JSON Schema Draft 2020-12), first by the compiled check of
   :mod:`pbx.routing.schema_fast`; only a file it refuses goes through
   jsonschema, whose errors are mapped back to the node they are about
   (unknown keys to the key, with a did-you-mean suggestion).
3. **Include and merge** — ``include:`` names files or directories relative
   to the including file; the top-level sections of all files are merged.
   A mapping entry given in two files, a scalar set twice, an include cycle
   or a file included twice are errors naming both places.
4. **Semantics** — checks that need more than one node (``_CHECKS``), then,
   if no error was found, the frozen :class:`~pbx.routing.dialplan.Dialplan`.

Extending the dialplan with a new section means: describe its shape in
``schema.json``, give it a noun in ``_SECTION_NOUNS`` if it is a mapping of
named entries, add a check to ``_CHECKS`` for cross-references, and a builder
in ``_build``. Secret values (password, HA1) are never put in a message.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pbx.routing import (loader_codes, loader_conference, loader_cost, loader_groups, loader_hunt, loader_ivr,
                         loader_ldap, loader_recording, loader_routing, loader_voicemail, schema_fast, yaml_compose,
                         yaml_fast)
from pbx.routing.dialplan import (
    RFC_MIN_SE,
    CallSettings,
    Department,
    FeatureSettings,
    Forwards,
    Dialplan,
    Extension,
    RegistrarSettings,
    SecuritySettings,
)
from pbx.routing.places import RulePlaces
from pbx.routing.yaml_compose import YamlNode
from pbx.routing.loader_common import (
    Check,
    DataPath,
    Document,
    Merged,
    Place,
    RawPlace,
    Report,
    Severity,
    dotted,
    suggest,
)

if TYPE_CHECKING:
    # jsonschema is imported when a file is refused: a valid plan never
    # needs it (its import is some 0.04 s of a reload child's start).
    from jsonschema import Draft202012Validator, ValidationError

__all__ = [
    "DialplanError",
    "LoadResult",
    "Problem",
    "check_dialplan",
    "format_problems",
    "load_dialplan",
    "read_dialplan",
    "read_yaml",
]

MAX_FILE_BYTES: Final = 4 * 1024 * 1024
MAX_NODES: Final = 200_000  # caps alias expansion ("billion laughs")
MAX_DEPTH: Final = 64
MAX_INCLUDE_DEPTH: Final = 32
WEAK_PASSWORD_LENGTH: Final = 8

_SECRET_KEYS: Final = frozenset({"password", "ha1_md5", "ha1_sha256", "pin", "moderator_pin"})
_SECTION_NOUNS: Final = {"extensions": "extension", "departments": "department", **loader_routing.SECTION_NOUNS,
                          **loader_groups.SECTION_NOUNS, **loader_hunt.SECTION_NOUNS, **loader_ivr.SECTION_NOUNS,
                          **loader_conference.SECTION_NOUNS}
"""Top-level sections that map names to entries, and what one entry is called."""

_TAG: Final = "tag:yaml.org,2002:"
_STR_TAG: Final = _TAG + "str"
_INT_TAG: Final = _TAG + "int"
_NOT_INLINE: Final = object()
_EMPTY: Final[dict[str, Any]] = {}
"""An empty file's data (an empty fragment), told apart by identity; never changed."""
_MERGE_TAG: Final = _TAG + "merge"
_COLLECTION_TAGS: Final = (_TAG + "map", _TAG + "seq")
_HOSTNAME_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


# ---------------------------------------------------------------- public types


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or doubtful) in a dialplan, at a 1-based position."""

    path: str
    line: int
    column: int
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.path}:{self.line}:{self.column}: {prefix}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def format_problems(problems: Iterable[Problem]) -> str:
    """One ``path:line:col: message`` line per problem, in the given order."""
    return "\n".join(str(problem) for problem in problems)


class DialplanError(Exception):
    """The dialplan has at least one error; ``problems`` holds all findings."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(format_problems(p for p in self.problems if p.is_error))


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    """The plan (None if any error was found) and every problem, sorted."""

    dialplan: Dialplan | None
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.is_error)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if not p.is_error)


def read_dialplan(path: str | Path, *, fast_yaml: bool = True) -> LoadResult:
    """Load ``path`` and its includes; never raises for bad input.

    ``fast_yaml=False`` composes every file with libyaml (or ruamel.yaml)
    instead of reading plain block YAML line by line first: the same
    result, which the tests hold it to."""
    loader = _Loader(fast_yaml=fast_yaml)
    plan = loader.load(str(path))
    problems = loader.sorted_problems()
    if any(p.is_error for p in problems):
        plan = None
    return LoadResult(dialplan=plan, problems=problems)


def read_yaml(text: str, display: str, *, fast_yaml: bool = True
              ) -> tuple[dict[str, Any] | None, dict[DataPath, RawPlace], tuple[Problem, ...]]:
    """Step 1 alone, on one file's text: its mapping (None if there is
    none), every node's place and the problems found, schema unchecked."""
    loader = _Loader(fast_yaml=fast_yaml)
    doc = Document(display=display, real=Path(display))
    data = loader.yaml_mapping(doc, text)
    return ({} if data is _EMPTY else data), doc.places.raw, tuple(loader.problems)


def prepare() -> None:
    """Load now what every read needs (the schema and its compiled check),
    for a process that forks its readers (:mod:`pbx.server.plan_process`)."""
    _compiled()


def check_dialplan(path: str | Path) -> list[Problem]:
    """All errors and warnings of the dialplan at ``path``, sorted by place."""
    return list(read_dialplan(path).problems)


def load_dialplan(path: str | Path) -> Dialplan:
    """The dialplan at ``path``; raises :class:`DialplanError` on any error.

    Warnings alone do not stop loading; use :func:`read_dialplan` to see them.
    """
    result = read_dialplan(path)
    if result.dialplan is None:
        raise DialplanError(result.problems)
    return result.dialplan


# ---------------------------------------------------------------- YAML -> data


class _Converter:
    """Turns a composed node tree into dicts, lists and scalars.

    The tree is libyaml's or ruamel.yaml's (:mod:`pbx.routing.yaml_compose`):
    nodes are told apart by their ``id`` ("scalar", "sequence", "mapping"),
    which both give.

    Working on composed nodes rather than constructed objects keeps the
    source text of keys, finds every duplicate key (not just the first) and
    gives each node's place, including for YAML merge keys (``<<: *base``).
    """

    def __init__(self, doc: Document, report: Callable[[Place, str], None]) -> None:
        self._doc = doc
        self._display = doc.display
        self._places = doc.places.raw
        self._report = report
        self._nodes = 0
        self._active: set[int] = set()  # ids of collection nodes being converted

    def place(self, node: YamlNode) -> Place:
        mark = node.start_mark
        return Place(self._display, mark.line + 1, mark.column + 1)

    def convert(self, node: YamlNode, path: DataPath, name: str, key_line: int = 0, key_column: int = 0) -> Any:
        """``node`` as data; ``name`` is ``dotted(path)``, and the key's place
        is given for a mapping's value (line 0: none)."""
        mark = node.start_mark
        self._places[path] = (self._display, name, key_line, key_column, mark.line + 1, mark.column + 1)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _TooBig(self.place(node), "YAML document has too many nodes (alias expansion?)")
        if len(path) > MAX_DEPTH:
            raise _TooBig(self.place(node), "YAML nesting is too deep")
        if node.id == "scalar":
            return self._scalar(node, self.place(node))
        if node.tag not in _COLLECTION_TAGS:
            self._report(self.place(node), f"unsupported YAML tag {_show_tag(node.tag)!r}")
        if id(node) in self._active:
            self._report(self.place(node), "YAML alias refers to itself")
            return None
        self._active.add(id(node))
        try:
            if node.id == "sequence":
                return [self.convert(item, (*path, i), f"{name}[{i}]") for i, item in enumerate(node.value)]
            if node.id == "mapping":
                result: dict[str, Any] = {}
                self._fill_mapping(node, path, name, result, merging=False)
                return result
        finally:
            self._active.discard(id(node))
        self._report(self.place(node), "unsupported YAML node")
        return None

    def _fill_mapping(self, node: YamlNode, path: DataPath, name: str, result: dict[str, Any], *,
                      merging: bool) -> None:
        """Add the entries of mapping ``node`` to ``result``. A key already
        there is a duplicate (reported), or, while ``merging``, a key the
        mapping itself or an earlier merged one gave."""
        merges: list[YamlNode] = []
        places, display = self._places, self._display
        prefix = f"{name}." if name else ""
        for key_node, value_node in node.value:
            if key_node.id == "scalar" and key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if key_node.id != "scalar":
                self._report(self.place(key_node), "mapping keys must be plain scalars")
                continue
            key = str(key_node.value)
            mark = key_node.start_mark
            key_line, key_column = mark.line + 1, mark.column + 1
            child = (*path, key)
            if key in result:
                if not merging:
                    first = places[child]
                    self._report(Place(display, key_line, key_column),
                                 f"duplicate key {key!r}; first given at {Place(first[0], first[2], first[3])}")
                continue
            value: Any = _NOT_INLINE
            if value_node.id == "scalar":
                # Most of a plan (names, numbers, hashes, counts): what
                # convert() would make of it, without the calls.
                text = value_node.value
                if value_node.tag == _STR_TAG:
                    value = str(text)
                elif value_node.tag == _INT_TAG and len(text) < 19 and text.isdigit() and text.isascii():
                    value = int(text)
            if value is not _NOT_INLINE:
                mark = value_node.start_mark
                places[child] = (display, prefix + key, key_line, key_column, mark.line + 1, mark.column + 1)
                self._nodes += 1
                if self._nodes > MAX_NODES:
                    raise _TooBig(self.place(value_node), "YAML document has too many nodes (alias expansion?)")
                if len(child) > MAX_DEPTH:
                    raise _TooBig(self.place(value_node), "YAML nesting is too deep")
                result[key] = value
            else:
                result[key] = self.convert(value_node, child, prefix + key, key_line, key_column)
        # YAML merge keys: keys written in the mapping win over merged ones, and
        # earlier merged mappings win over later ones.
        for merge in merges:
            sources = merge.value if merge.id == "sequence" else [merge]
            for source in sources:
                if source.id == "mapping" and id(source) not in self._active:
                    self._active.add(id(source))
                    try:
                        self._fill_mapping(source, path, name, result, merging=True)
                    finally:
                        self._active.discard(id(source))
                else:
                    self._report(self.place(source), "'<<' must name a mapping or a list of mappings")

    def _scalar(self, node: YamlNode, place: Place) -> Any:
        text = str(node.value)
        tag = str(node.tag)
        if tag == _STR_TAG:  # most of a plan: names, numbers, keys
            return text
        try:
            return yaml_compose.scalar_value(tag, text)
        except LookupError:
            self._report(place, f"unsupported YAML tag {_show_tag(tag)!r}")
        except ValueError:
            self._report(place, f"{text!r} is not a valid {tag.removeprefix(_TAG)}")
        return None


def _show_tag(tag: object) -> str:
    text = str(tag)
    return "!!" + text.removeprefix(_TAG) if text.startswith(_TAG) else text


class _TooBig(Exception):
    def __init__(self, place: Place, message: str) -> None:
        super().__init__(message)
        self.place = place
        self.message = message


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


# ---------------------------------------------------------------- schema


@functools.cache
def _schema() -> dict[str, Any]:
    text = resources.files("pbx.routing").joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    # The schema is checked against its meta-schema by the tests
    # (test_schema_is_valid_draft_2020_12), not at every start.
    return Draft202012Validator(_schema())


@functools.cache
def _compiled() -> Callable[[Any], bool]:
    # Kept compiled where Python keeps this package's bytecode.
    return schema_fast.compile_validator(_schema(), cache=Path(__file__).with_name("__pycache__"))


def _schema_errors(data: dict[str, Any]) -> Iterable[ValidationError]:
    """jsonschema's errors for ``data``, looked for only when the compiled
    validator refuses it, so the messages stay jsonschema's."""
    if _compiled()(data):
        return ()
    errors: Iterable[ValidationError] = _validator().iter_errors(data)
    return errors


def _label(path: DataPath) -> str:
    """How a message names the value at ``path``."""
    if not path:
        return "the file"
    section = path[0]
    if len(path) >= 2 and isinstance(section, str) and section in _SECTION_NOUNS:
        entry = f"{_SECTION_NOUNS[section]} {path[1]!r}"
        return entry if len(path) == 2 else f"{dotted(path[2:])!r} of {entry}"
    return repr(dotted(path))


_TYPE_NAMES: Final = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}


def _describe(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


Finding = tuple[DataPath, Literal["key", "value"], str]
"""A schema error mapped to the node it is about and a message."""


def _schema_findings(error: ValidationError) -> list[Finding]:
    from jsonschema.exceptions import best_match

    while error.context:  # anyOf / oneOf: report the most relevant branch
        error = best_match(error.context)
    path: DataPath = tuple(error.absolute_path)
    kind = str(error.validator)
    instance = error.instance
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}

    if "propertyNames" in error.schema_path:
        # The failing value is a key of the mapping at `path`.
        template = schema.get("x-error")
        key = str(instance)
        message = (
            template.format(value=key, label=repr(key))
            if isinstance(template, str)
            else f"key {key!r} in {_label(path)} is not allowed"
        )
        return [((*path, key), "key", message)]

    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        where = "at the top level" if not path else f"in {_label(path)}"
        findings: list[Finding] = []
        for key in instance:
            if key in allowed or any(re.search(p, key) for p in patterns):
                continue
            hint = suggest(key, allowed) or f" (expected one of: {', '.join(allowed)})"
            findings.append(((*path, key), "key", f"unknown key {key!r} {where}{hint}"))
        return findings

    if kind == "required" and isinstance(instance, dict):
        missing = [k for k in error.validator_value if k not in instance]
        return [(path, "key", f"{_label(path)} is missing required key {k!r}") for k in missing]

    label = _label(path)
    secret = bool(path) and path[-1] in _SECRET_KEYS
    template = schema.get("x-error")
    if isinstance(template, str) and kind != "type":
        shown = "***" if secret else str(instance)
        return [(path, "value", template.format(value=shown, label=label))]
    limit = error.validator_value
    if kind == "type":
        expected = [limit] if isinstance(limit, str) else list(limit)
        names = " or ".join(_TYPE_NAMES.get(t, t) for t in expected)
        message = f"{label} must be {names}, not {_describe(instance)}"
        if "string" in expected and isinstance(instance, int | float):
            message += "; put the value in quotes"
        return [(path, "value", message)]
    if kind == "minimum":
        return [(path, "value", f"{label} must be at least {limit}, not {instance}")]
    if kind == "maximum":
        return [(path, "value", f"{label} must be at most {limit}, not {instance}")]
    if kind == "minLength":
        if limit == 1:
            return [(path, "value", f"{label} must not be empty")]
        return [(path, "value", f"{label} must be at least {limit} characters long")]
    if kind == "maxLength":
        return [(path, "value", f"{label} must be at most {limit} characters long")]
    if kind == "enum":
        choices = ", ".join(repr(c) for c in limit)
        return [(path, "value", f"{label} must be one of {choices}")]
    if secret:
        return [(path, "value", f"{label} is not valid ({kind})")]
    return [(path, "value", f"{label}: {error.message}")]


# ---------------------------------------------------------------- loader


class _Loader:
    """One load: the documents read so far and the problems found."""

    def __init__(self, *, fast_yaml: bool = True) -> None:
        self._fast_yaml = fast_yaml
        self.problems: list[Problem] = []
        self.documents: list[Document] = []
        self._included_at: dict[Path, Place | None] = {}
        self._order: dict[str, int] = {}
        self.folders: list[str] = []
        """Folders included whole, as shown: the reloader watches their listing."""

    # -- reporting

    def report(self, place: Place, message: str, severity: Severity = "error") -> None:
        self.problems.append(Problem(place.path, place.line, place.column, message, severity))

    def sorted_problems(self) -> tuple[Problem, ...]:
        unique = list(dict.fromkeys(self.problems))
        last = len(self._order)
        unique.sort(key=lambda p: (self._order.get(p.path, last), p.line, p.column))
        return tuple(unique)

    # -- files

    def load(self, path: str) -> Dialplan | None:
        self._included_at[_real(Path(path))] = None
        self._read_tree(path, Path(path), stack=[])
        merged = Merged.of(self.documents, self.report, _SECTION_NOUNS)
        members_files = self._read_members_files(merged)
        root = Place(path, 1, 1)
        for check in _CHECKS:
            check(merged, root, self.report)
        if any(p.is_error for p in self.problems):
            return None
        return _build(merged, (*(d.display for d in self.documents), *members_files), tuple(self.folders))

    def _read_tree(self, display: str, file: Path, stack: list[tuple[Path, str]]) -> None:
        real = _real(file)
        self._order.setdefault(display, len(self._order))
        doc = Document(display=display, real=real)
        self.documents.append(doc)
        self._parse(doc, file)
        if doc.data is None:
            return
        includes = doc.data.get("include")
        if not isinstance(includes, list):
            return
        for index, item in enumerate(includes):
            if not isinstance(item, str) or not item:
                continue  # the schema has reported it
            at = doc.places[("include", index)].value
            if len(stack) >= MAX_INCLUDE_DEPTH:
                self.report(at, f"includes nested more than {MAX_INCLUDE_DEPTH} deep")
                continue
            target = real.parent / item
            target_display = os.path.normpath(os.path.join(os.path.dirname(display), item))
            if target.is_dir():
                self.folders.append(target_display)
                children = yaml_files_in(target)
                if not children:
                    self.report(at, f"included directory {item!r} has no .yaml files", "warning")
                for child in children:
                    self._include(os.path.join(target_display, child.name), child, at, doc, stack)
            elif target.is_file():
                self._include(target_display, target, at, doc, stack)
            else:
                self.report(at, f"included file {item!r} not found")

    def _include(
        self,
        display: str,
        file: Path,
        at: Place,
        parent: Document,
        stack: list[tuple[Path, str]],
    ) -> None:
        real = _real(file)
        chain = [*stack, (parent.real, parent.display)]
        for start, (path, _) in enumerate(chain):
            if path == real:
                names = [shown for _, shown in chain[start:]]
                self.report(at, "include cycle: " + " -> ".join([*names, display]))
                return
        if real in self._included_at:
            first = self._included_at[real]
            where = f" (first at {first})" if first is not None else ""
            self.report(at, f"{display!r} is included more than once{where}")
            return
        self._included_at[real] = at
        self._read_tree(display, file, chain)

    # -- members files of short-number groups

    def _read_members_files(self, merged: Merged) -> tuple[str, ...]:
        """Read each group's ``members_file`` (relative to the file naming
        it) into ``groups.<key>.file_members``, places included.

        Returns every members file named, read or missing: the reloader
        watches them, so a file ``pbx group add`` creates is noticed. A
        missing file is an empty list of members (a warning, not an error).
        """
        groups = merged.data.get("groups")
        if not isinstance(groups, dict):
            return ()
        named: list[str] = []
        owners = {doc.display: doc for doc in self.documents}
        dialplan_files = {doc.real for doc in self.documents}
        used: dict[Path, tuple[str, Place]] = {}
        for key, entry in groups.items():
            path: DataPath = ("groups", key, "members_file")
            item = entry.get("members_file") if isinstance(entry, dict) else None
            node = merged.places.get(path)
            if not isinstance(item, str) or not item or node is None or not merged.valid(path):
                continue
            at = node.value
            owner = owners.get(at.path)
            if owner is None:
                continue
            file = owner.real.parent / item
            real = _real(file)
            if real in used:
                other, first = used[real]
                self.report(at, f"members file {item!r} is already the members file of group {other!r} at {first}")
                continue
            if real in dialplan_files:
                self.report(at, f"members file {item!r} is a dialplan file, not a list of members")
                continue
            used[real] = (key, at)
            display = os.path.normpath(os.path.join(os.path.dirname(owner.display), item))
            merged.members_files[key] = display
            named.append(display)
            if not file.exists():
                self.report(at, f"members file {item!r} of group {key!r} does not exist yet: the group has no"
                            " members from it (pbx group add creates it)", "warning")
                continue
            members = self._read_members(display, file, key)
            if members is None:
                merged.complete = False
                continue
            doc, data = members
            merged.places.update(doc.places)
            merged.invalid.update(doc.invalid)
            entry[loader_groups.FILE_MEMBERS] = data
        return tuple(named)

    def _read_members(self, display: str, file: Path, key: str) -> tuple[Document, dict[str, Any]] | None:
        """A members file's data (short number -> member) with its places
        under ``groups.<key>.file_members``; None after reporting why not."""
        self._order.setdefault(display, len(self._order))
        doc = Document(display=display, real=_real(file))
        if not file.is_file():  # a directory, or a FIFO that would block the read
            kind = "a directory" if file.is_dir() else "not a regular file"
            self.report(Place(display, 1, 1), f"members file of group {key!r} is {kind}")
            return None
        text = self._read_text(doc, file)
        if text is None:
            return None
        prefix: DataPath = ("groups", key, loader_groups.FILE_MEMBERS)
        data = self.yaml_mapping(doc, text, prefix, "a members file must map short numbers to members"
                                                    " (601: {name: ..., extension: ...})")
        if data is None:
            return None
        if data is _EMPTY:
            doc.places.put(prefix, None, Place(display, 1, 1))
            return doc, {}
        # Validate as the group's inline `members` would be, so messages
        # read the same; then move the findings to where this file's nodes are.
        for error in _schema_errors({"groups": {key: {"members": data}}}):
            for path, at, message in _schema_findings(error):
                moved: DataPath = (*prefix, *path[3:])
                doc.invalid.add(moved)
                node = doc.places.get(moved) or doc.places[prefix]
                place = node.key if at == "key" and node.key is not None else node.value
                self.report(place, message)
        return doc, data

    def _read_text(self, doc: Document, file: Path) -> str | None:
        """The file's text, or None after reporting why it cannot be had."""
        start = Place(doc.display, 1, 1)
        try:
            with file.open("rb") as stream:
                raw = stream.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            self.report(start, f"cannot read file: {exc.strerror or exc}")
            return None
        if len(raw) > MAX_FILE_BYTES:
            self.report(start, f"file is larger than {MAX_FILE_BYTES} bytes")
            return None
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            self.report(Place(doc.display, line, column), "file is not valid UTF-8")
            return None

    def _parse(self, doc: Document, file: Path) -> None:
        text = self._read_text(doc, file)
        if text is None:
            return
        data = self.yaml_mapping(doc, text)
        if data is None or data is _EMPTY:
            doc.data = {} if data is _EMPTY else None  # an empty file is an empty fragment
            return
        doc.data = data
        for error in _schema_errors(data):
            for path, at, message in _schema_findings(error):
                doc.invalid.add(path)
                node = doc.places.get(path) or doc.places[()]
                place = node.key if at == "key" and node.key is not None else node.value
                self.report(place, message)

    def yaml_mapping(self, doc: Document, text: str, root: DataPath = (),
                     must: str = "a dialplan file must be a mapping of sections (domain, extensions, ...)",
                     ) -> dict[str, Any] | None:
        """A file's mapping, its places in ``doc`` under ``root``; None after
        reporting why there is none (``must``: what it should have been),
        :data:`_EMPTY` for an empty file."""
        data = self._read_block(doc, text, root)
        if data is not None:
            return data
        parsed, node = self._compose(doc, text)
        if not parsed:
            return None
        if node is None:
            return _EMPTY
        converter = _Converter(doc, self.report)
        try:
            data = converter.convert(node, root, dotted(root))
        except _TooBig as exc:
            self.report(exc.place, exc.message)
            return None
        if not isinstance(data, dict):
            self.report(converter.place(node), f"{must}, not {_describe(data)}")
            return None
        return data

    def _read_block(self, doc: Document, text: str, root: DataPath) -> dict[str, Any] | None:
        """The file's mapping and places by :mod:`pbx.routing.yaml_fast`, or
        None (nothing reported) for text it leaves to composition."""
        if not self._fast_yaml:
            return None
        block = yaml_fast.read_block_yaml(text, doc.display, root=root, root_name=dotted(root),
                                          max_nodes=MAX_NODES, max_depth=MAX_DEPTH)
        if block is None:
            return None
        data, places = block
        doc.places.raw.update(places)
        return data

    def _compose(self, doc: Document, text: str) -> tuple[bool, YamlNode | None]:
        """(True, root node or None if empty) or (False, None) after reporting."""
        composed, fast = yaml_compose.compose(text)  # libyaml, for text it accepts
        if composed:
            return True, fast
        # Text libyaml refused (or no libyaml): ruamel.yaml composes it and
        # its errors give the messages. The safe parser gives the same nodes,
        # tags (YAML 1.2) and marks as the round-trip one without gathering
        # comments; pure=True keeps the messages the same whether or not
        # ruamel's C extension is installed. Imported here: a valid plan
        # never needs ruamel.yaml.
        from ruamel.yaml import YAML
        from ruamel.yaml.error import MarkedYAMLError, YAMLError
        from ruamel.yaml.reader import ReaderError

        yaml = YAML(typ="safe", pure=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                node: YamlNode | None = yaml.compose(text)
            return True, node
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            place = Place(doc.display, mark.line + 1, mark.column + 1) if mark else Place(doc.display, 1, 1)
            message = f"YAML syntax error: {exc.problem or exc.context or 'invalid YAML'}"
            context_mark = exc.context_mark
            if exc.problem and exc.context and context_mark is not None:
                message += (
                    f" ({exc.context} at line {context_mark.line + 1},"
                    f" column {context_mark.column + 1})"
                )
            self.report(place, message)
        except ReaderError as exc:
            line, column = _line_col(text, int(exc.position))
            character = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
            self.report(
                Place(doc.display, line, column),
                f"YAML syntax error: character U+{character:04X} is not allowed",
            )
        except YAMLError as exc:
            self.report(Place(doc.display, 1, 1), f"YAML syntax error: {exc}")
        except RecursionError:
            self.report(Place(doc.display, 1, 1), "YAML nesting is too deep")
        return False, None


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


# ---------------------------------------------------------------- semantic checks


def _check_domain(plan: Merged, root: Place, report: Report) -> None:
    domain = plan.data.get("domain")
    if "domain" not in plan.data:
        if not plan.complete:
            return
        report(root, "no 'domain' given; set the SIP domain, e.g. 'domain: pbx.example.com'")
        return
    if not isinstance(domain, str) or not plan.valid(("domain",)):
        return
    if not _valid_domain(domain):
        report(
            plan.value_place(("domain",), root),
            f"domain {domain!r} is neither a host name nor an IP address",
        )


def _valid_domain(domain: str) -> bool:
    try:
        ipaddress.ip_address(domain.removeprefix("[").removesuffix("]"))
        return True
    except ValueError:
        pass
    labels = domain.removesuffix(".").split(".")
    return all(_HOSTNAME_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def _check_trusted_proxies(plan: Merged, root: Place, report: Report) -> None:
    section = plan.data.get("security")
    if not isinstance(section, dict) or not plan.valid(("security", "trusted_proxies")):
        return
    for index, address in enumerate(section.get("trusted_proxies", [])):
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            report(plan.value_place(("security", "trusted_proxies", index), root),
                   f"trusted_proxies: {address!r} is not an IP address")


def _check_registrar(plan: Merged, root: Place, report: Report) -> None:
    section = plan.data.get("registrar")
    if not isinstance(section, dict):
        return
    defaults = RegistrarSettings()

    def given(key: str) -> int | None:
        value = section.get(key, getattr(defaults, key))
        ok = plan.valid(("registrar", key)) and isinstance(value, int | float)
        return int(value) if ok and not isinstance(value, bool) else None

    low, high, default = given("min_expires"), given("max_expires"), given("default_expires")
    if low is None or high is None or default is None:
        return
    fallback = plan.key_place(("registrar",), root)
    if low > high:
        report(
            plan.value_place(("registrar", "min_expires"), fallback),
            f"registrar min_expires ({low}) is greater than max_expires ({high})",
        )
    elif not low <= default <= high:
        key = "default_expires" if "default_expires" in section else (
            "min_expires" if default < low else "max_expires"
        )
        report(
            plan.value_place(("registrar", key), fallback),
            f"registrar default_expires ({default}) must lie between "
            f"min_expires ({low}) and max_expires ({high})",
        )


def _check_extensions(plan: Merged, root: Place, report: Report) -> None:
    extensions = plan.data.get("extensions")
    departments = plan.data.get("departments")
    known = set(departments) if isinstance(departments, dict) else set()
    if not isinstance(extensions, dict):
        return
    for number, entry in extensions.items():
        path: DataPath = ("extensions", number)
        if not isinstance(entry, dict):
            continue
        # Places are looked up only for a message: most extensions have none.
        department = entry.get("department")
        if isinstance(department, str) and department and department not in known and plan.complete:
            report(
                plan.value_place((*path, "department"), plan.key_place(path, root)),
                f"extension {number!r} has unknown department {department!r}"
                + suggest(department, known),
            )
        password = entry.get("password")
        has_ha1 = "ha1_md5" in entry or "ha1_sha256" in entry
        if "password" not in entry and not has_ha1:
            report(plan.key_place(path, root), f"extension {number!r} has no password, ha1_md5 or ha1_sha256")
        elif "password" in entry and has_ha1:
            report(
                plan.key_place((*path, "password"), plan.key_place(path, root)),
                f"extension {number!r} has both a password and an HA1 hash; give only one",
            )
        if isinstance(password, str) and password and (password == number or len(password) < WEAK_PASSWORD_LENGTH) \
                and plan.valid((*path, "password")):
            at = plan.value_place((*path, "password"), plan.key_place(path, root))
            if password == number:
                report(at, f"extension {number!r} uses its own number as password", "warning")
            else:
                report(
                    at,
                    f"password of extension {number!r} is shorter than "
                    f"{WEAK_PASSWORD_LENGTH} characters",
                    "warning",
                )


def _check_calls(plan: Merged, root: Place, report: Report) -> None:
    section = plan.data.get("calls")
    if not isinstance(section, dict):
        return
    defaults = CallSettings()
    fallback = plan.key_place(("calls",), root)

    def given(key: str) -> int | None:
        value = section.get(key, getattr(defaults, key))
        ok = plan.valid(("calls", key)) and isinstance(value, int) and not isinstance(value, bool)
        return int(value) if ok else None

    min_se, session_expires = given("min_se"), given("session_expires")
    short = section.get("allow_short_timers") is True
    if min_se is not None and min_se < RFC_MIN_SE and not short:
        report(
            plan.value_place(("calls", "min_se"), fallback),
            f"calls min_se ({min_se}) is below RFC 4028's floor of {RFC_MIN_SE} seconds; "
            "phones refuse it (set allow_short_timers: true only in tests)",
        )
    if min_se is not None and session_expires is not None and session_expires < min_se:
        key = "session_expires" if "session_expires" in section else "min_se"
        report(
            plan.value_place(("calls", key), fallback),
            f"calls session_expires ({session_expires}) must not be below min_se ({min_se})",
        )


_CHECKS: Final[tuple[Check, ...]] = (
    _check_domain, _check_registrar, _check_trusted_proxies, _check_extensions, _check_calls,
    *loader_routing.CHECKS,
    *loader_groups.CHECKS, *loader_hunt.CHECKS, *loader_ivr.CHECKS, *loader_codes.CHECKS, *loader_cost.CHECKS,
    *loader_conference.CHECKS,
    *loader_ldap.CHECKS, *loader_voicemail.CHECKS, *loader_recording.CHECKS,
)
"""Semantic checks, run in order on the merged plan; add new ones here."""


# ---------------------------------------------------------------- build


def _features(section: dict[str, Any]) -> FeatureSettings:
    fields: dict[str, Any] = {k: (str(v) if k == "presence_visibility" else int(v)) for k, v in section.items()}
    return FeatureSettings(**fields)


def _feature_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """An extension's forwards, do not disturb, call limit and pickup group."""
    fields: dict[str, Any] = {}
    if "forward" in entry:
        fields["forward"] = Forwards(**{k: str(v) for k, v in entry["forward"].items()})
    if "dnd" in entry:
        fields["dnd"] = entry["dnd"] is True
    if "max_calls" in entry:
        fields["max_calls"] = int(entry["max_calls"])
    if "pickup_group" in entry:
        fields["pickup_group"] = str(entry["pickup_group"])
    return fields


def yaml_files_in(folder: Path) -> list[Path]:
    """The files an included folder contributes, in the order they are read."""
    return sorted(p for p in folder.iterdir() if p.suffix == ".yaml" and p.is_file())


def _rule_places(plan: Merged, named: list[tuple[str, Place]]) -> RulePlaces:
    """Every node under its dotted path, at its key if it has one, then the
    rules ``named`` besides (a later name wins, as in a dict)."""
    raws = [raw for path, raw in plan.places.raw.items() if path]
    return RulePlaces.of(
        [raw[1] for raw in raws] + [name for name, _ in named],
        [raw[0] for raw in raws] + [place.path for _, place in named],
        [raw[2] or raw[4] for raw in raws] + [place.line for _, place in named],
        [raw[3] or raw[5] for raw in raws] + [place.column for _, place in named],
    )


def _build(plan: Merged, sources: tuple[str, ...], folders: tuple[str, ...] = ()) -> Dialplan:
    """The model from merged data that passed the schema and every check."""
    data = plan.data
    # Only keys given in the file are passed, so the model's defaults apply.
    registrar: dict[str, Any] = {
        k: (tuple(str(a) for a in v) if k == "auth_algorithms" else int(v))
        for k, v in data.get("registrar", {}).items()
    }
    security: dict[str, Any] = {
        k: (tuple(str(m) for m in v) if k == "digest_without_qop" else v is True if isinstance(v, bool) else int(v))
        for k, v in data.get("security", {}).items() if k not in ("outside_calls", "trusted_proxies")
    }
    if "trusted_proxies" in data.get("security", {}):
        security["trusted_proxies"] = frozenset(
            str(ipaddress.ip_address(str(a))) for a in data["security"]["trusted_proxies"])
    security.update(loader_routing.outside_call_limits(data.get("security", {}), SecuritySettings().outside_calls))
    calls: dict[str, Any] = {
        k: (v is True if k == "allow_short_timers" else int(v)) for k, v in data.get("calls", {}).items()
    }
    departments = {
        key: Department(key=key, name=str(entry["name"]), **loader_routing.department_fields(entry))
        for key, entry in data.get("departments", {}).items()
    }
    routing = loader_routing.build_routing(plan)
    extensions: dict[str, Extension] = {}
    for number, entry in data.get("extensions", {}).items():
        limits: dict[str, Any] = {k: int(entry[k]) for k in ("ring_timeout", "max_contacts") if k in entry}
        # Most entries set none of these: no call for them (20,000 extensions).
        if not loader_routing.EXTENSION_KEYS.isdisjoint(entry):
            limits.update(loader_routing.extension_fields(entry))
        if not loader_cost.EXTENSION_KEYS.isdisjoint(entry):
            limits.update(loader_cost.extension_fields(entry, data, routing["number_lists"]))
        if "nat" in entry:
            limits["nat"] = str(entry["nat"])
        limits.update(_feature_fields(entry))
        if "media_encryption" in entry:
            limits["media_encryption"] = str(entry["media_encryption"])
        limits.update({key: str(entry[key]) for key in ("email", "mobile", "ldap_dn") if key in entry})
        extensions[number] = Extension(
            number=number,
            name=str(entry["name"]),
            department=str(entry["department"]),
            password=entry.get("password"),
            ha1_md5=entry.get("ha1_md5"),
            ha1_sha256=entry.get("ha1_sha256"),
            **limits,
        )
    routing.update(loader_cost.build_cost(plan, routing["number_lists"]))
    routing["places"] = _rule_places(plan, [*routing["places"], *loader_groups.member_places(plan)])
    return Dialplan(
        domain=str(data["domain"]),
        registrar=RegistrarSettings(**registrar),
        security=SecuritySettings(**security),
        calls=CallSettings(**calls),
        features=_features(data.get("features", {})),
        departments=departments,
        extensions=extensions,
        sources=sources,
        source_folders=folders,
        groups=loader_groups.build_groups(plan),
        hunt_groups=loader_hunt.build_hunt_groups(plan, dict(routing["schedules"])),
        ivr_menus=loader_ivr.build_menus(plan, routing["schedules"]),
        conferences=loader_conference.build_conferences(plan),
        parking=loader_conference.build_parking(plan),
        media=loader_ivr.build_media(plan),
        account_codes=loader_codes.build_account_codes(plan),
        ldap=loader_ldap.build_ldap(plan),
        voicemail=loader_voicemail.build_voicemail(plan),
        recording=loader_recording.build_recording(plan),
        **routing,
    )
