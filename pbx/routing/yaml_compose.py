"""YAML text to a node tree with libyaml (C), typed as ruamel.yaml types it.

ruamel.yaml composes in pure Python: about 85 % of loading a plan, some
10 s of CPU for 20,000 extensions. PyYAML's libyaml binding composes the
same tree (scalars, sequences, mappings, anchors shared, each node with its
0-based line and column) in C. Two things keep the result the same as
ruamel's:

- implicit tags follow YAML 1.2, from a copy of ruamel's own table
  (``yes``, ``on`` and ``0755`` stay what 1.2 says, not what libyaml's 1.1
  would);
- libyaml is used only for text it accepts: on any error the caller parses
  again with ruamel.yaml, whose messages (``file:line:col``) the loader
  reports. So valid files load fast and invalid ones read as before.

One difference: an empty value (``name:``) is placed right after its key's
colon, where ruamel.yaml places it at the next token, often a later line;
a message about it now names the key's line.

libyaml caps nesting (1,000 levels), so deep input is an error here and
ruamel's own depth check answers it. Without libyaml (PyYAML built
without it) `compose` always defers to ruamel.
"""

from __future__ import annotations

import re
from typing import Any, Final, Protocol

import yaml
from yaml.nodes import MappingNode, ScalarNode
from yaml.resolver import BaseResolver

STR_TAG: Final = BaseResolver.DEFAULT_SCALAR_TAG
_TAG: Final = "tag:yaml.org,2002:"
_SEQ_TAG: Final = BaseResolver.DEFAULT_SEQUENCE_TAG
_MAP_TAG: Final = BaseResolver.DEFAULT_MAPPING_TAG


class YamlNode(Protocol):
    """What the loader reads of a node, libyaml's or ruamel.yaml's."""

    id: str  # "scalar", "sequence" or "mapping"
    tag: Any
    value: Any
    start_mark: Any  # .line and .column, 0-based


class _Resolver(BaseResolver):
    """Implicit tags of YAML 1.2, as ruamel.yaml resolves them.

    libyaml asks for the tag of every node, and PyYAML's composer calls two
    more methods per node for path resolvers, which nothing here registers:
    four calls into Python per node, the cost of composing a large plan. So
    the two path methods do nothing, a collection or a quoted scalar gets
    its kind's default tag at once, and a plain scalar's tag, which depends
    only on its text, is matched against the table once per document: a
    plan repeats the same keys and values thousands of times (``name``,
    ``department``, ``max_calls``).
    """

    yaml_implicit_resolvers: dict[Any, list[tuple[str, Any]]] = {}
    # No path resolvers (add_path_resolver) are registered: the composer's
    # calls around each node need not walk them. A dict's get takes the two
    # arguments and a tuple none; both are C, not a Python call each.
    descend_resolver: Any = {}.get
    ascend_resolver: Any = tuple

    def __init__(self) -> None:
        super().__init__()
        self._plain: dict[str, str] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is not ScalarNode:
            return _MAP_TAG if kind is MappingNode else _SEQ_TAG
        if not implicit[0]:  # not to be typed by its text: a string, as BaseResolver answers
            return STR_TAG
        tag = self._plain.get(value)
        if tag is None:
            tag = self._plain[value] = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return tag


YAML_1_2_IMPLICIT: Final[tuple[tuple[str, int, tuple[str, ...], str], ...]] = (
    ('tag:yaml.org,2002:bool', re.X, ('t', 'T', 'f', 'F'),
     '^(?:true|True|TRUE|false|False|FALSE)$'),
    ('tag:yaml.org,2002:float', re.X, ('-', '+', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '.'),
     '^(?:\n         [-+]?(?:[0-9][0-9_]*)\\.[0-9_]*(?:[eE][-+]?[0-9]+)?\n        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)\n        |[-+]?\\.[0-9_]+(?:[eE][-+][0-9]+)?\n        |[-+]?\\.(?:inf|Inf|INF)\n        |\\.(?:nan|NaN|NAN))$'),
    ('tag:yaml.org,2002:int', re.X, ('-', '+', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'),
     '^(?:[-+]?0b[0-1_]+\n        |[-+]?0o?[0-7_]+\n        |[-+]?[0-9_]+\n        |[-+]?0x[0-9a-fA-F_]+)$'),
    ('tag:yaml.org,2002:merge', 0, ('<',),
     '^(?:<<)$'),
    ('tag:yaml.org,2002:null', re.X, ('~', 'n', 'N', ''),
     '^(?: ~\n        |null|Null|NULL\n        | )$'),
    ('tag:yaml.org,2002:timestamp', re.X, ('0', '1', '2', '3', '4', '5', '6', '7', '8', '9'),
     '^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]\n        |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?\n        (?:[Tt]|[ \\t]+)[0-9][0-9]?\n        :[0-9][0-9] :[0-9][0-9] (?:\\.[0-9]*)?\n        (?:[ \\t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$'),
    ('tag:yaml.org,2002:value', 0, ('=',),
     '^(?:=)$'),
    ('tag:yaml.org,2002:yaml', 0, ('!', '&', '*'),
     '^(?:!|&|\\*)$'),
)
"""ruamel.yaml's implicit tags for YAML 1.2: (tag, flags, first characters,
pattern), copied so that composing never imports ruamel.yaml (a fortieth
of a second of a reload child's start); tests/routing/test_yaml_compose.py
holds it to ruamel's own table."""

for _tag, _flags, _first, _pattern in YAML_1_2_IMPLICIT:
    _Resolver.add_implicit_resolver(_tag, re.compile(_pattern, _flags), list(_first))

# PyYAML built without libyaml has no CParser: then ruamel.yaml composes all.
_CParser: Any = getattr(yaml, "cyaml", None) and getattr(yaml.cyaml, "CParser", None)


if _CParser is not None:

    class _Composer(_CParser, _Resolver):  # type: ignore[misc]
        def __init__(self, text: str) -> None:
            _CParser.__init__(self, text)
            _Resolver.__init__(self)


_PLAIN_RESOLVER: Final = _Resolver()


def plain_tag(text: str) -> str:
    """The tag YAML 1.2 gives a plain scalar written ``text``, as libyaml's
    composition resolves it here (looked up once per text)."""
    tag: str = _PLAIN_RESOLVER.resolve(ScalarNode, text, (True, False))
    return tag


def scalar_value(tag: str, text: str) -> Any:
    """A scalar's value under its tag, as the loader reads it: a timestamp
    stays text, ``0o17`` and ``0x1F`` are integers, ``.inf`` a float.
    Raises ValueError for text its tag cannot read (``0b2`` as an int) and
    LookupError for a tag the loader does not read (``!!binary``, ``=``)."""
    if tag == STR_TAG:
        return text
    kind = tag.removeprefix(_TAG) if tag.startswith(_TAG) else None
    if kind == "timestamp":
        return text
    if kind == "null":
        return None
    if kind == "bool":
        return text.lower() == "true"
    if kind == "int":
        return _yaml_int(text)
    if kind == "float":
        return _yaml_float(text)
    raise LookupError(tag)


def _yaml_int(text: str) -> int:
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    lowered = digits.lower()
    for prefix, base in (("0x", 16), ("0o", 8), ("0b", 2)):
        if lowered.startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits, 10)


def _yaml_float(text: str) -> float:
    lowered = text.replace("_", "").lower()
    if lowered.lstrip("+-") == ".inf":
        return float("-inf") if lowered.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(lowered)


def compose(text: str) -> tuple[bool, Any]:
    """(True, root node or None for an empty document), or (False, None)
    when libyaml is missing or refused the text: then compose with ruamel."""
    if _CParser is None or text.startswith("%") or "\n%" in text:
        # A directive (%YAML 1.1) changes how ruamel.yaml types scalars: its call.
        return False, None
    composer = _Composer(text)
    try:
        return True, composer.get_single_node()
    except Exception:  # any refusal: ruamel.yaml parses it again and says what is wrong
        return False, None
    finally:
        composer.dispose()
