"""libyaml composes what ruamel.yaml composes: same tags (YAML 1.2), values
and places; text it refuses is left to ruamel.yaml (and its messages)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from ruamel.yaml import YAML

from pbx.routing import yaml_compose
from pbx.routing.loader import check_dialplan

DOCUMENTS = [
    "",
    "# only a comment\n",
    "domain: pbx.example.com\n",
    # YAML 1.2: yes/on/no are strings, 0755 a decimal, 0o17 octal, 1_000 not an int.
    "a: yes\nb: on\nc: no\nd: 0755\ne: 0o17\nf: 0x1F\ng: 1_000\nh: ~\ni: null\nj: true\nk: False\n",
    "floats: [1.5, -2e3, .inf, -.Inf, .nan, 1.]\ntimes: [2026-01-01, '2026-01-01', 12:30]\n",
    'quoted: ["1001", \'yes\', "tab\\there", "\\u00e9", "\\/"]\nplain: [1001, +12, -7]\n',
    "base: &base {department: sales, max_calls: 2}\n"
    "extensions:\n  '1001': {<<: *base, name: An}\n  '1002':\n    <<: [*base]\n    name: Binh\n",
    "text: |\n  line one\n  line two\nfolded: >-\n  a\n  b\n",
    "list:\n- a\n- - b\n  - c\n- {d: [e, {f: g}]}\n",
    "? complex\n: value\n'quoted key': 1\n\"double\": 2\n",
    "explicit: !!str 123\nbinary: !!int '12'\n",
    "tên: Tô Thị Mới\n部門: 營業部\n",
]


def _tree(node: Any) -> Any:
    if node is None:
        return None
    place = (node.start_mark.line, node.start_mark.column)
    if node.id == "scalar":
        return (str(node.tag), node.value, place)
    if node.id == "sequence":
        return (str(node.tag), [_tree(item) for item in node.value], place)
    return (str(node.tag), [(_tree(k), _tree(v)) for k, v in node.value], place)


@pytest.mark.parametrize("text", DOCUMENTS)
def test_libyaml_gives_ruamels_tree(text: str) -> None:
    composed, fast = yaml_compose.compose(text)
    assert composed
    assert _tree(fast) == _tree(YAML(typ="safe", pure=True).compose(text))


def test_an_empty_value_is_placed_after_its_key_not_on_the_next_line() -> None:
    """The one difference: ruamel.yaml places an empty value at the next
    token (a later line); libyaml right after the colon, so a message about
    it names the key's own line."""
    composed, fast = yaml_compose.compose("name:\n\n# later\nnext: 1\n")
    assert composed
    empty = fast.value[0][1]
    assert (str(empty.tag), empty.value, empty.start_mark.line, empty.start_mark.column) == (
        "tag:yaml.org,2002:null", "", 0, 5)


@pytest.mark.parametrize("text", [
    "a: [1, 2\n",              # unclosed flow sequence
    "a: b: c\n",               # mapping values not allowed here
    "a: 1\n---\nb: 2\n",       # two documents
    "a: *nowhere\n",           # undefined alias
    "[" * 5000 + "]" * 5000,   # deeper than libyaml's limit
    "a: \"\\q\"\n",            # unknown escape
    "%YAML 1.1\n---\na: yes\n",  # a directive: ruamel.yaml types the scalars by its version
])
def test_text_libyaml_refuses_is_left_to_ruamel(text: str) -> None:
    assert yaml_compose.compose(text) == (False, None)


def test_a_syntax_error_still_has_ruamels_message_and_place(tmp_path: Any) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("domain: pbx.example.com\nextensions:\n  '1001': {name: An, department: [sales\n")
    (problem,) = check_dialplan(plan)
    assert problem.path == str(plan) and problem.line == 4
    assert problem.message.startswith("YAML syntax error: ")


def test_the_yaml_1_2_table_is_ruamels() -> None:
    """The copy composing uses (so a reload never imports ruamel.yaml) says
    what ruamel.yaml's own table says."""
    from ruamel.yaml import resolver

    theirs = [(tag, regexp.pattern, regexp.flags, list(first))
              for versions, tag, regexp, first in resolver.implicit_resolvers if (1, 2) in versions]
    ours = [(tag, re.compile(pattern, flags).pattern, re.compile(pattern, flags).flags, list(first))
            for tag, flags, first, pattern in yaml_compose.YAML_1_2_IMPLICIT]
    assert ours == theirs
