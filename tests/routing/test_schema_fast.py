"""The compiled schema check against jsonschema's Draft 2020-12 validator.

The loader trusts the compiled check's yes and asks jsonschema only after a
no, so the compiled check must never pass what jsonschema refuses. The
example plans and the test plans must get the same answer from both, and so
must mutations of them: a value swapped for another (wrong types, bounds,
booleans for numbers, empty and long strings), a key added or removed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML

from pbx.routing.schema_fast import compile_validator
from tests.routing.plan_files import PLAN_FILES, ROOT, keys_as_text, plan_data

SCHEMA = json.loads((ROOT / "pbx" / "routing" / "schema.json").read_text(encoding="utf-8"))
REFERENCE = Draft202012Validator(SCHEMA)
COMPILED = compile_validator(SCHEMA)
PLANS = PLAN_FILES


def _data(path: Path) -> Any:
    """The file's data if it is a mapping (the loader stops before the schema otherwise)."""
    data = plan_data(path)
    return data if isinstance(data, dict) else None


SECTIONS_NO_FILE_HAS = """\
domain: pbx.example.com
calls: {session_expires: 1800, min_se: 90, max_call_seconds: 14400, allow_short_timers: false}
ldap: {url: "ldaps://dc1.example.com:636", bind_dn: "CN=pbx,OU=Service,DC=example,DC=com", password_env: LDAP_PW,
       base_dn: "OU=Staff,DC=example,DC=com", filter: "(&(objectClass=user)(ipPhone=*))", interval: 900,
       attributes: {extension: ipPhone, department: department}, departments: {"Kinh doanh": ops},
       default_department: ops}
voicemail: {directory: /srv/voicemail, max_message_seconds: 90, pin: {min_length: 6, lockout: {failures: 4}},
            smtp: {host: mail.example.com, port: 587, sender: pbx@example.com}}
recording: {directory: /srv/recordings, retention_days: 30, max_megabytes: 500, announce: false,
            extensions: {"2002": on_demand}, departments: {ops: always}, routes: {abroad: {mode: always}}}
departments: {ops: {name: Ops, voicemail: {email_messages: true, retention_days: 60}}}
extensions:
  "2002": {name: Bob, department: ops, password: bob-secret-2002, voicemail: {ring_seconds: 12, email: b@example.com}}
"""
"""Sections none of the plan files sets, as their own tests write them."""

DOCUMENTS = {str(path.relative_to(ROOT)): data for path in PLANS if (data := _data(path)) is not None}
DOCUMENTS["sections no file has"] = keys_as_text(YAML(typ="safe", pure=True).load(SECTIONS_NO_FILE_HAS))


def _agree(data: Any) -> None:
    assert COMPILED(data) == REFERENCE.is_valid(data)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_both_give_the_same_answer_for_each_plan_file(name: str) -> None:
    _agree(DOCUMENTS[name])


def test_the_example_plan_is_valid_and_a_wrong_type_is_not() -> None:
    example = DOCUMENTS["dialplans/example.yaml"]
    assert COMPILED(example) and COMPILED(DOCUMENTS["sections no file has"])
    assert not COMPILED({**example, "domain": 5})
    assert not COMPILED({**example, "unknown_section": {}})


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


def _replace(data: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        return {**data, head: _replace(data[head], rest, new)}
    copy = list(data)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


SAMPLES = st.sampled_from([
    None, True, False, 0, 1, -1, 1.0, 2.5, 404, 480, 10**12, -(10**12), "", "x", "1001", "20000", "+84912345678",
    "*", "a" * 300, "SHA-256", "MD5", "always", "vi", "udp", "bench", "user@example.com", [], [1], ["a", "a"],
    ["1001"], [True, 1], {}, {"x": 1}, {"name": "X"},
])


def _nearby(value: Any) -> st.SearchStrategy[Any]:
    """Values next to ``value``: bounds and lengths are where checks differ."""
    if isinstance(value, bool):
        return st.sampled_from([not value, int(value), float(value)])
    if isinstance(value, int):
        return st.sampled_from([value - 1, value + 1, -value, value * 1000, float(value), value + 0.5])
    if isinstance(value, str):
        return st.sampled_from([value[:-1], value + "0", value + "a", value.upper(), " " + value, value * 10])
    if isinstance(value, list) and value:
        return st.sampled_from([value[:-1], [*value, value[0]], [*value, None]])
    return SAMPLES


@st.composite
def _mutated(draw: st.DrawFn) -> Any:
    name = draw(st.sampled_from(sorted(DOCUMENTS)))
    data = DOCUMENTS[name]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(data)))
        old = _at(data, path)
        action = draw(st.sampled_from(["swap", "nearby", "add key", "drop key"]))
        if action == "add key" and isinstance(old, dict):
            key = draw(st.sampled_from(["x", "name", "password", "1001", "Bad Key", "extension", "", "a" * 40]))
            data = _replace(data, path, {**old, key: draw(SAMPLES)})
        elif action == "drop key" and isinstance(old, dict) and old:
            key = draw(st.sampled_from(sorted(old)))
            data = _replace(data, path, {k: v for k, v in old.items() if k != key})
        elif action == "nearby":
            data = _replace(data, path, draw(_nearby(old)))
        else:
            data = _replace(data, path, draw(SAMPLES))
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_both_give_the_same_answer_for_mutated_plans(data: Any) -> None:
    _agree(data)


def test_a_final_newline_is_refused_by_the_compiled_check_only() -> None:
    """The one known difference, on the safe side: ``$`` in a pattern ends the
    text for fastjsonschema, where ``re.search`` lets a final newline through.
    The loader then asks jsonschema, which passes it, as before."""
    data = {"domain": "pbx.example.com", "departments": {"sales\n": {"name": "Sales"}}}
    assert REFERENCE.is_valid(data)
    assert not COMPILED(data)


@pytest.mark.parametrize("keyword", ["prefixItems", "unevaluatedProperties", "dependentRequired"])
def test_a_keyword_the_compiled_check_would_ignore_is_refused(keyword: str) -> None:
    with pytest.raises(ValueError, match=keyword):
        compile_validator({"type": "object", keyword: {}})


def test_the_check_kept_compiled_in_a_folder_gives_the_same_answers(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Written on first use, loaded after; a file that is not one (cut
    short, another Python's) is compiled again and replaced."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    written = compile_validator(SCHEMA, cache=tmp_path)
    (kept,) = tmp_path.glob("*.marshal")
    loaded = compile_validator(SCHEMA, cache=tmp_path)
    kept.write_bytes(kept.read_bytes()[:100])
    again = compile_validator(SCHEMA, cache=tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == [kept.name]
    for data in DOCUMENTS.values():
        assert written(data) == loaded(data) == again(data) == COMPILED(data)


def test_without_bytecode_writing_nothing_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    check = compile_validator(SCHEMA, cache=tmp_path)
    assert check(DOCUMENTS["dialplans/example.yaml"]) and not list(tmp_path.iterdir())
