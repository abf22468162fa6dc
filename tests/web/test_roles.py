"""Roles and scopes, pure; and every UI word in the three languages."""

from __future__ import annotations

import pytest

from pbx.web import i18n
from pbx.web.roles import Permission, Principal, Role, Scope, allowed, may_write_department, scope_of

DEPARTMENTS = {"1001": "management", "1003": "sales", "1004": "sales", "1008": "accounting"}


def person(role: Role, departments: frozenset[str] = frozenset(), extension: str | None = None) -> Principal:
    return Principal(user_id=1, username="u", role=role, departments=departments, extension=extension)


@pytest.mark.parametrize(("who", "expected"), [
    (person("admin"), Scope(True)),
    (person("manager", frozenset({"sales"})), Scope(False, frozenset({"sales"}), frozenset({"1003", "1004"}))),
    (person("branch_admin", frozenset({"sales", "accounting"})),
     Scope(False, frozenset({"sales", "accounting"}), frozenset({"1003", "1004", "1008"}))),
    (person("employee", extension="1003"), Scope(False, frozenset(), frozenset({"1003"}))),
    (person("employee"), Scope(False)),
])
def test_scopes(who: Principal, expected: Scope) -> None:
    assert scope_of(who, DEPARTMENTS) == expected


def test_a_call_between_departments_shows_to_both_managers() -> None:
    sales = scope_of(person("manager", frozenset({"sales"})), DEPARTMENTS)
    accounting = scope_of(person("manager", frozenset({"accounting"})), DEPARTMENTS)
    # 1008 (accounting) reached 1004 (sales): the caller's side and the callee's.
    assert accounting.covers_extension("1008", "accounting") and sales.covers_extension("1004", "sales")
    assert not sales.covers_extension("1008", "accounting")


@pytest.mark.parametrize(("who", "department", "expected"), [
    (person("admin"), "accounting", True),
    (person("branch_admin", frozenset({"sales"})), "sales", True),
    (person("branch_admin", frozenset({"sales"})), "accounting", False),
    (person("manager", frozenset({"sales"})), "sales", False),
    (person("employee", extension="1003"), "sales", False),
])
def test_who_may_write_a_departments_extensions(who: Principal, department: str, expected: bool) -> None:
    assert may_write_department(who, department) is expected


def test_only_admins_administer() -> None:
    for role in ("branch_admin", "manager", "employee"):
        for permission in (Permission.USERS_ADMIN, Permission.DIALPLAN_ADMIN, Permission.SECURITY_READ):
            assert not allowed(person(role), permission)
    assert all(allowed(person("admin"), p) for p in Permission)


@pytest.mark.parametrize("key", sorted(i18n.TEXT))
def test_every_word_is_in_every_language(key: str) -> None:
    english, vietnamese, chinese = i18n.TEXT[key]
    assert english and vietnamese and chinese
    assert len({english, vietnamese, chinese}) == 3 or key == "email"


@pytest.mark.parametrize(("user", "cookie", "header", "expected"), [
    (None, None, "vi-VN,vi;q=0.9,en;q=0.8", "vi"),
    (None, None, "zh-TW,zh;q=0.9", "zh"),
    (None, "zh", "vi", "zh"),
    ("vi", None, "en", "vi"),
    ("vi", "zh", "en", "zh"),  # the switcher in this browser beats the account's setting
    (None, None, "fr-FR", "en"),
    (None, "xx", None, "en"),
])
def test_language_choice(user: str | None, cookie: str | None, header: str | None, expected: str) -> None:
    assert i18n.pick_language(user, cookie, header) == expected
