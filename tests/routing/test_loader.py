"""Dialplan loading: the example, one broken file per kind of error, includes.

Broken files live in ``data/``; each case names the exact problem lines
``check_dialplan`` must print. Tests run with the data directory as the
working directory so the paths in messages are the short relative ones.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from pbx.routing.dialplan import (
    Department,
    Dialplan,
    Extension,
    RegistrarSettings,
    SecuritySettings,
)
from pbx.routing.loader import (
    DialplanError,
    Problem,
    check_dialplan,
    format_problems,
    load_dialplan,
    read_dialplan,
)

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(__file__).parents[2] / "dialplans" / "example.yaml"
SCHEMA = Path(__file__).parents[2] / "pbx" / "routing" / "schema.json"


@pytest.fixture(autouse=True)
def in_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA)


# --------------------------------------------------------------- the example


def test_example_loads_with_extensions_1001_to_1010() -> None:
    result = read_dialplan(EXAMPLE)
    assert result.problems == ()
    plan = result.dialplan
    assert plan is not None
    assert plan.domain == "pbx.example.com"
    assert {f"{n}" for n in range(1001, 1011)} <= set(plan.extensions)
    assert len(plan.departments) >= 3
    for number, extension in plan.extensions.items():
        assert extension.number == number
        assert extension.department in plan.departments
        assert extension.password is not None and len(extension.password) >= 8
    assert plan.registrar == RegistrarSettings()
    assert plan.security == SecuritySettings()
    # The factory group's members file is a source too: a reload watches it.
    assert plan.sources == (str(EXAMPLE), str(EXAMPLE.parent / "groups" / "factory.yaml"))


def test_example_unquoted_numbers_become_string_keys() -> None:
    plan = load_dialplan(EXAMPLE)
    first = plan.extension("1001")
    assert first is not None
    assert first.name == "Nguyễn Văn An"
    assert first.ring_timeout == 45
    assert first.max_contacts == 5
    third = plan.extension("1003")
    assert third is not None and third.max_contacts == 3
    assert plan.extension("9999") is None


def test_example_mapping_is_read_only() -> None:
    plan = load_dialplan(EXAMPLE)
    with pytest.raises(TypeError):
        plan.extensions["2000"] = plan.extensions["1001"]  # type: ignore[index]


# --------------------------------------------------------------- broken files

ERROR_CASES = [
    pytest.param(
        "syntax_error.yaml",
        [
            "syntax_error.yaml:3:18: YAML syntax error: expected ',' or '}', but got ':'"
            " (while parsing a flow mapping at line 3, column 9)"
        ],
        id="yaml-syntax",
    ),
    pytest.param(
        "unknown_key.yaml",
        [
            "unknown_key.yaml:5:3: extension '1001' has no password, ha1_md5 or ha1_sha256",
            "unknown_key.yaml:8:5: unknown key 'pasword' in extension '1001';"
            " did you mean 'password'?",
        ],
        id="unknown-key-suggestion",
    ),
    pytest.param(
        "unknown_top_key.yaml",
        [
            "unknown_top_key.yaml:2:1: unknown key 'extension' at the top level;"
            " did you mean 'extensions'?"
        ],
        id="unknown-top-level-key",
    ),
    pytest.param(
        "wrong_type.yaml",
        ["wrong_type.yaml:9:19: 'ring_timeout' of extension '1001' must be an integer, not a string"],
        id="wrong-type",
    ),
    pytest.param(
        "numeric_password.yaml",
        [
            "numeric_password.yaml:8:15: 'password' of extension '1001' must be a string,"
            " not an integer; put the value in quotes"
        ],
        id="unquoted-numeric-password",
    ),
    pytest.param(
        "unknown_department.yaml",
        [
            "unknown_department.yaml:9:17: extension '1005' has unknown department 'salse';"
            " did you mean 'sales'?"
        ],
        id="unknown-department",
    ),
    pytest.param(
        "duplicate_key.yaml",
        ["duplicate_key.yaml:9:5: duplicate key 'name'; first given at duplicate_key.yaml:6:5"],
        id="duplicate-key",
    ),
    pytest.param(
        "missing_password.yaml",
        ["missing_password.yaml:5:3: extension '1001' has no password, ha1_md5 or ha1_sha256"],
        id="missing-password",
    ),
    pytest.param(
        "password_and_ha1.yaml",
        [
            "password_and_ha1.yaml:8:5: extension '1001' has both a password and an HA1 hash;"
            " give only one"
        ],
        id="password-and-ha1",
    ),
    pytest.param(
        "bad_ha1.yaml",
        ["bad_ha1.yaml:8:14: 'ha1_md5' of extension '1001' must be 32 lowercase hexadecimal digits"],
        id="uppercase-ha1",
    ),
    pytest.param(
        "missing_name.yaml",
        ["missing_name.yaml:5:3: extension '1001' is missing required key 'name'"],
        id="missing-required-key",
    ),
    pytest.param(
        "bad_extension_number.yaml",
        ["bad_extension_number.yaml:5:3: extension number '1x01' must be 2 to 8 digits"],
        id="bad-extension-number",
    ),
    pytest.param(
        "bad_expires.yaml",
        [
            "bad_expires.yaml:4:20: registrar default_expires (300) must lie between"
            " min_expires (600) and max_expires (7200)"
        ],
        id="expires-order",
    ),
    pytest.param(
        "out_of_range.yaml",
        ["out_of_range.yaml:3:22: 'security.max_auth_failures' must be at least 1, not 0"],
        id="below-minimum",
    ),
    pytest.param(
        "no_domain.yaml",
        ["no_domain.yaml:1:1: no 'domain' given; set the SIP domain, e.g. 'domain: pbx.example.com'"],
        id="no-domain",
    ),
    pytest.param(
        "not_a_mapping.yaml",
        [
            "not_a_mapping.yaml:1:1: a dialplan file must be a mapping of sections"
            " (domain, extensions, ...), not a list"
        ],
        id="top-level-list",
    ),
    pytest.param(
        "missing_include.yaml",
        ["missing_include.yaml:3:5: included file 'people.yaml' not found"],
        id="missing-include",
    ),
    pytest.param(
        "include_duplicate/main.yaml",
        [
            "include_duplicate/people.yaml:4:3: extension '1001' is already defined at"
            " include_duplicate/main.yaml:6:3"
        ],
        id="duplicate-extension-across-includes",
    ),
    pytest.param(
        "include_cycle/a.yaml",
        [
            "include_cycle/b.yaml:2:5: include cycle: include_cycle/a.yaml ->"
            " include_cycle/b.yaml -> include_cycle/a.yaml"
        ],
        id="include-cycle",
    ),
]


@pytest.mark.parametrize(("name", "expected"), ERROR_CASES)
def test_broken_file_reports_exact_place_and_message(name: str, expected: list[str]) -> None:
    problems = check_dialplan(name)
    assert [str(p) for p in problems] == expected
    assert all(p.severity == "error" for p in problems)


@pytest.mark.parametrize(("name", "expected"), ERROR_CASES)
def test_broken_file_does_not_load(name: str, expected: list[str]) -> None:
    with pytest.raises(DialplanError) as caught:
        load_dialplan(name)
    assert str(caught.value) == "\n".join(expected)
    assert [str(p) for p in caught.value.problems] == expected


def test_format_problems_gives_one_line_each() -> None:
    problems = [
        Problem("a.yaml", 3, 7, "something is wrong"),
        Problem("b.yaml", 1, 1, "doubtful", "warning"),
    ]
    assert format_problems(problems) == (
        "a.yaml:3:7: something is wrong\nb.yaml:1:1: warning: doubtful"
    )
    assert format_problems([]) == ""


# --------------------------------------------------------------- warnings


def test_warnings_do_not_stop_loading() -> None:
    problems = check_dialplan("weak_password.yaml")
    assert [str(p) for p in problems] == [
        "weak_password.yaml:5:49: warning: password of extension '1001' is shorter than 8 characters",
        "weak_password.yaml:6:51: warning: extension '1002' uses its own number as password",
    ]
    assert [p.severity for p in problems] == ["warning", "warning"]
    plan = load_dialplan("weak_password.yaml")
    assert sorted(plan.extensions) == ["1001", "1002"]


def test_read_dialplan_keeps_warnings_beside_the_plan() -> None:
    result = read_dialplan("weak_password.yaml")
    assert result.dialplan is not None
    assert result.errors == ()
    assert len(result.warnings) == 2


# --------------------------------------------------------------- includes and YAML features


def test_include_directory_merges_sorted_yaml_files() -> None:
    plan = load_dialplan("include_dir/main.yaml")
    assert plan.sources == (
        "include_dir/main.yaml",
        "include_dir/people/10-sales.yaml",
        "include_dir/people/20-support.yaml",
        "include_dir/settings.yaml",
    )
    assert list(plan.extensions) == ["1001", "1002", "2001"]
    assert plan.extensions["2001"].department == "support"
    assert plan.extensions["1002"].ha1_md5 == "0f0e0d0c0b0a09080706050403020100"
    assert plan.extensions["1002"].password is None
    # Settings from an included file merge with the defaults of the rest.
    assert plan.registrar == RegistrarSettings(max_expires=3600)
    assert plan.security == SecuritySettings(block_seconds=900)


def test_yaml_merge_keys_share_settings() -> None:
    plan = load_dialplan("merge_keys.yaml")
    assert plan.domain == "192.0.2.10"
    desk_b = plan.extensions["2002"]
    assert (desk_b.name, desk_b.department, desk_b.ring_timeout) == ("Desk B", "support", 15)
    assert desk_b.password == "desk-phone-b"


def _write(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)
    return path


def test_file_included_twice_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(str(tmp_path), "main.yaml", "domain: pbx.example.com\ninclude: [a.yaml, b.yaml]\n")
    _write(str(tmp_path), "a.yaml", "include: [shared.yaml]\n")
    _write(str(tmp_path), "b.yaml", "include: [shared.yaml]\n")
    _write(str(tmp_path), "shared.yaml", "departments: {sales: {name: Sales}}\n")
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in check_dialplan("main.yaml")] == [
        "b.yaml:1:11: 'shared.yaml' is included more than once (first at a.yaml:1:11)"
    ]


def test_domain_set_in_two_files_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(str(tmp_path), "main.yaml", "domain: pbx.example.com\ninclude: [other.yaml]\n")
    _write(str(tmp_path), "other.yaml", "# other site\ndomain: pbx.example.org\n")
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in check_dialplan("main.yaml")] == [
        "other.yaml:2:1: 'domain' is already set at main.yaml:1:1"
    ]


def test_same_number_quoted_and_unquoted_is_a_duplicate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        "domain: pbx.example.com\n"
        "departments: {sales: {name: Sales}}\n"
        "extensions:\n"
        "  1001: {name: An, department: sales, password: 'correct horse'}\n"
        "  '1001': {name: Bình, department: sales, password: 'battery staple'}\n"
    )
    _write(str(tmp_path), "plan.yaml", text)
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in check_dialplan("plan.yaml")] == [
        "plan.yaml:5:3: duplicate key '1001'; first given at plan.yaml:4:3"
    ]


def test_leading_zero_extension_keeps_its_digits(tmp_path: Path) -> None:
    text = (
        "domain: pbx.example.com\n"
        "departments: {ops: {name: Operations}}\n"
        "extensions:\n"
        "  0100: {name: Night desk, department: ops, password: 'correct horse'}\n"
    )
    _write(str(tmp_path), "plan.yaml", text)
    plan = load_dialplan(tmp_path / "plan.yaml")
    assert list(plan.extensions) == ["0100"]


def test_missing_root_file_is_a_problem_not_a_crash() -> None:
    assert [str(p) for p in check_dialplan("no_such_file.yaml")] == [
        "no_such_file.yaml:1:1: cannot read file: No such file or directory"
    ]


# --------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("field", "value"),
    [("password", "12345"), ("ha1_md5", "C0FFEE"), ("ha1_sha256", "nothex-secret")],
)
def test_messages_never_show_secret_values(tmp_path: Path, field: str, value: str) -> None:
    text = (
        "domain: pbx.example.com\n"
        "departments: {sales: {name: Sales}}\n"
        f"extensions:\n  1001: {{name: An, department: sales, {field}: {value}}}\n"
    )
    _write(str(tmp_path), "plan.yaml", text)
    problems = check_dialplan(tmp_path / "plan.yaml")
    assert any(p.is_error for p in problems)
    assert all(value not in str(p) for p in problems)


def test_extension_repr_hides_credentials() -> None:
    extension = Extension(
        number="1001",
        name="An",
        department="sales",
        password="hunter2-secret",
    )
    hashed = Extension(
        number="1002",
        name="Bình",
        department="sales",
        ha1_md5="0f0e0d0c0b0a09080706050403020100",
        ha1_sha256="ab" * 32,
    )
    assert "hunter2-secret" not in repr(extension)
    assert "0f0e0d0c" not in repr(hashed) and "abab" not in repr(hashed)
    assert "1001" in repr(extension)


# --------------------------------------------------------------- model invariants


@pytest.mark.parametrize(
    "kwargs",
    [
        {"number": "1001"},  # no credentials
        {"number": "1001", "password": "x" * 10, "ha1_md5": "0" * 32},  # both
        {"number": "1001", "ha1_md5": "0" * 31},
        {"number": "1001", "ha1_sha256": "G" * 64},
        {"number": "1", "password": "x" * 10},
        {"number": "123456789", "password": "x" * 10},
        {"number": "1001", "password": "x" * 10, "ring_timeout": 0},
    ],
)
def test_extension_rejects_invalid_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Extension(name="An", department="sales", **kwargs)  # type: ignore[arg-type]


def test_model_checks_cross_references() -> None:
    sales = Department(key="sales", name="Sales")
    extension = Extension(number="1001", name="An", department="support", password="x" * 10)
    with pytest.raises(ValueError, match="unknown department"):
        Dialplan(domain="pbx.example.com", departments={"sales": sales}, extensions={"1001": extension})
    with pytest.raises(ValueError):
        RegistrarSettings(min_expires=100, default_expires=50)


def test_schema_is_valid_draft_2020_12() -> None:
    import json

    Draft202012Validator.check_schema(json.loads(SCHEMA.read_text(encoding="utf-8")))


# --------------------------------------------------------------- garbage never crashes


def test_every_truncation_of_the_example_gives_problems_not_exceptions(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    target = tmp_path / "cut.yaml"
    seen_errors = 0
    # About 150 cuts spread over the file (an odd stride lands inside keys,
    # values, quotes and comments alike); each cut is a whole check.
    stride = max(37, len(text) // 150) | 1
    for end in range(0, len(text), stride):
        target.write_text(text[:end], encoding="utf-8")
        problems = check_dialplan(target)
        assert all(p.line >= 1 and p.column >= 1 for p in problems)
        seen_errors += any(p.is_error for p in problems)
    assert seen_errors > 0


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc12 :-[]{}\n\t'\"&*!<#,|>?%@`\\")), max_size=120))
def test_arbitrary_text_never_raises(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = _write(directory, "fuzz.yaml", text)
        problems = check_dialplan(path)
    assert all(isinstance(p, Problem) and p.line >= 1 and p.column >= 1 for p in problems)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "fuzz.yaml")
        with open(path, "wb") as stream:
            stream.write(data)
        problems = check_dialplan(path)
    assert all(p.line >= 1 and p.column >= 1 for p in problems)
