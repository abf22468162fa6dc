"""The directory sync's diff, pure: users and a plan in, changes out."""

from __future__ import annotations

from typing import Any

from pbx.ldap.settings import LdapSettings
from pbx.ldap.sync import (Create, DirectoryUser, Resume, SetMember, Skipped, Suspend, Update, describe,
                           plan_sync)
from pbx.routing.dialplan import Department, Dialplan, Extension
from pbx.routing.short_numbers import Member, ShortNumberGroup

SETTINGS = LdapSettings(url="ldap://dc", base_dn="dc=x", departments={"Kinh doanh": "sales"})
PLAN = Dialplan(
    domain="x.example",
    departments={"sales": Department(key="sales", name="Sales"), "it": Department(key="it", name="IT")},
    extensions={
        "1000": Extension(number="1000", name="Reception", department="sales", password="p" * 10),
        "1001": Extension(number="1001", name="An", department="sales", password="p" * 10, ldap_dn="uid=an"),
        "1002": Extension(number="1002", name="Bich", department="it", password="p" * 10, ldap_dn="uid=bich"),
    },
)


def user(dn: str, number: str | None, name: str = "X", department: str = "sales", **more: Any) -> DirectoryUser:
    return DirectoryUser(dn=dn, extension=number, name=name, department=department, **more)


def test_new_changed_missing_and_disabled_users() -> None:
    users = [
        user("uid=an", "1001", "An", "Kinh doanh", email="an@x.example"),  # mapped department, new e-mail
        user("uid=new", "10 42", "Mới", "it", mobile="0912 345 678"),
        user("uid=off", "1043", "Off", account_control="514"),  # disabled: no new extension
        user("uid=reception", "1000", "Reception"),  # hand-made 1000 is taken over, keeps its password
    ]
    planned = plan_sync(users, PLAN, SETTINGS)
    assert planned.changes == (
        Update(number="1001", changes={"email": (None, "an@x.example")}),
        Create(number="1042", values={"name": "Mới", "department": "it", "mobile": "0912345678",
                                      "ldap_dn": "uid=new"}),
        Update(number="1000", changes={"ldap_dn": (None, "uid=reception")}),
        Suspend(number="1002", reason="missing"),
    )
    assert describe(planned.changes[-1]) == "suspend 1002: missing in the directory"


def test_ad_disabled_bit_suspends_and_a_returning_user_resumes() -> None:
    disabled = plan_sync([user("uid=an", "1001", "An", account_control="66050"),
                          user("uid=bich", "1002", "Bich", "it")], PLAN, SETTINGS)
    assert disabled.changes == (Suspend(number="1001", reason="disabled"),)
    back = plan_sync([user("uid=an", "1001", "An"), user("uid=bich", "1002", "Bich", "it")], PLAN, SETTINGS,
                     suspended={"1001"})
    assert back.changes == (Resume(number="1001"),)
    # Suspended and still gone: nothing more to do.
    assert plan_sync([user("uid=an", "1001", "An")], PLAN, SETTINGS, suspended={"1002"}).changes == ()


def test_users_that_cannot_be_placed_are_skipped_with_a_reason() -> None:
    planned = plan_sync([user("uid=a", None), user("uid=b", "+84 28 3822 1042"), user("uid=c", "1050", department="x"),
                         user("uid=d", "1051"), user("uid=e", "1051")], PLAN, SETTINGS)
    assert [s.dn for s in planned.skipped] == ["uid=a", "uid=b", "uid=c", "uid=e"]
    assert planned.skipped[1] == Skipped(dn="uid=b", reason="no usable extension number ('+84 28 3822 1042')")
    assert planned.skipped[2] == Skipped(dn="uid=c", reason="department 'x' maps to no department")
    assert [c.number for c in planned.changes if isinstance(c, Create)] == ["1051"]


def test_short_numbers_in_the_directory_make_and_keep_group_members() -> None:
    settings = LdapSettings(url="ldap://dc", base_dn="dc=x", groups={"field": "pager"})
    field = ShortNumberGroup(key="field", members_file="field.yaml", members={
        "601": Member(short="601", name="An", extension="1001", mobile="0912000001"),
        "602": Member(short="602", name="Driver", mobile="0912000002"),  # by hand, mobile only
        "603": Member(short="603", name="Bich", extension="1002"),
    })
    plan = Dialplan(domain=PLAN.domain, departments=PLAN.departments, extensions=PLAN.extensions,
                    groups={"field": field})
    users = [
        user("uid=an", "1001", "An", short_numbers={"field": "611"}),  # moved from 601
        user("uid=bich", "1002", "Bích", "it", short_numbers={"field": "603"}),  # renamed
        user("uid=new", "1042", "Mới", short_numbers={"field": "6 04"}),  # new extension and member
        user("uid=steal", "1043", "Steal", short_numbers={"field": "602"}),  # someone else's short number
        user("uid=twin", "1044", "Twin", short_numbers={"field": "604"}),  # claimed just before
        user("uid=ext", "1045", "Ext", short_numbers={"field": "1000"}),  # an extension number
        user("uid=bad", "1046", "Bad", short_numbers={"field": "6"}),
        user("uid=off", "1047", "Off", account_control="514", short_numbers={"field": "609"}),  # disabled: none
    ]
    planned = plan_sync(users, plan, settings)
    members = [c for c in planned.changes if isinstance(c, SetMember)]
    assert members == [
        SetMember(group="field", short="611", number="1001", name="An", moved_from="601"),
        SetMember(group="field", short="603", number="1002", name="Bích", old_name="Bich"),
        SetMember(group="field", short="604", number="1042", name="Mới"),
    ]
    assert {s.dn: s.reason for s in planned.skipped} == {
        "uid=steal": "group field: short number 602 is Driver's",
        "uid=twin": "group field: short number 604 is also uid=new",
        "uid=ext": "group field: short number 1000 is an extension number",
        "uid=bad": "group field: short number '6' is not 2 to 8 digits",
    }
    assert [describe(c) for c in members] == [
        "member field/611: An (extension 1001), moved from 601",
        "member field/603: name 'Bich' -> 'Bích'",
        "member field/604: add Mới (extension 1042)",
    ]
    # In step: nothing more.
    settled = ShortNumberGroup(key="field", members_file="field.yaml", members={
        "611": Member(short="611", name="An", extension="1001")})
    again = Dialplan(domain=PLAN.domain, departments=PLAN.departments, extensions=PLAN.extensions,
                     groups={"field": settled})
    assert not [c for c in plan_sync(users[:1], again, settings).changes if isinstance(c, SetMember)]
