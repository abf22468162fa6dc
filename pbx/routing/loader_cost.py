"""The loader's part for cost control: ``billing:`` (currency and tariffs),
``budgets:``, an extension's project, status and validity, and the
``incoming:`` lists for callers from outside (company-wide, per inbound
number, per extension).

As in :mod:`pbx.routing.loader_routing`: checks that need more than one
node report with the place of the value at fault, and tolerate what the
schema already refused; then the builders make the model's parts.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from typing import Any, Final

from pbx.routing.budgets import SECTIONS, Budget, BudgetSettings
from pbx.routing.classes_of_service import NumberList
from pbx.routing.loader_common import (DataPath, Merged, Place, Report, check_reference, entries_of, section_of,
                                       strings_in, suggest, value_at)
from pbx.routing.loader_routing import known_classes
from pbx.routing.screening import Screening
from pbx.routing.tariffs import Billing, Increment, MoneyError, Tariff, parse_money

MINOR_UNITS: Final = {
    "VND": 0, "JPY": 0, "KRW": 0, "TWD": 2, "CNY": 2, "HKD": 2, "SGD": 2, "THB": 2, "MYR": 2, "PHP": 2,
    "IDR": 2, "USD": 2, "EUR": 2, "GBP": 2, "AUD": 2, "CHF": 2, "KWD": 3, "BHD": 3,
}
"""ISO 4217 decimals of common currencies; others need ``minor_unit``."""


# ---------------------------------------------------------------- reading values


def minor_unit_of(data: dict[str, Any]) -> int | None:
    """Decimals of the plan's currency: given, or known for its code."""
    billing = data.get("billing")
    if not isinstance(billing, dict):
        return 0
    given = billing.get("minor_unit")
    if isinstance(given, int) and not isinstance(given, bool):
        return given
    currency = billing.get("currency", "VND")
    return MINOR_UNITS.get(currency) if isinstance(currency, str) else None


def _money(value: object, minor_unit: int) -> int:
    if isinstance(value, bool):
        raise MoneyError("an amount, not true/false")
    return parse_money(str(value) if isinstance(value, int) else value, minor_unit)  # type: ignore[arg-type]


def _zone_of(data: dict[str, Any]) -> dt.tzinfo:
    name = data.get("timezone")
    if isinstance(name, str):
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
    return dt.timezone.utc


def moment(text: str, zone: dt.tzinfo, *, end_of_day: bool) -> dt.datetime:
    """``2026-12-31`` or ``2026-12-31 18:00`` in ``zone``. A bare date as an
    end (``valid_until``) means the whole of that day: the next midnight."""
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        if end_of_day:
            day += dt.timedelta(days=1)
        return dt.datetime(day.year, day.month, day.day, tzinfo=zone)
    return dt.datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=zone)


# ---------------------------------------------------------------- checks


def check_billing(plan: Merged, root: Place, report: Report) -> None:
    billing = plan.data.get("billing")
    if not isinstance(billing, dict):
        return
    here = plan.key_place(("billing",), root)
    if "currency" not in billing:
        report(here, "billing needs a currency (an ISO 4217 code such as VND)")
    minor = minor_unit_of(plan.data)
    if minor is None:
        report(plan.value_place(("billing", "currency"), here),
               f"currency {billing.get('currency')!r} has no known minor unit; give billing.minor_unit"
               " (the number of decimals, e.g. 2 for cents)")
    trunks = section_of(plan, "trunks")
    classes = known_classes(plan)
    seen: dict[str, Place] = {}
    tariffs = billing.get("tariffs")
    for index, entry in enumerate(tariffs if isinstance(tariffs, list) else []):
        path: DataPath = ("billing", "tariffs", index)
        if not isinstance(entry, dict) or not plan.valid(path):
            continue
        at = plan.value_place(path, root)
        ident = entry.get("id")
        if isinstance(ident, str):
            if ident in seen:
                report(plan.value_place((*path, "id"), at), f"tariff id {ident!r} is already used at {seen[ident]}")
            else:
                seen[ident] = plan.value_place((*path, "id"), at)
        check_reference(plan, (*path, "trunk"), trunks, "trunk", f"tariff {ident!r}", root, report)
        for item, _ in strings_in(entry.get("classes")):
            check_reference(plan, (*path, "classes", item), classes, "call class", f"tariff {ident!r}", root, report)
        for key in ("per_minute", "setup"):
            if key in entry and minor is not None:
                try:
                    _money(entry[key], minor)
                except MoneyError as error:
                    report(plan.value_place((*path, key), at), f"tariff {ident!r} {key}: {error}")
        increment = entry.get("increment")
        if isinstance(increment, str):
            try:
                Increment.parse(increment)
            except ValueError as error:
                report(plan.value_place((*path, "increment"), at), f"tariff {ident!r}: {error}")
        if "trunk" not in entry and "classes" not in entry and "prefixes" not in entry:
            report(at, f"tariff {ident!r} names no trunk, classes or prefixes: it prices every outside call"
                   " that no other tariff does", "warning")


def check_budgets(plan: Merged, root: Place, report: Report) -> None:
    budgets = plan.data.get("budgets")
    if not isinstance(budgets, dict):
        return
    here = plan.key_place(("budgets",), root)
    minor = minor_unit_of(plan.data)
    if "billing" not in plan.data and plan.complete:
        report(here, "budgets without billing tariffs: no call costs anything, so no budget is ever used",
               "warning")
    known = {
        "extensions": section_of(plan, "extensions"),
        "departments": section_of(plan, "departments"),
    }
    tagged = {entry.get("project") for _, entry in entries_of(plan, "extensions")}
    for section in SECTIONS:
        given = budgets.get(section)
        for name, value in given.items() if isinstance(given, dict) else ():
            path: DataPath = ("budgets", section, name)
            if not plan.valid(path):
                continue
            at = plan.value_place(path, here)
            if minor is not None:
                try:
                    _money(value, minor)
                except MoneyError as error:
                    report(at, f"budget {section}.{name}: {error}")
            if section in known and name not in known[section] and plan.complete:
                what = "extension" if section == "extensions" else "department"
                report(plan.key_place(path, here), f"budget for unknown {what} {name!r}")
            if section == "projects" and name not in tagged and plan.complete:
                report(plan.key_place(path, here), f"no extension has project {name!r}: this budget is never"
                       " charged", "warning")


def _check_screening(plan: Merged, path: DataPath, owner: str, root: Place, report: Report) -> None:
    lists = section_of(plan, "number_lists")
    for key in ("blacklist", "whitelist"):
        for index, _ in strings_in(value_at(plan, (*path, key))):
            check_reference(plan, (*path, key, index), lists, "number list", owner, root, report)
    level = value_at(plan, path)
    if isinstance(level, dict) and level.get("whitelist_only") is True and not level.get("whitelist"):
        report(plan.value_place(path, root), f"{owner}: whitelist_only without a whitelist refuses every caller",
               "warning")


def check_lifecycle_and_screening(plan: Merged, root: Place, report: Report) -> None:
    zone = _zone_of(plan.data)
    _check_screening(plan, ("incoming",), "'incoming'", root, report)
    dids = value_at(plan, ("incoming", "dids"))
    inbound = section_of(plan, "inbound")
    for did in dids if isinstance(dids, dict) else {}:
        path: DataPath = ("incoming", "dids", did)
        _check_screening(plan, path, f"inbound number {did!r}", root, report)
        if did not in inbound and plan.complete:
            report(plan.key_place(path, root), f"incoming lists for {did!r}, which is not one of the inbound"
                   " numbers" + suggest(did, inbound))
    for number, entry in entries_of(plan, "extensions"):
        if "incoming" not in entry and "valid_from" not in entry and "valid_until" not in entry:
            continue  # nothing to check (most extensions: a plan of 20,000 spent 0.05 s finding that)
        path = ("extensions", number)
        _check_screening(plan, (*path, "incoming"), f"extension {number!r}", root, report)
        start = _moment_at(plan, (*path, "valid_from"), zone, False, root, report)
        end = _moment_at(plan, (*path, "valid_until"), zone, True, root, report)
        if start is not None and end is not None and end <= start:
            report(plan.value_place((*path, "valid_until"), root),
                   f"extension {number!r}: valid_until must be after valid_from")


def _moment_at(plan: Merged, path: DataPath, zone: dt.tzinfo, end: bool, root: Place,
               report: Report) -> dt.datetime | None:
    text = value_at(plan, path)
    if not isinstance(text, str) or not plan.valid(path):
        return None
    try:
        return moment(text, zone, end_of_day=end)
    except ValueError:
        report(plan.value_place(path, root), f"{text!r} is not a real date and time")
        return None


CHECKS: Final[tuple[Callable[[Merged, Place, Report], None], ...]] = (
    check_billing, check_budgets, check_lifecycle_and_screening,
)


# ---------------------------------------------------------------- build


def _screening(value: object, lists: dict[str, NumberList]) -> Screening:
    if not isinstance(value, dict):
        return Screening()
    return Screening(
        blacklist=tuple(lists[str(name)] for name in value.get("blacklist", [])),
        whitelist=tuple(lists[str(name)] for name in value.get("whitelist", [])),
        whitelist_only=value.get("whitelist_only") is True,
        announce=value.get("blocked") == "announce",
    )


EXTENSION_KEYS: Final = frozenset({"project", "status", "valid_from", "valid_until", "inactive_status", "incoming"})
"""The keys of an extension entry :func:`extension_fields` reads."""


def extension_fields(entry: dict[str, Any], data: dict[str, Any], lists: dict[str, NumberList]) -> dict[str, Any]:
    """Cost and lifecycle keys of an extension entry, for :class:`Extension`."""
    fields: dict[str, Any] = {}
    for key in ("project", "status"):
        if key in entry:
            fields[key] = str(entry[key])
    if "valid_from" in entry:
        fields["valid_from"] = moment(str(entry["valid_from"]), _zone_of(data), end_of_day=False)
    if "valid_until" in entry:
        fields["valid_until"] = moment(str(entry["valid_until"]), _zone_of(data), end_of_day=True)
    if "inactive_status" in entry:
        fields["inactive_status"] = int(entry["inactive_status"])
    if "incoming" in entry:
        fields["incoming"] = _screening(entry["incoming"], lists)
    return fields


def build_cost(plan: Merged, lists: dict[str, NumberList]) -> dict[str, Any]:
    """Keyword arguments for :class:`Dialplan`: billing, budgets, lists."""
    data = plan.data
    minor = minor_unit_of(data) or 0
    billing_data = section_of(plan, "billing")
    tariffs = []
    for index, entry in enumerate(billing_data.get("tariffs", [])):
        tariffs.append(Tariff(
            id=str(entry["id"]),
            per_minute=_money(entry["per_minute"], minor),
            setup=_money(entry.get("setup", 0), minor),
            increment=Increment.parse(str(entry.get("increment", "60/60"))),
            trunk=str(entry["trunk"]) if "trunk" in entry else None,
            classes=frozenset(map(str, entry["classes"])) if "classes" in entry else None,
            prefixes=tuple(str(prefix).replace(" ", "") for prefix in entry.get("prefixes", [])),
            rule=f"billing.tariffs[{index}]",
        ))
    billing = Billing(currency=str(billing_data.get("currency", "VND")), minor_unit=minor, tariffs=tuple(tariffs))
    budget_data = section_of(plan, "budgets")
    budgets: dict[str, Budget] = {}
    for section, kind in SECTIONS.items():
        for name, value in (budget_data.get(section) or {}).items():
            budget = Budget(kind=kind, name=str(name), limit=_money(value, minor))
            budgets[budget.key] = budget
    settings = BudgetSettings(
        budgets=budgets,
        **{key: budget_data[key] for key in ("period", "warn_percent", "reserve_seconds", "webhook")
           if key in budget_data},
    )
    return {
        "billing": billing,
        "budgets": settings,
        "incoming": _screening(data.get("incoming"), lists),
        "did_incoming": {str(did): _screening(value, lists)
                         for did, value in (section_of(plan, "incoming").get("dids") or {}).items()},
    }
