"""Budgets: how much money whose calls may cost in a period (the
``budgets:`` section), and which budgets a call is charged to.

A budget belongs to an extension, a department, a project tag (an
extension's ``project``) or an account code; a call from an extension is
charged to every budget that names it, its department, its project and
the account code it was placed under (a code's budget is named by the
code's id, as ``pbx codes list`` and the CDR's ``account_code`` show it). Spend is the sum
of the costs of the calls *started* in the period, so it can always be
recounted from the CDRs alone.

Periods are calendar months (the default), ISO weeks or days in the plan's
time zone; their labels (``2026-12``, ``2026-W51``, ``2026-12-24``) are
what the store keys spend on and what ``pbx report --period`` reads (which
also takes a year, ``2026``).

Pure data and lookup; counting and reservations live at the call layer
(:mod:`pbx.calls.budgets`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, get_args

if TYPE_CHECKING:
    from pbx.routing.dialplan import Dialplan, Extension

BudgetKind = Literal["extension", "department", "project", "account_code"]
PeriodKind = Literal["month", "week", "day"]
PERIOD_KINDS: Final[tuple[str, ...]] = get_args(PeriodKind)

SECTIONS: Final[Mapping[str, BudgetKind]] = MappingProxyType({
    "extensions": "extension", "departments": "department", "projects": "project",
    "account_codes": "account_code",
})
"""``budgets.<section>`` -> the kind of its budgets."""
SECTION_OF: Final[Mapping[BudgetKind, str]] = MappingProxyType({kind: section for section, kind in SECTIONS.items()})

FREE_CLASSES: Final = frozenset({"emergency", "toll_free"})
"""Calls of these classes are never refused for a budget (they are still
priced if a tariff says so)."""
TAG: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
"""A project tag, as extensions and budgets write it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """One budget: at most ``limit`` minor units of calls per period."""

    kind: BudgetKind
    name: str
    """The extension number, department key, project tag or account code."""
    limit: int

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError(f"budget {self.rule}: the limit must not be negative")

    @property
    def key(self) -> str:
        """``department:sales``: how the store names it."""
        return f"{self.kind}:{self.name}"

    @property
    def rule(self) -> str:
        """``budgets.departments.sales``: where the dialplan sets it."""
        return f"budgets.{SECTION_OF[self.kind]}.{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetSettings:
    """The ``budgets:`` section."""

    period: PeriodKind = "month"
    warn_percent: int = 80
    """One alert per budget and period when spend reaches this share."""
    reserve_seconds: int = 300
    """A call being placed holds the cost of this long a call against its
    budgets until it ends: many calls started at once cannot overrun one."""
    webhook: str | None = field(default=None, repr=False)
    """Where alerts are POSTed (JSON); None: the log line only. Not in repr:
    the URL may carry a token."""
    budgets: Mapping[str, Budget] = field(default_factory=dict)
    """By :attr:`Budget.key`."""

    def __post_init__(self) -> None:
        if self.period not in PERIOD_KINDS:
            raise ValueError(f"budget period must be one of {', '.join(PERIOD_KINDS)}")
        if not 1 <= self.warn_percent <= 100:
            raise ValueError("warn_percent must be 1 to 100")
        if self.reserve_seconds < 1:
            raise ValueError("reserve_seconds must be at least 1")
        object.__setattr__(self, "budgets", MappingProxyType(dict(self.budgets)))

    def find(self, kind: BudgetKind, name: str | None) -> Budget | None:
        return self.budgets.get(f"{kind}:{name}") if name else None

    def warn_level(self, budget: Budget) -> int:
        """Spend (minor units) at which ``budget`` warns: rounded up, so 80 %
        of 999 warns at 800, never before the share is reached."""
        return -(-budget.limit * self.warn_percent // 100)


def budgets_for(plan: Dialplan, caller: Extension, account_code: str | None = None) -> tuple[Budget, ...]:
    """The budgets a call from ``caller`` is charged to, the extension's
    own first. ``account_code``: the id of the code the call is placed
    under, if any."""
    settings = plan.budgets
    found = (
        settings.find("extension", caller.number),
        settings.find("department", caller.department),
        settings.find("project", caller.project),
        settings.find("account_code", account_code),
    )
    return tuple(budget for budget in found if budget is not None)


BudgetState = Literal["ok", "warned", "exhausted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetUse:
    """One budget's spend in one period, as ``pbx budget show`` and the API show it."""

    budget: Budget
    spent: int
    """Minor units."""
    percent: float
    state: BudgetState


def budget_uses(settings: BudgetSettings, spent: Mapping[tuple[str, str], int],
                warned: Collection[tuple[str, str]], label: str) -> list[BudgetUse]:
    """Each budget's use in period ``label``, from the store's spend and
    warnings (keyed ``(budget key, period label)``)."""
    uses = []
    for budget in settings.budgets.values():
        used = spent.get((budget.key, label), 0)
        state: BudgetState = ("exhausted" if used >= budget.limit
                              else "warned" if (budget.key, label) in warned else "ok")
        uses.append(BudgetUse(budget=budget, spent=used,
                              percent=used * 100 / budget.limit if budget.limit else 100.0, state=state))
    return uses


# ---------------------------------------------------------------- periods


@dataclass(frozen=True, slots=True)
class Period:
    """A span of local calendar time: [start, end), aware datetimes."""

    label: str
    start: datetime
    end: datetime


_MONTH: Final = re.compile(r"([0-9]{4})-([0-9]{2})")
_WEEK: Final = re.compile(r"([0-9]{4})-W([0-9]{2})")
_DAY: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_YEAR: Final = re.compile(r"[0-9]{4}")


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _month(year: int, month: int, zone: tzinfo) -> Period:
    after = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return Period(f"{year:04d}-{month:02d}", _midnight(date(year, month, 1), zone), _midnight(after, zone))


def _week(monday: date, zone: tzinfo) -> Period:
    year, week, _ = monday.isocalendar()
    return Period(f"{year:04d}-W{week:02d}", _midnight(monday, zone), _midnight(monday + timedelta(days=7), zone))


def _day(day: date, zone: tzinfo) -> Period:
    return Period(day.isoformat(), _midnight(day, zone), _midnight(day + timedelta(days=1), zone))


def period_of(at: datetime, kind: PeriodKind, zone: tzinfo) -> Period:
    """The period of ``kind`` that ``at`` falls in, in ``zone``'s calendar."""
    local = at.astimezone(zone).date()
    if kind == "month":
        return _month(local.year, local.month, zone)
    if kind == "week":
        return _week(local - timedelta(days=local.weekday()), zone)
    return _day(local, zone)


def parse_period(label: str, zone: tzinfo) -> Period:
    """``2026-12``, ``2026-W51``, ``2026-12-24`` or ``2026`` as a period in
    ``zone``; ValueError with the accepted forms otherwise."""
    try:
        if found := _MONTH.fullmatch(label):
            year, month = int(found.group(1)), int(found.group(2))
            if not 1 <= month <= 12:
                raise ValueError
            return _month(year, month, zone)
        if found := _WEEK.fullmatch(label):
            monday = date.fromisocalendar(int(found.group(1)), int(found.group(2)), 1)
            return _week(monday, zone)
        if found := _DAY.fullmatch(label):
            return _day(date(int(found.group(1)), int(found.group(2)), int(found.group(3))), zone)
        if _YEAR.fullmatch(label):
            year = int(label)
            return Period(label, _midnight(date(year, 1, 1), zone), _midnight(date(year + 1, 1, 1), zone))
    except ValueError:
        pass
    raise ValueError(f"period {label!r} must be a year (2026), month (2026-12), ISO week (2026-W51)"
                     " or day (2026-12-24)")
