"""Caps on outside calls in the dialplan: ``outside_calls`` on an extension,
a class of service (and what it extends) and under ``security``, each value
looked up on its own; bad values reported with their place; ``pbx explain``
naming the caps a call through a trunk counts against."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pbx.cli.main import main
from pbx.routing.call_limits import limits_for
from pbx.routing.loader import check_dialplan, load_dialplan
from tests.routing.test_loader import EXAMPLE

PLAN = """\
domain: pbx.example.com
security:
  outside_calls: {per_minute: 20}
departments:
  sales: {name: Sales, class_of_service: sales}
  lobby: {name: Lobby}
extensions:
  1001: {name: A, department: sales, password: a-secret-1001, outside_calls: {simultaneous: 2}}
  1002: {name: B, department: sales, password: b-secret-1002}
  1003: {name: C, department: sales, password: c-secret-1003, class_of_service: staff}
  1004: {name: D, department: lobby, password: d-secret-1004}
classes_of_service:
  staff: {allow: [national], outside_calls: {simultaneous: 3, per_minute: 5}}
  sales: {extends: staff, outside_calls: {simultaneous: 6}}
"""


@pytest.mark.parametrize(("number", "simultaneous", "per_minute"), [
    ("1001", (2, "extensions.1001.outside_calls.simultaneous"),
     (5, "classes_of_service.staff.outside_calls.per_minute")),
    ("1002", (6, "classes_of_service.sales.outside_calls.simultaneous"),
     (5, "classes_of_service.staff.outside_calls.per_minute")),
    ("1003", (3, "classes_of_service.staff.outside_calls.simultaneous"),
     (5, "classes_of_service.staff.outside_calls.per_minute")),
    ("1004", (4, "security.outside_calls.simultaneous"), (20, "security.outside_calls.per_minute")),
])
def test_each_cap_comes_from_the_nearest_place_that_sets_it(tmp_path: Path, number: str,
                                                            simultaneous: tuple[int, str],
                                                            per_minute: tuple[int, str]) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    plan = load_dialplan(path)
    limits = limits_for(plan, plan.extensions[number])
    assert (limits.simultaneous.value, limits.simultaneous.rule) == simultaneous
    assert (limits.per_minute.value, limits.per_minute.rule) == per_minute


def test_without_any_setting_the_defaults_apply(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("domain: pbx.example.com\ndepartments: {a: {name: A}}\n"
                    "extensions: {1001: {name: A, department: a, password: a-secret-1001}}\n")
    plan = load_dialplan(path)
    limits = limits_for(plan, plan.extensions["1001"])
    assert (limits.simultaneous.value, limits.per_minute.value) == (4, 10)
    assert (limits.simultaneous.rule, limits.per_minute.rule) == (
        "security.outside_calls.simultaneous", "security.outside_calls.per_minute")


def test_bad_values_are_reported_with_their_place(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("""\
domain: pbx.example.com
security:
  outside_calls: {per_minute: 0}
departments: {a: {name: A}}
extensions:
  1001: {name: A, department: a, password: a-secret-1001, outside_calls: {simultaneous: "2", burst: 3}}
classes_of_service:
  staff: {allow: [national], outside_calls: {simultaneous: 3000}}
  other: {outside_calls: 5}
""")
    assert [str(p).removeprefix(f"{path}:") for p in check_dialplan(path)] == [
        "3:31: 'security.outside_calls.per_minute' must be at least 1, not 0",
        "6:89: 'outside_calls.simultaneous' of extension '1001' must be an integer, not a string",
        "6:94: unknown key 'burst' in 'outside_calls' of extension '1001' (expected one of: simultaneous, per_minute)",
        "8:60: 'outside_calls.simultaneous' of class of service 'staff' must be at most 1000, not 3000",
        "9:26: 'outside_calls' of class of service 'other' must be a mapping, not an integer",
    ]


def test_explain_names_the_caps_of_a_call_through_a_trunk() -> None:
    def explain(*args: str) -> str:
        result = CliRunner().invoke(main, ["explain", "--dialplan", str(EXAMPLE), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    out = explain("--from", "1099", "--to", "0912345678")
    assert "caps:     outside calls of 1099 (counted on each node)\n" in out
    assert f"at most 2 at once: classes_of_service.reception.outside_calls.simultaneous ({EXAMPLE}:" in out
    assert f"at most 6 a minute: classes_of_service.reception.outside_calls.per_minute ({EXAMPLE}:" in out
    out = explain("--from", "1001", "--to", "0912345678")
    assert "at most 6 at once: classes_of_service.management.outside_calls.simultaneous" in out
    assert "at most 10 a minute: security.outside_calls.per_minute" in out
    # Emergency calls are never refused for them, internal calls not counted.
    assert "caps:" not in explain("--from", "1099", "--to", "113")
    assert "caps:" not in explain("--from", "1099", "--to", "1001")
