"""Tariffs: money read exactly, billing increments at their edges, the
tariff a call gets, and `pbx check` messages with positions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pbx.routing.budgets import budgets_for, parse_period, period_of
from pbx.routing.loader import check_dialplan, load_dialplan
from pbx.routing.tariffs import Billing, Increment, MoneyError, Tariff, format_money, parse_money, to_decimal


@pytest.mark.parametrize(("increment", "price", "billsec", "cost"), [
    # 60/60: every started minute
    ("60/60", 1200, 0, 0), ("60/60", 1200, 1, 1200), ("60/60", 1200, 60, 1200), ("60/60", 1200, 61, 2400),
    # 30/6: half a minute first, then six-second blocks
    ("30/6", 1200, 0, 0), ("30/6", 1200, 1, 600), ("30/6", 1200, 60, 1200), ("30/6", 1200, 61, 1320),
    # 1/1: per second, the total rounded up to a whole minor unit
    ("1/1", 1100, 0, 0), ("1/1", 1100, 1, 19), ("1/1", 1100, 60, 1100), ("1/1", 1100, 61, 1119),
])
def test_cost_at_the_increment_edges(increment: str, price: int, billsec: int, cost: int) -> None:
    tariff = Tariff(id="t", per_minute=price, increment=Increment.parse(increment))
    assert tariff.cost(billsec) == cost


def test_setup_charge_applies_to_a_billed_call_only() -> None:
    tariff = Tariff(id="t", per_minute=600, setup=500, increment=Increment(60, 60))
    assert [tariff.cost(s) for s in (0, 1, 60, 61)] == [0, 1100, 1100, 1700]


@pytest.mark.parametrize(("text", "minor_unit", "minor"), [
    ("1100", 0, 1100), ("12.50", 2, 1250), ("0.35", 2, 35), ("7", 2, 700), ("0.001", 3, 1),
])
def test_money_is_read_exactly(text: str, minor_unit: int, minor: int) -> None:
    assert parse_money(text, minor_unit) == minor
    assert to_decimal(minor, minor_unit) == Decimal(text)


@pytest.mark.parametrize(("text", "minor_unit"), [("0.5", 0), ("1.234", 2), ("1e3", 0), ("-5", 0), ("", 0)])
def test_money_that_is_no_amount_in_the_currency_is_refused(text: str, minor_unit: int) -> None:
    with pytest.raises(MoneyError):
        parse_money(text, minor_unit)


def test_money_is_written_with_thousands_and_decimals() -> None:
    assert format_money(30_000_000, 0, "VND") == "30,000,000 VND"
    assert format_money(123456, 2, "TWD") == "1,234.56 TWD"
    assert format_money(5, 2) == "0.05"


def test_longest_prefix_then_trunk_then_classes_then_file_order() -> None:
    billing = Billing(currency="VND", tariffs=(
        Tariff(id="any", per_minute=1),
        Tariff(id="mobile", per_minute=2, classes=frozenset({"mobile"})),
        Tariff(id="viettel-mobile", per_minute=3, trunk="viettel", classes=frozenset({"mobile"})),
        Tariff(id="viettel-mobile-again", per_minute=4, trunk="viettel", classes=frozenset({"mobile"})),
        Tariff(id="viettel-net", per_minute=5, prefixes=("+8496", "+8497")),
        Tariff(id="cuba", per_minute=6, prefixes=("+53",)),
    ))

    def chosen(trunk: str, call_class: str, number: str | None) -> str | None:
        found = billing.tariff_for(trunk, call_class, number)
        return None if found is None else found.id

    assert chosen("viettel", "mobile", "+84912345678") == "viettel-mobile"  # the first of two equal ones
    assert chosen("other", "mobile", "+84912345678") == "mobile"
    assert chosen("viettel", "mobile", "+84971234567") == "viettel-net"    # a prefix beats trunk and class
    assert chosen("other", "national", "+842838221234") == "any"
    assert chosen("viettel", "international", None) == "any"              # no number: prefix rows cannot apply
    assert chosen("other", "international", "+5371234567") == "cuba"
    assert Billing(tariffs=(Tariff(id="m", per_minute=1, classes=frozenset({"mobile"})),)).tariff_for(
        "t", "national", "+84") is None


PLAN = """\
domain: pbx.example.com
departments:
  sales: {name: Sales}
extensions:
  1001: {name: An, department: sales, password: an-secret-1001}
number_plans:
  vietnam:
    - {pattern: "0ZXXXXXXX.", class: national}
trunks:
  viettel:
    gateways: [{host: 198.51.100.1}]
routes:
  - {name: vn, pattern: "0ZXXXXXXX.", trunk: viettel}
"""


def problems(tmp_path: Path, extra: str) -> list[str]:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN + extra)
    return [f"{p.line}:{p.column}: {'warning: ' if not p.is_error else ''}{p.message}".replace(f"{path}:", "") for p in check_dialplan(path)]


def test_a_good_billing_section_loads(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN + """\
billing:
  currency: TWD
  tariffs:
    - {id: national, trunk: viettel, classes: [national], per_minute: "1.25", setup: 3, increment: 30/6}
""")
    billing = load_dialplan(path).billing
    assert (billing.currency, billing.minor_unit) == ("TWD", 2)
    (tariff,) = billing.tariffs
    assert (tariff.per_minute, tariff.setup, tariff.increment, tariff.rule) == (
        125, 300, Increment(30, 6), "billing.tariffs[0]")


def test_billing_mistakes_are_reported_where_they_are(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
billing:
  currency: VND
  tariffs:
    - {id: a, trunk: vietel, per_minute: 1100}
    - {id: a, classes: [nationl], per_minute: "0.5"}
    - {id: c, per_minute: 1.5}
    - {id: d, per_minute: 100, increment: 0/6}
    - {id: e, per_minute: 100, increment: "60"}
""")
    assert found == [
        "17:22: tariff 'a' names unknown trunk 'vietel'; did you mean 'viettel'?",
        "18:12: tariff id 'a' is already used at 17:12",
        "18:25: tariff 'a' names unknown call class 'nationl'; did you mean 'national'?",
        "18:47: tariff 'a' per_minute: '0.5' has more than 0 decimals, the currency's minor unit",
        "19:27: 'billing.tariffs[2].per_minute' must be a string or an integer, not a number; put the value"
        " in quotes",
        "20:7: warning: tariff 'd' names no trunk, classes or prefixes: it prices every outside call that no"
        " other tariff does",
        "20:43: tariff 'd': billing increments must be at least 1 second",
        "21:43: increment '60' must be FIRST/NEXT in seconds, e.g. 60/60, 30/6 or 1/1",
    ]


def test_a_currency_without_a_known_minor_unit_must_give_one(tmp_path: Path) -> None:
    assert problems(tmp_path, "billing: {currency: XAU, tariffs: []}\n") == [
        "14:21: currency 'XAU' has no known minor unit; give billing.minor_unit (the number of decimals,"
        " e.g. 2 for cents)"]
    assert problems(tmp_path, "billing: {tariffs: []}\n") == [
        "14:1: billing needs a currency (an ISO 4217 code such as VND)"]


def test_a_budget_per_account_code_loads_without_a_warning(tmp_path: Path) -> None:
    # Codes are asked for and charged: a code's budget, named by its id, is
    # no longer "kept for later".
    budgets = 'billing: {currency: VND}\nbudgets:\n  account_codes: {"17": 500000}\n'
    assert problems(tmp_path, budgets) == []
    path = tmp_path / "ok.yaml"
    path.write_text(PLAN + budgets)
    assert {key: b.limit for key, b in load_dialplan(path).budgets.budgets.items()} == {"account_code:17": 500000}
    assert problems(tmp_path, budgets.replace('"17"', "an-code")) == [
        "16:19: account code 'an-code' must be 1 to 16 digits"]


def test_a_call_is_charged_to_its_extension_department_project_and_code(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.replace("password: an-secret-1001}", "password: an-secret-1001, project: expo}") + """\
timezone: Asia/Ho_Chi_Minh
billing: {currency: VND}
budgets:
  extensions: {"1001": 100}
  departments: {sales: 200}
  projects: {expo: 300}
  account_codes: {"17": 400}
""")
    plan = load_dialplan(path)
    caller = plan.extensions["1001"]
    assert [b.key for b in budgets_for(plan, caller)] == ["extension:1001", "department:sales", "project:expo"]
    assert [(b.rule, b.limit) for b in budgets_for(plan, caller, "17")][-1] == ("budgets.account_codes.17", 400)
    assert budgets_for(plan, caller, "18")[-1].key == "project:expo"   # a code without a budget adds none
    # Periods are the plan's local calendar: 23:30 UTC on 30 November is December in Ho Chi Minh City.
    assert period_of(datetime(2026, 11, 30, 23, 30, tzinfo=UTC), "month", plan.timezone).label == "2026-12"
    assert period_of(datetime(2026, 12, 24, 12, tzinfo=UTC), "week", plan.timezone).label == "2026-W52"
    assert parse_period("2026-W52", plan.timezone).start.isoformat() == "2026-12-21T00:00:00+07:00"
