"""The line reader of plain block YAML against the composed path.

The loader trusts :mod:`pbx.routing.yaml_fast` whenever it answers, so an
answer must be exactly what composing and converting give: the same data
(types, key text), the same place for every node and no problem found.
Every YAML file under tests/ and dialplans/ is held to that as written and
rewritten in block style, and so are hundreds of mutations of them: a
line's value swapped for a scalar YAML reads in a surprising way, an
indentation shifted, a line doubled, dropped or joined, a tab or an ``\\r``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from pbx.routing import yaml_fast
from pbx.routing.loader import MAX_DEPTH, MAX_NODES, read_dialplan, read_yaml
from tests.routing.plan_files import PLAN_FILES, ROOT, plan_data

PLANS = PLAN_FILES


def _fast(text: str) -> Any:
    return yaml_fast.read_block_yaml(text, "plan.yaml", max_nodes=MAX_NODES, max_depth=MAX_DEPTH)


def _agree(text: str) -> bool:
    """True if the line reader read ``text``; either way, what it gave is
    what the composed path gives."""
    fast = _fast(text)
    if fast is None:
        return False
    data, places, problems = read_yaml(text, "plan.yaml", fast_yaml=False)
    assert problems == ()
    assert list(places.items()) == list(fast[1].items())
    assert repr(data) == repr(fast[0])  # True is not 1, 1.0 is not 1, nan is nan
    return True


def _block(path: Path) -> str | None:
    """The file's data written again in block style (no flow collections),
    keys as text; None for a file ruamel.yaml cannot read."""
    data = plan_data(path)
    if data is None:
        return None
    out = io.StringIO()
    writer = YAML(typ="safe", pure=True)
    writer.default_flow_style = False
    writer.dump(data, out)
    return out.getvalue()


TEXTS = {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8-sig") for path in PLANS}
BLOCKS = {f"{name} in block style": text for path in PLANS
          if (text := _block(path)) is not None for name in [str(path.relative_to(ROOT))]}
HAND_MADE = {
    "keys keep their text": "extensions:\n  0100:\n    name: A\n  '1001':\n    name: B\n  1_002:\n    name: C\n",
    "scalars typed by YAML 1.2": (
        "a: yes\nb: on\nc: 0755\nd: 0o17\ne: 0x1F\nf: 1_000\ng: ~\nh: null\ni: true\nj: False\n"
        "k: 1.5\nl: .inf\nm: -.Inf\nn: 2026-01-01\no: 12:30\np: -7\nq: +84912345678\nr: 1e3\n"),
    "quotes, comments and spaces": (
        "# a comment\nname: \"Tô Thị Mới\"   # the name\nother: 'it''s'\nplain: a b  c # not this\n"
        "hash: C#\nurl: sip:1001@pbx.example.com:5060\n\n   \nkey with spaces  : v\n"),
    "sequences": "routes:\n  - name: a\n    pattern: 0[2-8]XX\n  - name: b\nlist:\n  - 1\n  - \"x\"\n  -   'y'\n",
    "nested": "a:\n  b:\n    c:\n      - d: 1\n        e:\n          - f\n",
    "columns after wide characters": "tên đầy đủ: Tô Thị Mới\n部門: 營業部\nbiểu tượng 😀: '😀 x'\n",
    "items indented further": "list:\n-   a: 1\n    b: 2\n-   c:\n      d: 3\n- e:\n  - 4\n",
    "sequences in their key's column": "a:\n- 1\n- b:\n  - 2\n  c: 3\nd:\n- e: 4\n  f:\n  - 5\ng: 6\n",
}


@pytest.mark.parametrize("name", sorted({**TEXTS, **BLOCKS, **HAND_MADE}))
def test_a_file_read_by_lines_reads_as_composed(name: str) -> None:
    _agree({**TEXTS, **BLOCKS, **HAND_MADE}[name])


def test_block_style_plans_are_read_by_lines() -> None:
    """The reader is no use if it answers None to what plans are made of."""
    taken = [name for name, text in {**BLOCKS, **HAND_MADE}.items() if _fast(text) is not None]
    assert len(taken) >= 0.9 * len({**BLOCKS, **HAND_MADE})


@pytest.mark.parametrize("text", [
    "a:\n", "a:\nb: 1\n", "a: &x 1\nb: *x\n", "a: !!str 1\n", "a: [1, 2]\n", "a: {b: 1}\n", "a: |\n  x\n",
    "a: b\n  c\n", "a: \"x\\ty\"\n", "a: 1\na: 2\n", "<<: {}\n", "a: b: c\n", "a:\n-\n", "a:\tb\n", "a: b\r\n",
    "---\na: 1\n", "- a\n", "x\n", "", "# only a comment\n", "a: 0o_\n", "a: =\n", "  a: 1\n",
    "a:\n  b: 1\n c: 2\n", "a: '\n  x'\n", "? a\n: b\n", "a: \u2028\n", "a: \ufeffb\n", "a: \"x\"#y\n", "a: 'x'#y\n", "k" * 1000 + ": 1\n",
])
def test_what_it_is_not_sure_of_is_left_to_composition(text: str) -> None:
    assert _fast(text) is None


def test_limits_are_left_to_the_converter_to_report() -> None:
    deep = "".join(f"{'  ' * level}k{level}:\n" for level in range(MAX_DEPTH + 1)) + f"{'  ' * (MAX_DEPTH + 1)}x: 1\n"
    assert _fast(deep) is None
    wide = "".join(f"k{n}: 1\n" for n in range(10))
    assert yaml_fast.read_block_yaml(wide, "plan.yaml", max_nodes=5, max_depth=MAX_DEPTH) is None


TRICKY = [
    "yes", "no", "on", "0100", "0755", "1_000", "0o17", "0x1F", "0b101", "0b2", "~", "null", "Null", "true", "TRUE",
    "2026-01-01", "2026-01-01 10:00:00", "12:30", "1.5", "1.", ".5", "1e3", ".inf", "-.inf", ".nan", "-1", "+84",
    '"a\\"b"', '"x"', "'it''s'", "''", '""', "a #b", "a#b", "a: b", "a:b", "- x", "-", "&a x", "*a", "!!str 1",
    "[1, 2]", "{a: 1}", "|", ">-", '"x" y', "'x", "x  ", "<<", "=", ":x", "?x", "%x", "@x", "`x", "tên", "a , b",
    "x]", "a\tb", "a\rb", '"x"#y', "'x'#y", "x #y", "x#", "😀", "#", " # c", "", "{", "a'b", 'a"b', "a: ", "...", "---", "0x", "+.5", "-0", "1_0.5",
]


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(sorted({**BLOCKS, **HAND_MADE})))
    lines = {**BLOCKS, **HAND_MADE}[name].split("\n")
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines) - 1))
        line = lines[at]
        action = draw(st.sampled_from(["value", "key", "indent", "dedent", "double", "drop", "join", "comment",
                                       "insert"]))
        if action == "value" and ":" in line:
            lines[at] = line[:line.index(":") + 1] + " " + draw(st.sampled_from(TRICKY))
        elif action == "key":
            stripped = line.lstrip(" -")
            lines[at] = line[:len(line) - len(stripped)] + draw(st.sampled_from(TRICKY)) + ": 1"
        elif action == "indent":
            lines[at] = " " * draw(st.integers(1, 2)) + line
        elif action == "dedent":
            lines[at] = line.removeprefix(" " * draw(st.integers(1, 2)))
        elif action == "double":
            lines.insert(at, line)
        elif action == "drop" and len(lines) > 1:
            del lines[at]
        elif action == "join" and at + 1 < len(lines):
            lines[at:at + 2] = [line + " " + lines[at + 1].lstrip()]
        elif action == "comment":
            lines.insert(at, " " * draw(st.integers(0, 6)) + "# " + draw(st.sampled_from(TRICKY)))
        else:
            lines.insert(at, " " * draw(st.integers(0, 6)) + draw(st.sampled_from(TRICKY)))
    return "\n".join(lines)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_plans_read_by_lines_read_as_composed(text: str) -> None:
    _agree(text)


@pytest.mark.parametrize("path", PLANS, ids=[str(path.relative_to(ROOT)) for path in PLANS])
def test_a_plan_loads_the_same_with_and_without_the_line_reader(path: Path) -> None:
    assert read_dialplan(path) == read_dialplan(path, fast_yaml=False)


def test_a_block_style_plan_with_includes_loads_the_same(tmp_path: Path) -> None:
    """Problems, model and rule places, the line reader taking every file."""
    for name, text in BLOCKS.items():
        if name.startswith("dialplans/example.yaml") or name.startswith("dialplans/groups/"):
            (tmp_path / Path(name.split(" ")[0]).relative_to("dialplans")).parent.mkdir(exist_ok=True)
            (tmp_path / Path(name.split(" ")[0]).relative_to("dialplans")).write_text(text, encoding="utf-8")
    example = tmp_path / "example.yaml"
    fast = read_dialplan(example)
    assert fast == read_dialplan(example, fast_yaml=False)
    assert fast.dialplan is not None and _fast(example.read_text(encoding="utf-8")) is not None
