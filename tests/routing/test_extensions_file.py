"""Creating and changing extensions in the dialplan's files (the API's and
the LDAP sync's way in)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pbx.routing.extensions_file import ExtensionEdit, ExtensionEditError, edit_extensions
from pbx.routing.loader import read_dialplan

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "dialplans", tmp_path / "plan")
    return tmp_path / "plan" / "example.yaml"


def test_a_new_extension_is_added_and_nothing_else_moves(plan_file: Path) -> None:
    before = plan_file.read_text()
    plan = edit_extensions(plan_file, [ExtensionEdit(number="1042", create=True, values={
        "name": "Tô Thị Mới", "department": "sales", "ha1_md5": "ab" * 16})])
    assert plan.extensions["1042"].name == "Tô Thị Mới"
    last = '    password: "demo-Quan-1203"\n'
    # After the last extension, before the blank line and the comment that
    # heads the next section.
    expected = before.replace(last, last + f"  1042:\n    name: Tô Thị Mới\n    department: sales\n"
                                           f"    ha1_md5: {'ab' * 16}\n")
    assert plan_file.read_text() == expected


def test_a_change_goes_to_the_extension_and_none_removes_a_key(plan_file: Path) -> None:
    plan = edit_extensions(plan_file, [ExtensionEdit(number="1004", values={"email": "dung@example.com",
                                                                           "password": None,
                                                                           "ha1_sha256": "a" * 64})])
    changed = plan.extensions["1004"]
    assert (changed.email, changed.password, changed.ha1_sha256) == ("dung@example.com", None, "a" * 64)
    assert plan.extensions["1003"].password == "demo-Chau-1003"


def test_an_edit_that_breaks_the_plan_leaves_every_file_as_it_was(plan_file: Path) -> None:
    before = plan_file.read_text()
    with pytest.raises(ExtensionEditError) as raised:
        edit_extensions(plan_file, [
            ExtensionEdit(number="1043", create=True, values={"name": "Ok", "department": "sales", "password": "x" * 12}),
            ExtensionEdit(number="1044", create=True, values={"name": "Bad", "department": "nowhere",
                                                              "password": "y" * 12}),
        ])
    assert any("nowhere" in str(problem) for problem in raised.value.problems)
    assert plan_file.read_text() == before
    assert read_dialplan(plan_file).dialplan is not None


@pytest.mark.parametrize(("edit", "message"), [
    (ExtensionEdit(number="1001", create=True, values={"name": "x"}), "already exists"),
    (ExtensionEdit(number="1999", values={"name": "x"}), "no extension 1999"),
])
def test_creating_twice_or_changing_nothing_is_refused(plan_file: Path, edit: ExtensionEdit, message: str) -> None:
    with pytest.raises(ExtensionEditError, match=message):
        edit_extensions(plan_file, [edit])
