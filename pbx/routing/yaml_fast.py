"""Plain block YAML straight to data and places, without a node tree.

Composing a plan with libyaml and converting its nodes is the largest
part of a reload: for 20,000 extensions, 200,000 node objects made in C
and walked again in Python, 0.16 + 0.12 s of CPU here, where reading the
lines takes 0.20 s (one process, bench/make_users.py's plan, best of 3).
Plans as people and ``bench/make_users.py`` write them are mostly the
simplest YAML: one ``key: value`` or ``- item`` per line, nested by
indentation. This module reads that shape line by line, giving the data
and the places the loader's converter would give
(:data:`~pbx.routing.loader_common.RawPlace` for every node, as libyaml
marks them).

It reads only what it is sure of and answers None for anything else:
anchors, aliases, tags, flow collections (``[a, b]``, ``{a: 1}``), block
and multi-line scalars, escapes in double quotes, an empty value, tabs,
``\\r``, a document marker, a duplicate or merge key, a plain scalar
with ``: `` in it, a character libyaml would refuse. The loader then
reads the file as before, so anything unusual (and every error) gets
today's data, places and messages. tests/routing/test_yaml_fast.py holds
the two paths to the same answer on every YAML file under tests/ and
dialplans/ (as written and rewritten in block style) and on hundreds of
mutated plans.

Plain scalars are typed by the same YAML 1.2 table and rules as the
composed path (:func:`pbx.routing.yaml_compose.plain_tag`,
:func:`~pbx.routing.yaml_compose.scalar_value`); keys keep their source
text (``0100:`` stays ``"0100"``, ``1001:`` and ``'1001':`` are one key).
"""

from __future__ import annotations

import re
from typing import Any, Final

from pbx.routing.loader_common import DataPath, RawPlace
from pbx.routing.yaml_compose import STR_TAG, plain_tag, scalar_value

MAX_KEY: Final = 1000
"""libyaml refuses a key whose colon is more than 1,024 characters after
its start (a simple key); this reader leaves keys that long to it."""

_REFUSED: Final = re.compile("[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
"""Characters this reader leaves to libyaml: tabs, \\r, controls, NEL and the
Unicode line and paragraph separators (line breaks to YAML 1.1), a BOM."""

_PLAIN: Final = r"""(?:[^\s&*!|>\[\]{},%@`"'\#?:\-]|-(?=[^\ ]))(?:[^\ :]|\ +(?=[^\ \#])|:(?=[^\ ]))*+"""
"""A plain scalar on one line: not starting with an indicator (``-`` only
before a non-space), no ``: `` or `` #`` in it, no space or ``:`` at its end."""

_LINE: Final = re.compile(r"""
    (\ *)                                       # indentation
    (-\ +)?                                     # a sequence item
    (?:("[^"\\]*"|'(?:[^']|'')*'                # a quoted key without escapes,
        |[^\s\-?:,\[\]{}\#&*!|>'"%@`][^:\#,\[\]{}]*?)    # or a plain one without : # or flow characters
       (\ *:(?:\ +|$)))?                        # and its colon
    (?:"([^"\\]*)"|'((?:[^']|'')*)'|(""" + _PLAIN + r"""))?   # a scalar value
    \ *(?:(?<!\S)\#.*)?                         # a comment, after a space or alone
""", re.VERBOSE)
"""One line of plain block YAML, in groups: indentation, ``- ``, key, the
colon with its spaces, and the value double-quoted, single-quoted or plain.
A line it does not match whole is not read here."""


class _Mapping:
    __slots__ = ("column", "items", "path", "name")

    def __init__(self, column: int, items: dict[str, Any], path: DataPath, name: str) -> None:
        self.column, self.items, self.path, self.name = column, items, path, name


class _Sequence:
    __slots__ = ("column", "items", "path", "name", "indentless")

    def __init__(self, column: int, items: list[Any], path: DataPath, name: str, *, indentless: bool) -> None:
        self.column, self.items, self.path, self.name = column, items, path, name
        self.indentless = indentless
        """Its items in its key's column (``key:`` then ``- item``): a line
        there without ``- `` is the mapping's next key."""


_NONE: Final = object()
"""No value on the line (``key:`` before a nested block, a blank line)."""


class _NotSure(Exception):
    """Input this reader leaves to the composed path."""


def read_block_yaml(text: str, display: str, *, root: DataPath = (), root_name: str = "",
                    max_nodes: int, max_depth: int) -> tuple[dict[str, Any], dict[DataPath, RawPlace]] | None:
    """The mapping ``text`` holds and every node's place, each named under
    ``root`` (``root_name`` its dotted name), as the loader's converter
    records them; None if the text is not plain block YAML this reader is
    sure of, or goes past ``max_nodes`` or ``max_depth`` (the converter's
    limits: it reports them)."""
    if _REFUSED.search(text) is not None:
        return None
    try:
        return _read(text, display, root, root_name, max_nodes, max_depth)
    except _NotSure:
        return None


def _read(text: str, display: str, root: DataPath, root_name: str, max_nodes: int,
          max_depth: int) -> tuple[dict[str, Any], dict[DataPath, RawPlace]] | None:
    places: dict[DataPath, RawPlace] = {}
    # The collections open around the current line, innermost last, and the
    # innermost's fields in locals (most lines are a `key: value` in it).
    stack: list[_Mapping | _Sequence] = []
    top: _Mapping | _Sequence | None = None
    column = -1
    items: Any = None
    here: DataPath = root
    prefix = ""
    # A `key:` with nothing after it: (its mapping, key, path, name, line,
    # column), waiting for the nested block the next line must open.
    pending: tuple[_Mapping, str, DataPath, str, int, int] | None = None
    nodes = 0
    tags = _TAGS
    match_line = _LINE.fullmatch
    for number, line in enumerate(text.split("\n"), 1):
        parts = match_line(line)
        if parts is None:
            return None
        spaces, dash, key, colon, double, single, plain = parts.groups()
        if plain is not None:
            value = plain if (tag := tags.get(plain)) is STR_TAG else _typed(plain, tag)
        elif double is not None:
            value = double
        elif single is not None:
            value = single.replace("''", "'")
        else:
            value = _NONE
        if key is None and dash is None:
            if value is _NONE:
                continue  # blank or a comment
            return None  # a scalar on a line of its own: continued, or a document of one
        indent = len(spaces)
        if top is None:
            if indent or dash or pending is not None:
                return None  # only a mapping at column 1 is read here
            top = _Mapping(0, {}, root, root_name)
            stack.append(top)
            column, items, here, prefix = 0, top.items, root, f"{root_name}." if root_name else ""
            places[root] = (display, root_name, 0, 0, number, 1)
            nodes += 1
        elif pending is not None:
            owner, owner_key, path, name, key_line, key_column = pending
            if indent < owner.column or (indent == owner.column and not dash):
                return None  # an empty value
            top = (_Sequence(indent, [], path, name, indentless=indent == owner.column) if dash
                   else _Mapping(indent, {}, path, name))
            owner.items[owner_key] = top.items
            places[path] = (display, name, key_line, key_column, number, indent + 1)
            nodes += 1
            stack.append(top)
            column, items, here, prefix = indent, top.items, path, f"{name}." if name else ""
            pending = None
        elif indent != column:
            if indent > column:
                return None  # a scalar continued on this line, or a stray indent
            while stack[-1].column > indent:
                stack.pop()
                if not stack:
                    return None
            top = stack[-1]
            if top.column != indent:
                return None
            column, items, here = indent, top.items, top.path
            prefix = f"{top.name}." if top.name else ""
        if dash is None and isinstance(top, _Sequence) and top.indentless:
            stack.pop()  # the key after a sequence written in its key's column
            top = stack[-1]
            items, here = top.items, top.path
            prefix = f"{top.name}." if top.name else ""
        key_column = indent
        if dash is not None:
            if not isinstance(top, _Sequence):
                return None  # an item where a mapping's key should be
            index = len(items)
            path = (*here, index)
            name = f"{top.name}[{index}]"
            key_column += len(dash)
            if len(path) > max_depth:
                return None
            nodes += 1
            if key is None:
                if value is _NONE:
                    return None  # an empty item
                items.append(value)
                places[path] = (display, name, 0, 0, number, key_column + 1)
                continue
            item: dict[str, Any] = {}
            items.append(item)
            places[path] = (display, name, 0, 0, number, key_column + 1)
            top = _Mapping(key_column, item, path, name)
            stack.append(top)
            column, items, here, prefix = key_column, item, path, f"{name}."
        elif key is None or not isinstance(top, _Mapping):
            return None
        # A mapping entry: `key: value`, or `key:` before a nested block.
        written = key
        first = key[0]
        if first == '"':
            key = key[1:-1]
        elif first == "'":
            key = key[1:-1].replace("''", "'")
        elif key == "<<":
            return None  # a merge key
        if key in items or len(written) + len(colon) > MAX_KEY:
            return None
        path = (*here, key)
        name = prefix + key
        if len(path) > max_depth:
            return None
        if value is _NONE:
            pending = (top, key, path, name, number, key_column + 1)
            continue
        items[key] = value
        places[path] = (display, name, number, key_column + 1, number, key_column + len(written) + len(colon) + 1)
        nodes += 1
    if pending is not None or not stack or nodes > max_nodes:
        return None  # an empty value at the end, or no mapping at all
    data = stack[0].items
    assert isinstance(data, dict)
    return data, places


class _Tags(dict[str, str]):
    """A plain scalar's tag by its text, resolved on first sight."""

    def __missing__(self, text: str) -> str:
        tag = self[text] = plain_tag(text)
        return tag


_TAGS: Final = _Tags()


def _typed(text: str, tag: str | None) -> Any:
    """A plain scalar that is no string: ``100`` as the converter reads it;
    raises _NotSure for what it would report (``0b2``, a ``=``)."""
    if tag is None:
        tag = _TAGS[text]
        if tag is STR_TAG:
            return text
    try:
        return scalar_value(tag, text)
    except (ValueError, LookupError):
        raise _NotSure from None
