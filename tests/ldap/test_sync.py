"""The directory sync's diff, pure: users and a plan in, changes out."""

from __future__ import annotations

from pbx.ldap.settings import LdapSettings
from pbx.ldap.sync import Create, DirectoryUser, Resume, Skipped, Suspend, Update, describe, plan_sync
from pbx.routing.dialplan import Department, Dialplan, Extension

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


def user(dn: str, number: str | None, name: str = "X", department: str = "sales", **more: str) -> DirectoryUser:
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
