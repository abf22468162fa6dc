"""Group short numbers over dialplans/example.yaml, table by table: who
rings for a short or long number depending on the caller's group, the
mobile leg checked with the caller's rights, the factory group's
in_group_only restriction, and `pbx explain` for such calls. Then the pure
model of pbx.routing.short_numbers on groups built by hand."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from click.testing import CliRunner

from pbx.cli.main import main
from pbx.routing.engine import CallRequest, Decision, Reject, Ring, RingMember, ToTrunk, decide
from pbx.routing.loader import load_dialplan
from pbx.routing.patterns import parse_pattern
from pbx.routing.rights import check_number
from pbx.routing.short_numbers import Member, ShortNumberGroup, groups_of, outside_check, resolve
from tests.routing.test_loader import EXAMPLE

PLAN = load_dialplan(EXAMPLE)
BUSINESS = datetime(2027, 3, 10, 3, 0, tzinfo=timezone.utc)  # Wed 10:00 in Ho Chi Minh City
EVENING = datetime(2027, 3, 10, 13, 0, tzinfo=timezone.utc)  # Wed 20:00


def route(caller: str, dialled: str, at: datetime = BUSINESS) -> Decision:
    extension = PLAN.extensions[caller]
    return decide(CallRequest(caller=extension, dialled=dialled, at=at, caller_number=caller), PLAN)


def summary(decision: Decision) -> tuple[Any, ...]:
    """What a row of the tables below compares."""
    match decision:
        case RingMember():
            return ("member", decision.group, decision.member.short,
                    decision.extension.number if decision.extension else None,
                    decision.mobile.number if decision.mobile else None,
                    decision.order, decision.presented_number, decision.call_class)
        case Ring():
            return ("ring", decision.extension.number)
        case ToTrunk():
            return ("trunk", decision.number, decision.call_class)
        case Reject():
            return ("reject", decision.status, decision.reason, decision.rule)
    raise AssertionError(decision)


@pytest.mark.parametrize(
    ("caller", "dialled", "expected"),
    [
        # The same short number means different people: the caller's group decides.
        ("1004", "601", ("member", "head_office", "601", "1001", "+84903000101", "desk_first", "602", "internal")),
        ("1202", "601", ("member", "factory", "601", "1201", "+84987000201", "desk_first", "602", "internal")),
        ("1001", "602", ("member", "head_office", "602", "1004", "+84913000104", "together", "601", "internal")),
        ("1201", "602", ("member", "factory", "602", "1202", "+84987000202", "together", "601", "internal")),
        # A member with no mobile: just the desk.
        ("1001", "603", ("member", "head_office", "603", "1005", None, "together", "601", "internal")),
        ("1202", "603", ("member", "factory", "603", "1203", None, "together", "602", "internal")),
        # A long number dialled inside the group is an in-group call, ringing only that number.
        ("1009", "1001", ("member", "head_office", "601", "1001", None, "together", "604", "internal")),
        ("1009", "0903000101", ("member", "head_office", "601", None, "+84903000101", "together", "604",
                                "mobile")),
        ("1202", "0987000201", ("member", "factory", "601", None, "+84987000201", "together", "602", "mobile")),
        # Callers in no group have no short numbers.
        # Outside the group, a short number is the start of a local number.
        ("1002", "601", ("reject", 484, "incomplete_number", "number_plans.vietnam")),
        ("1099", "602", ("reject", 484, "incomplete_number", "number_plans.vietnam")),
        ("1010", "601", ("reject", 484, "incomplete_number", "number_plans.taiwan")),
        # ... and a member's numbers are plain numbers to them.
        ("1002", "1001", ("ring", "1001")),
        ("1002", "0903000101", ("trunk", "+84903000101", "mobile")),
        # Short numbers of the other group mean nothing either.
        ("1001", "0987000201", ("trunk", "+84987000201", "mobile")),
        # The factory may call only inside the group, its allow_outside list and emergency.
        ("1202", "0912345678", ("reject", 403, "in_group_only", "groups.factory.in_group_only")),
        ("1202", "0903000101", ("reject", 403, "in_group_only", "groups.factory.in_group_only")),
        ("1202", "0081312345678", ("reject", 403, "in_group_only", "groups.factory.in_group_only")),
        ("1202", "18001091", ("trunk", "18001091", "toll_free")),
        ("1202", "02743700123", ("trunk", "+842743700123", "national")),
        ("1202", "02743710123", ("reject", 403, "in_group_only", "groups.factory.in_group_only")),
        ("1202", "113", ("trunk", "113", "emergency")),
        ("1203", "115", ("trunk", "115", "emergency")),
        # Extensions are inside the PBX: not restricted.
        ("1202", "1001", ("ring", "1001")),
        ("1202", "1099", ("ring", "1099")),
    ],
)
def test_short_and_long_numbers_by_the_callers_group(caller: str, dialled: str, expected: tuple[Any, ...]) -> None:
    decision = route(caller, dialled)
    assert summary(decision) == expected, decision.steps
    assert decision.steps[0].rule == f"extensions.{caller}"
    for step in decision.steps:
        assert PLAN.place(step.rule) is not None, step


def test_a_short_number_decision_in_full() -> None:
    decision = route("1004", "601")
    assert isinstance(decision, RingMember) and decision.mobile is not None
    assert decision.mobile == ToTrunk(trunk="viettel", number="+84903000101", caller_id="02873000200",
                                      rule="routes.vn-mobile", call_class="mobile", steps=decision.mobile.steps,
                                      e164="+84903000101")
    assert (decision.rule, decision.dialled, decision.short_dialled, decision.desk_seconds) == (
        "groups.head_office.members.601", "601", True, 15)
    assert decision.member.name == "Nguyễn Văn An" and decision.resolved_number == "1001"
    assert [step.rule for step in decision.steps] == [
        "extensions.1004",
        "groups.head_office.members.602",
        "groups.head_office.members.601",
        "extensions.1001",
        "departments.sales.class_of_service",
        "classes_of_service.sales",
        "groups.head_office.members.601.mobile",
        "number_plans.vietnam[10]",
        "number_plans.vietnam.national_prefix",
        "departments.sales.class_of_service",
        "classes_of_service.staff.allow",
        "routes.vn-mobile",
        "trunks.viettel.rewrites[2]",
        "trunks.viettel",
    ]


def test_members_from_the_members_file_have_places_there() -> None:
    place = PLAN.place("groups.factory.members.601")
    assert place is not None and place.startswith(str(EXAMPLE.parent / "groups" / "factory.yaml") + ":")


# ---------------------------------------------------------------- rights follow the call


def test_the_mobile_leg_is_dropped_when_the_caller_may_not_call_it_now() -> None:
    # Accounting may not call mobiles outside business hours: Phúc's call to
    # An's short number rings An's desk only, and the steps say why.
    evening = route("1009", "601", EVENING)
    assert summary(evening) == ("member", "head_office", "601", "1001", None, "together", "604", "internal")
    assert evening.steps[-1].outcome == "the mobile leg is dropped (mobile_barred); the desk still rings"
    assert "classes_of_service.accounting.when[0]" in [step.rule for step in evening.steps]
    daytime = route("1009", "601", BUSINESS)
    assert summary(daytime)[3:6] == ("1001", "+84903000101", "desk_first")


def test_nothing_left_to_ring_is_refused_with_the_rule() -> None:
    decision = route("1009", "0903000101", EVENING)
    assert summary(decision) == ("reject", 403, "mobile_barred", "classes_of_service.accounting.when[0]")
    assert isinstance(decision, Reject) and decision.call_class == "mobile"
    assert decision.detail == "mobile is denied outside business_hours"


def test_in_group_only_is_a_right_that_follows_the_call() -> None:
    # A leg placed on a factory member's behalf (a forward, later) is held to
    # the same restriction; the member's own group numbers pass.
    hoa = PLAN.extensions["1202"]
    refused = check_number(PLAN, hoa, "0912345678", BUSINESS)
    assert (refused.allowed, refused.reason, refused.rule) == (False, "in_group_only", "groups.factory.in_group_only")
    member_mobile = check_number(PLAN, hoa, "0987000201", BUSINESS)
    assert (member_mobile.allowed, member_mobile.steps[2].rule) == (True, "groups.factory.members.601")
    listed = check_number(PLAN, hoa, "18001234", BUSINESS)
    assert (listed.allowed, listed.steps[2].rule) == (True, "groups.factory.allow_outside[0]")
    assert check_number(PLAN, hoa, "114", BUSINESS).reason == "emergency"


# ---------------------------------------------------------------- pbx explain


def test_explain_shows_a_short_number_decision() -> None:
    result = CliRunner().invoke(main, ["explain", "--dialplan", str(EXAMPLE), "--from", "1202", "--to", "601",
                                       "--at", "2027-03-10 10:00"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "caller 1202 is 602 in group factory (Xưởng Bình Dương / Factory)" in out
    assert "short number 601 is Trương Văn Tài: rings extension 1201 and mobile 0987000201, desk first" in out
    assert "decision: ring member 601 (Trương Văn Tài) of group factory (short number 601)\n" in out
    assert "          extension 1201 (Trương Văn Tài (foreman))\n" in out
    assert "          mobile 0987000201 as +84987000201 through trunk viettel (caller ID 02743700100)\n" in out
    assert "          the desk first, the mobile after 10 s; the desk sees the caller as 602\n" in out
    assert f"class internal, rule groups.factory.members.601 ({EXAMPLE.parent / 'groups' / 'factory.yaml'}:3:1)" in out


# ---------------------------------------------------------------- the model


def _group(key: str, *members: Member, only: bool = False, allow: tuple[str, ...] = ()) -> ShortNumberGroup:
    return ShortNumberGroup(key=key, members={m.short: m for m in members}, in_group_only=only,
                            allow_outside=tuple(parse_pattern(p) for p in allow))


GROUPS = {
    "a": _group("a", Member(short="11", extension="2001"), Member(short="12", extension="2002", mobile="0900000002"),
                Member(short="13", mobile="22")),
    "b": _group("b", Member(short="12", extension="2003"), Member(short="21", extension="2001"),
                Member(short="22", extension="2004"), only=True, allow=("1800 X.",)),
}


@pytest.mark.parametrize(
    ("caller", "dialled", "expected"),
    [
        ("2001", "12", ("a", "2002", True)),   # in both groups: the first group in plan order
        ("2003", "12", None),                  # 2003 is in b only as extension member 12: its own number
        ("2004", "12", ("b", "2003", True)),
        # A short number of its second group, before a long number of its first.
        ("2001", "22", ("b", "2004", True)),
        ("2002", "22", ("a", None, False)),    # 2002 is in group a only: member 13's mobile
        ("2001", "2004", ("b", "2004", False)),
        ("2001", "0900000002", ("a", "2002", False)),
        ("2002", "21", None),                  # 2002 is not in group b
        ("2005", "11", None),                  # in no group
    ],
)
def test_resolve_tries_short_numbers_of_every_group_first(caller: str, dialled: str,
                                                          expected: tuple[str, str | None, bool] | None) -> None:
    found = resolve(caller, dialled, GROUPS)
    if expected is None:
        assert found is None or found.callee.extension == caller
        return
    assert found is not None
    assert (found.group.key, found.callee.extension, found.dialled_short) == expected


def test_groups_of_and_the_presented_short_number() -> None:
    assert [(g.key, m.short) for g, m in groups_of("2001", GROUPS)] == [("a", "11"), ("b", "21")]
    found = resolve("2004", "12", GROUPS)
    assert found is not None and found.presented == "22"


def test_outside_check_of_restricting_groups_only() -> None:
    assert outside_check("2002", ("0912345678",), GROUPS) == []   # group a restricts nothing
    (refused,) = outside_check("2001", ("0912345678",), GROUPS)
    assert (refused.allowed, refused.rule) == (False, "groups.b.in_group_only")
    (listed,) = outside_check("2004", ("0912345678", "18001234"), GROUPS)
    assert (listed.allowed, listed.rule) == (True, "groups.b.allow_outside[0]")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"short": "1"}, "short number '1' must be 2 to 8 digits"),
        ({"short": "12a", "extension": "2001"}, "short number '12a' must be 2 to 8 digits"),
        ({"short": "12"}, "member '12' needs an extension, a mobile or a hunt group"),
            ({"short": "12", "hunt_group": "500", "mobile": "0912345678"}, "member '12' is hunt group '500'"),
        ({"short": "12", "extension": "2001", "desk_seconds": 0}, "member '12': desk_seconds must be at least 1"),
    ],
)
def test_member_checks_itself(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Member(**fields)


def test_an_extension_is_one_member_per_group() -> None:
    with pytest.raises(ValueError, match="extension '2001' is member '11' and '12'"):
        _group("x", Member(short="11", extension="2001"), Member(short="12", extension="2001"))


def from_provider(did: str, at: datetime) -> Decision:
    return decide(CallRequest(caller=None, trunk="viettel", dialled=did, at=at, caller_number="0912345678"), PLAN)


def test_a_did_given_to_a_member_rings_desk_and_mobile_with_the_members_rights() -> None:
    # Phúc (604, extension 1009, accounting): his direct line rings his desk
    # and his mobile; the desk sees the outside caller.
    assert summary(from_provider("+842873000604", BUSINESS)) == (
        "member", "head_office", "604", "1009", "+84983000109", "together", "0912345678", "inbound")
    # Accounting may not call mobiles after hours, and the mobile leg is
    # placed with Phúc's rights: in the evening only the desk rings.
    evening = from_provider("+842873000604", EVENING)
    assert summary(evening) == ("member", "head_office", "604", "1009", None, "together", "0912345678", "inbound")
    assert any("the mobile leg is dropped" in step.outcome for step in evening.steps)
