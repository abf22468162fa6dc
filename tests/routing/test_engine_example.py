"""Routing decisions over dialplans/example.yaml, table by table.

Every department (through an extension that uses the department's class of
service) dials one number of every call class at three moments: a working
Wednesday morning, the same evening, and the third day of Tết 2027 (a
Monday, a public holiday in Vietnam and in Taiwan). The expected outcome
is what the example file says; a change to the file that changes an answer
must change this table too.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pbx.routing.dialplan import Dialplan
from pbx.routing.engine import CallRequest, CodeRequired, Decision, Hunt, Reject, Ring, RunIvr, ToTrunk, decide
from pbx.routing.loader import load_dialplan
from pbx.routing.rights import check_number
from tests.routing.test_loader import EXAMPLE

PLAN: Dialplan = load_dialplan(EXAMPLE)
HCMC = ZoneInfo("Asia/Ho_Chi_Minh")

# The moments, given in UTC on purpose: the engine must convert them.
MOMENTS = {
    "business": datetime(2027, 3, 10, 3, 0, tzinfo=timezone.utc),  # Wed 10:00 HCMC, 11:00 Taipei
    "evening": datetime(2027, 3, 10, 13, 0, tzinfo=timezone.utc),  # Wed 20:00 HCMC, 21:00 Taipei
    "tet": datetime(2027, 2, 8, 3, 0, tzinfo=timezone.utc),  # Mon, third day of the lunar new year
}

# A number of each class, as each number plan writes it.
VIETNAM = {
    "internal": "1001",
    "emergency": "113",
    "local": "38221234",
    "mobile": "0912345678",
    "national": "02363821234",
    "international": "0081312345678",
    "premium": "19001234",
    "toll_free": "18001091",
    "information": "1080",
    "satellite": "00870123456789",
}
TAIWAN = {
    "internal": "1001",
    "emergency": "110",
    "local": "27201234",
    "mobile": "0912345678",
    "national": "0223456789",
    "international": "002813123456",
    "premium": "0204123456",
    "toll_free": "0800123456",
    "information": "104",
    "satellite": "00870123456789",  # not in the Taiwanese table
}

# Department -> (extension without its own class of service, number plan).
DEPARTMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "management": ("1002", VIETNAM),
    "sales": ("1003", VIETNAM),
    "support": ("1006", VIETNAM),
    "accounting": ("1008", VIETNAM),
    "taipei": ("1010", TAIWAN),
    "factory": ("1202", VIETNAM),
}

OK = "ok"
CODE = "account code"
ALL_DAY = {"business": OK, "evening": OK, "tet": OK}


def _only_business(refusal: str) -> dict[str, str]:
    return {"business": OK, "evening": refusal, "tet": refusal}


def _never(refusal: str) -> dict[str, str]:
    return {moment: refusal for moment in MOMENTS}


STAFF = {cls: ALL_DAY for cls in ("internal", "emergency", "local", "mobile", "national", "toll_free",
                                  "information")}
EXPECTED: dict[str, dict[str, dict[str, str]]] = {
    "management": {**STAFF, "international": ALL_DAY, "premium": ALL_DAY, "satellite": ALL_DAY},
    "sales": {
        **STAFF,
        "premium": ALL_DAY,
        "international": _only_business("international_not_allowed"),
        "satellite": _never("satellite_not_allowed"),
    },
    "support": {
        **STAFF,
        "international": _never("international_not_allowed"),
        "premium": _never("premium_not_allowed"),
        "satellite": _never("satellite_not_allowed"),
    },
    # all_outbound: every outside call asks for an account code first,
    # whatever the department's own rights would say; emergency never asks.
    "accounting": {
        **{cls: {moment: CODE for moment in MOMENTS} for cls in PLAN.call_classes},
        "internal": ALL_DAY,
        "emergency": ALL_DAY,
    },
    "taipei": {
        **STAFF,
        "international": _only_business("international_not_allowed"),
        "premium": _never("premium_not_allowed"),
        "satellite": _never("unknown_number"),
    },
    # Staff rights, narrowed by the factory short-number group (in_group_only):
    # outside numbers only from its allow_outside list, emergency always.
    "factory": {
        **{cls: _never("in_group_only") for cls in ("local", "mobile", "national", "international", "premium",
                                                    "information", "satellite")},
        "internal": ALL_DAY,
        "emergency": ALL_DAY,
        "toll_free": ALL_DAY,
    },
}


def route(caller: str, dialled: str, at: datetime) -> Decision:
    extension = PLAN.extension(caller)
    assert extension is not None
    return decide(CallRequest(caller=extension, dialled=dialled, at=at, caller_number=caller), PLAN)


def _cases() -> list[Any]:
    cases: list[Any] = []
    for department, by_class in EXPECTED.items():
        for call_class, by_moment in by_class.items():
            for moment, expected in by_moment.items():
                cases.append(pytest.param(department, call_class, moment, expected,
                                          id=f"{department}-{call_class}-{moment}"))
    return cases


def test_the_table_covers_every_department_and_class() -> None:
    assert set(EXPECTED) == set(PLAN.departments)
    for by_class in EXPECTED.values():
        assert set(by_class) == set(PLAN.call_classes)


@pytest.mark.parametrize(("department", "call_class", "moment", "expected"), _cases())
def test_department_by_call_class(department: str, call_class: str, moment: str, expected: str) -> None:
    caller, numbers = DEPARTMENTS[department]
    assert PLAN.extensions[caller].department == department
    assert PLAN.extensions[caller].class_of_service is None  # the department's rights
    dialled = numbers[call_class]
    decision = route(caller, dialled, MOMENTS[moment])
    if expected == CODE:
        assert isinstance(decision, CodeRequired), decision
        assert (decision.mode, decision.call_class, decision.given) == ("all_outbound", call_class, False)
    elif expected == OK:
        assert isinstance(decision, Ring if call_class == "internal" else ToTrunk), decision
        assert decision.call_class == call_class
        expected_trunk = "cht" if department == "taipei" else "viettel"
        if isinstance(decision, ToTrunk):
            assert decision.trunk == expected_trunk
    else:
        assert isinstance(decision, Reject), decision
        assert decision.reason == expected
        assert decision.status == (404 if expected == "unknown_number" else 403)
    # Every decision carries its chain, each rule found in the file.
    assert decision.steps[0].rule == f"extensions.{caller}"
    assert decision.rule in [step.rule for step in decision.steps]
    if isinstance(decision, Reject):
        assert decision.steps[-1].rule == decision.rule
    for step in decision.steps:
        assert PLAN.place(step.rule) is not None, step


# ---------------------------------------------------------------- outbound details


@pytest.mark.parametrize(
    ("caller", "dialled", "number", "caller_id", "rule"),
    [
        ("1001", "0912345678", "+84912345678", "02873000101", "routes.vn-mobile"),  # the extension's own
        ("1003", "02363821234", "+842363821234", "02873000200", "routes.vn-national"),  # the department's
        ("1002", "38221234", "+842838221234", "02873000100", "routes.vn-local"),  # the trunk's
        ("1002", "0081312345678", "+81312345678", "02873000100", "routes.vn-international"),
        ("1002", "113", "113", "02873000100", "routes.vn-emergency"),
        ("1002", "19001234", "19001234", "02873000100", "routes.vn-services"),
        ("1010", "002813123456", "+813123456", "0227200100", "routes.taipei-desk"),
        ("1010", "0912345678", "0912345678", "0227200100", "routes.taipei-desk"),
    ],
)
def test_outbound_number_rewrite_and_caller_id(caller: str, dialled: str, number: str, caller_id: str,
                                              rule: str) -> None:
    decision = route(caller, dialled, MOMENTS["business"])
    assert isinstance(decision, ToTrunk), decision
    assert (decision.number, decision.caller_id, decision.rule) == (number, caller_id, rule)


def test_a_full_chain_for_the_director_dialling_a_mobile_after_hours_in_tet() -> None:
    at = datetime(2027, 2, 10, 18, 5, tzinfo=HCMC)
    decision = route("1001", "0912345678", at)
    assert decision == ToTrunk(
        trunk="viettel", number="+84912345678", caller_id="02873000101", rule="routes.vn-mobile",
        call_class="mobile", steps=decision.steps, e164="+84912345678",
    )
    assert [step.rule for step in decision.steps] == [
        "extensions.1001",
        "number_plans.vietnam[10]",
        "number_plans.vietnam.national_prefix",
        "departments.management.class_of_service",
        "classes_of_service.staff.allow",
        "routes.vn-mobile",
        "trunks.viettel.rewrites[2]",
        "trunks.viettel",
    ]


# ---------------------------------------------------------------- time of day and holidays


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2027-03-10 07:59", "international_not_allowed"),  # Wednesday, before opening
        ("2027-03-10 08:00", OK),
        ("2027-03-10 17:29", OK),
        ("2027-03-10 17:30", "international_not_allowed"),  # closing time is exclusive
        ("2027-03-13 11:59", OK),  # Saturday morning
        ("2027-03-13 12:00", "international_not_allowed"),
        ("2027-03-14 10:00", "international_not_allowed"),  # Sunday
        ("2027-02-03 10:00", OK),  # Wednesday before Tết, lunar 12-27: open
        ("2027-02-04 10:00", "international_not_allowed"),  # lunar 12-28: our break and public holiday
        ("2027-02-06 10:00", "international_not_allowed"),  # Tết, lunar 01-01
        ("2027-02-10 10:00", "international_not_allowed"),  # lunar 01-05, last public holiday
        ("2027-02-11 10:00", "international_not_allowed"),  # lunar 01-06: only our own lunar rule
        ("2027-02-12 10:00", OK),  # lunar 01-07: back at work
        ("2027-04-16 10:00", "international_not_allowed"),  # Hùng Kings (lunar 03-10), public holiday
        ("2027-06-15 10:00", "international_not_allowed"),  # founding day (annual), a Tuesday
        ("2026-12-24 10:00", "international_not_allowed"),  # the year-end party (one-off date)
        ("2027-12-24 10:00", OK),  # ... only that year
    ],
)
def test_sales_international_follows_business_hours_and_holidays(local: str, expected: str) -> None:
    at = datetime.fromisoformat(local).replace(tzinfo=HCMC)
    decision = route("1003", VIETNAM["international"], at)
    if expected == OK:
        assert isinstance(decision, ToTrunk), decision
    else:
        assert isinstance(decision, Reject) and decision.reason == expected, decision
        assert decision.rule == "classes_of_service.sales.when[0]"


def test_tet_refusal_says_which_holiday() -> None:
    decision = route("1003", VIETNAM["international"], datetime(2027, 2, 6, 10, 0, tzinfo=HCMC))
    assert isinstance(decision, Reject)
    holiday = decision.steps[-2].outcome
    assert "Lunar New Year (public holiday VN)" in holiday and "Sat 2027-02-06 10:00" in holiday
    company_day = route("1003", VIETNAM["international"], datetime(2027, 2, 11, 10, 0, tzinfo=HCMC))
    assert isinstance(company_day, Reject)
    assert "lunar 01-06, closed every lunar 12-28..01-06" in company_day.steps[-2].outcome


def test_taipei_hours_are_taipei_time() -> None:
    # 08:30 in Ho Chi Minh City is 09:30 in Taipei: the Taipei desk is open.
    at = datetime(2027, 3, 10, 8, 30, tzinfo=HCMC)
    assert isinstance(route("1010", TAIWAN["international"], at), ToTrunk)
    assert isinstance(route("1003", VIETNAM["international"], at), ToTrunk)
    # 17:15 HCMC is 18:15 Taipei: Taipei closed, Ho Chi Minh City still open.
    late = datetime(2027, 3, 10, 17, 15, tzinfo=HCMC)
    assert isinstance(route("1010", TAIWAN["international"], late), Reject)
    assert isinstance(route("1003", VIETNAM["international"], late), ToTrunk)


# ---------------------------------------------------------------- lists and overrides


@pytest.mark.parametrize(
    ("caller", "dialled", "expected", "rule"),
    [
        # Company-wide black list, even for management who may dial international.
        ("1001", "005312345678", "blacklisted", "number_lists.fraud_destinations[0]"),
        ("1001", "0088212345678", "blacklisted", "number_lists.fraud_destinations[2]"),
        # Sales' own black list.
        ("1003", "19006123", "blacklisted", "number_lists.tipster_lines[0]"),
        ("1003", "19001234", OK, "routes.vn-services"),
        # Management's class of service has no tipster list.
        ("1002", "19006123", OK, "routes.vn-services"),
        # The intern extends sales but is denied premium; the rest of sales still applies.
        ("1005", "19001234", "premium_barred", "classes_of_service.intern.deny"),
        ("1005", "19006123", "blacklisted", "number_lists.tipster_lines[0]"),
        ("1005", "0081312345678", OK, "routes.vn-international"),
        # Customer service: white list only.
        ("1007", "0903123456", OK, "routes.vn-mobile"),
        ("1007", "02838221234", OK, "routes.vn-national"),  # the range 028 3822 XXXX
        ("1007", "02839110000", OK, "routes.vn-national"),  # listed as +84 28 3911 0000
        ("1007", "0912345678", "not_on_whitelist", "classes_of_service.customer_service.whitelist_only"),
        ("1007", "18001091", "not_on_whitelist", "classes_of_service.customer_service.whitelist_only"),
        ("1007", "1006", OK, "extensions.1006"),  # internal calls are not outside numbers
        # Reception: local and mobile only; anything else asks for an account code (restricted).
        ("1099", "38221234", OK, "routes.vn-local"),
        ("1099", "0912345678", OK, "routes.vn-mobile"),
        ("1099", "02363821234", CODE, "extensions.1099.account_codes"),
        ("1099", "0081312345678", CODE, "extensions.1099.account_codes"),
        ("1099", "005312345678", "blacklisted", "number_lists.fraud_destinations[0]"),  # no code opens it
    ],
)
def test_lists_and_extension_overrides(caller: str, dialled: str, expected: str, rule: str) -> None:
    decision = route(caller, dialled, MOMENTS["business"])
    assert decision.rule == rule, decision
    if expected == OK:
        assert isinstance(decision, ToTrunk | Ring), decision
    elif expected == CODE:
        assert isinstance(decision, CodeRequired) and decision.mode == "restricted", decision
        assert decision.barred is not None and decision.barred.endswith("_not_allowed")
    else:
        assert isinstance(decision, Reject) and decision.reason == expected and decision.status == 403


@pytest.mark.parametrize("caller", sorted(PLAN.extensions))
@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_emergency_is_never_refused(caller: str, moment: str) -> None:
    extension = PLAN.extensions[caller]
    numbers = TAIWAN if PLAN.departments[extension.department].number_plan == "taiwan" else VIETNAM
    for number in {"vietnam": ("112", "113", "114", "115"), "taiwan": ("110", "112", "119")}[
            "taiwan" if numbers is TAIWAN else "vietnam"]:
        decision = route(caller, number, MOMENTS[moment])
        assert isinstance(decision, ToTrunk), (caller, number, decision)
        assert decision.call_class == "emergency" and decision.number == number


# ---------------------------------------------------------------- internal and odd numbers


@pytest.mark.parametrize(
    ("dialled", "status", "reason", "rule"),
    [
        ("7777", 484, "incomplete_number", "number_plans.vietnam"),  # a local number is 8 digits
        ("1234", 404, "unknown_number", "number_plans.vietnam"),  # no number begins so
        ("12ab", 404, "invalid_number", "dialled"),
        ("", 404, "invalid_number", "dialled"),
        ("*97", 501, "feature_not_available", "feature_codes.*97"),
    ],
)
def test_numbers_that_go_nowhere(dialled: str, status: int, reason: str, rule: str) -> None:
    decision = route("1002", dialled, MOMENTS["business"])
    assert isinstance(decision, Reject)
    assert (decision.status, decision.reason, decision.rule) == (status, reason, rule)
    assert decision.detail == decision.steps[-1].outcome != ""


def test_internal_call_rings_the_extension() -> None:
    decision = route("1099", "1001", MOMENTS["tet"])
    assert isinstance(decision, Ring)
    assert (decision.extension.number, decision.rule, decision.call_class) == ("1001", "extensions.1001", "internal")


def test_a_group_short_number_rings_the_team_behind_it() -> None:
    # 650 is the sales hunt group for the head office: a short number of its plan.
    decision = route("1004", "650", MOMENTS["evening"])
    assert isinstance(decision, Hunt)
    assert (decision.group.number, decision.call_class) == ("500", "internal")
    assert [step.rule for step in decision.steps][:3] == [
        "extensions.1004", "groups.head_office.members.602", "groups.head_office.members.650"]
    assert "short number 650 is hunt group 500 (Sales): internal" in [step.outcome for step in decision.steps]
    # Outside the head office 650 means nothing: the caller's group decides.
    for caller in ("1099", "1201"):
        assert not isinstance(route(caller, "650", MOMENTS["business"]), Hunt), caller


# ---------------------------------------------------------------- inbound


def inbound(trunk: str, dialled: str, at: datetime, presented: str = "0912345678") -> Decision:
    return decide(CallRequest(caller=None, trunk=trunk, dialled=dialled, at=at, caller_number=presented), PLAN)


@pytest.mark.parametrize(
    ("trunk", "dialled", "moment", "extension", "rule"),
    [
        ("viettel", "+842873000100", "business", "1099", "inbound.+842873000100"),
        ("viettel", "+842873000101", "evening", "1001", "inbound.+842873000101"),
        ("cht", "0227200100", "tet", "1010", "inbound.0227200100"),
    ],
)
def test_inbound_numbers_ring_their_target(trunk: str, dialled: str, moment: str, extension: str,
                                           rule: str) -> None:
    decision = inbound(trunk, dialled, MOMENTS[moment])
    assert isinstance(decision, Ring), decision
    assert (decision.extension.number, decision.rule, decision.call_class) == (extension, rule, "inbound")


@pytest.mark.parametrize(
    ("moment", "menu"), [("business", "main"), ("evening", "after_hours"), ("tet", "after_hours")],
)
def test_the_sales_line_is_answered_by_the_auto_attendant(moment: str, menu: str) -> None:
    decision = inbound("viettel", "+842873000200", MOMENTS[moment])
    assert isinstance(decision, RunIvr), decision
    assert (decision.menu.key, decision.rule, decision.call_class) == (menu, f"ivr_menus.{menu}", "inbound")
    assert decision.steps[-1].rule == "ivr_menus.main.hours"


@pytest.mark.parametrize(
    ("trunk", "dialled", "status", "reason"),
    [
        ("viettel", "+842873000999", 404, "unknown_did"),
        ("viettel", "1001", 404, "unknown_did"),  # an extension is not a DID
        ("viettel", "0912345678", 403, "relay_denied"),  # no open relay
        ("viettel", "0081312345678", 403, "relay_denied"),
        ("viettel", "113", 403, "relay_denied"),
        ("nosuch", "+842873000100", 403, "unknown_trunk"),
    ],
)
def test_inbound_refusals(trunk: str, dialled: str, status: int, reason: str) -> None:
    decision = inbound(trunk, dialled, MOMENTS["business"])
    assert isinstance(decision, Reject), decision
    assert (decision.status, decision.reason) == (status, reason)


def test_a_call_from_nobody_is_refused() -> None:
    decision = decide(CallRequest(caller=None, dialled="0912345678", at=MOMENTS["business"]), PLAN)
    assert isinstance(decision, Reject) and (decision.status, decision.reason) == (403, "unauthenticated")


# ---------------------------------------------------------------- rights follow the call


@pytest.mark.parametrize(
    ("person", "number", "moment", "allowed", "reason"),
    [
        # A leg placed for the intern (a forward to a premium line) is barred ...
        ("1005", "19001234", "business", False, "premium_barred"),
        # ... the same leg for her manager is not.
        ("1001", "19001234", "business", True, "allowed"),
        ("1003", "0081312345678", "tet", False, "international_not_allowed"),
        ("1007", "0903123456", "business", True, "whitelisted"),
        ("1007", "0912345678", "business", False, "not_on_whitelist"),
        ("1007", "115", "tet", True, "emergency"),
        ("1099", "02363821234", "evening", False, "national_not_allowed"),
        ("1001", "005312345678", "business", False, "blacklisted"),
        ("1001", "1002", "business", True, "allowed"),
        ("1001", "7777", "business", False, "incomplete_number"),
        ("1001", "1234", "business", False, "unknown_number"),
    ],
)
def test_check_number_for_legs_placed_on_someones_behalf(person: str, number: str, moment: str, allowed: bool,
                                                        reason: str) -> None:
    extension = PLAN.extensions[person]
    verdict = check_number(PLAN, extension, number, MOMENTS[moment])
    assert (verdict.allowed, verdict.reason) == (allowed, reason)
    assert verdict.steps and PLAN.place(verdict.rule) is not None


def test_black_list_matches_the_e164_form() -> None:
    # '+882' is written in E.164; dialled as 00882... it is +882... in E.164.
    verdict = check_number(PLAN, PLAN.extensions["1001"], "0088299999999", MOMENTS["business"])
    assert verdict.reason == "blacklisted"
    assert verdict.rule == "number_lists.fraud_destinations[2]"
    assert verdict.steps[-1].outcome == ("+88299999999 matches +882 on black list 'fraud_destinations'"
                                         " (company-wide)")
