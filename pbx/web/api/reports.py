"""``/api/reports``: cost allocation and traffic, as ``pbx report`` shows
them, and ``/api/budgets``: each budget's spend, and its limit set as
``pbx budget set`` does.

A reader sees the calls placed within their scope: an admin all of them, a
branch admin or manager those placed from their departments, an employee
their own. Periods are read in the office's time zone (``2026-12``,
``2026-W51``, ``2026-12-24``, ``2026``; default: this month).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pbx.cdr.reports import REPORT_BY, ReportBy, Traffic, UsageReport, traffic_report, traffic_svg, usage_report
from pbx.routing.budgets import SECTION_OF, BudgetKind, Period, budget_uses, parse_period, period_of
from pbx.routing.dialplan import Dialplan
from pbx.routing.plan_edit import PlanEditError, set_value
from pbx.routing.tariffs import MoneyError, parse_money
from pbx.web.api.common import bad_request, plan_of, scope
from pbx.web.auth import audit, context, now_utc, require
from pbx.web.roles import Permission, Principal

router = APIRouter(prefix="/api", tags=["reports and budgets"])

PERIOD = Query(None, pattern=r"^[0-9]{4}(-W?[0-9]{2}(-[0-9]{2})?)?$",
               description="2026, 2026-12, 2026-W51 or 2026-12-24 (default: this month)")
BUDGET_KINDS: dict[str, BudgetKind] = {"extension": "extension", "department": "department", "project": "project",
                                       "code": "account_code"}


def period_in(label: str | None, plan: Dialplan, now: datetime) -> Period:
    if label is None:
        return period_of(now, "month", plan.timezone)
    try:
        return parse_period(label, plan.timezone)
    except ValueError as err:
        raise bad_request(str(err)) from None


def calls_seen(principal: Principal, plan: Dialplan,
               extension: str | None) -> tuple[Collection[str] | None, Collection[str] | None]:
    """(numbers, departments) whose placed calls ``principal`` may count;
    (None, None): all. 403 for an ``extension`` outside the scope."""
    seen = scope(principal, plan)
    if extension is not None and not seen.everything and extension not in seen.extensions:
        raise HTTPException(status_code=403, detail=f"extension {extension} is outside your scope")
    if seen.everything:
        return None, None
    return seen.extensions, seen.departments


async def usage_for(request: Request, principal: Principal, by: ReportBy, period: str | None,
                    extension: str | None) -> UsageReport:
    ctx, plan = context(request), plan_of(request)
    span = period_in(period, plan, now_utc(ctx))
    numbers, departments = calls_seen(principal, plan, extension)
    return await run_in_threadpool(lambda: usage_report(ctx.engine, by, span, extension=extension,
                                                        numbers=numbers, departments=departments))


async def traffic_for(request: Request, principal: Principal, period: str | None,
                      extension: str | None) -> Traffic:
    ctx, plan = context(request), plan_of(request)
    span = period_in(period, plan, now_utc(ctx))
    numbers, departments = calls_seen(principal, plan, extension)
    return await run_in_threadpool(lambda: traffic_report(ctx.engine, span, plan.timezone, extension=extension,
                                                          numbers=numbers, departments=departments))


def usage_view(found: UsageReport, plan: Dialplan) -> dict[str, Any]:
    billing = plan.billing

    def row(key: str | None, calls: int, answered: int, billsec: int, cost: int) -> dict[str, Any]:
        return {"key": key, "calls": calls, "answered": answered, "minutes": round(billsec / 60, 2),
                "cost_minor": cost, "cost": billing.money(cost)}

    return {"by": found.by, "period": found.period.label, "time_zone": str(plan.timezone),
            "currency": billing.currency,
            "rows": [row(r.key, r.calls, r.answered, r.billsec, r.cost) for r in found.rows],
            "total": row(None, found.total.calls, found.total.answered, found.total.billsec, found.total.cost)}


def report_by(text: str) -> ReportBy:
    for choice in ("department", "extension", "code", "class", "trunk", "project"):
        if text == choice:
            return choice
    raise bad_request(f"by is one of {', '.join(REPORT_BY)}")


@router.get("/reports")
async def usage(request: Request, by: str = Query("department", description=" | ".join(REPORT_BY)),
                period: str | None = PERIOD, extension: str | None = Query(None, pattern=r"^[0-9]{2,8}$"),
                principal: Principal = Depends(require(Permission.REPORTS_READ))) -> dict[str, Any]:
    """Calls, answered calls, minutes and cost per department, extension,
    account code, call class, trunk or project, costliest first, with a total."""
    return usage_view(await usage_for(request, principal, report_by(by), period, extension), plan_of(request))


@router.get("/reports/traffic")
async def traffic(request: Request, period: str | None = PERIOD,
                  extension: str | None = Query(None, pattern=r"^[0-9]{2,8}$"),
                  principal: Principal = Depends(require(Permission.REPORTS_READ))) -> dict[str, Any]:
    """Calls per local hour of the day and weekday, the answer rate, the
    wait before an answer (average, 90th percentile), the busiest hour."""
    found = await traffic_for(request, principal, period, extension)
    busiest = found.busiest
    return {"period": found.period.label, "time_zone": found.zone, "calls": found.calls, "answered": found.answered,
            "answer_rate": found.answer_rate, "by_hour": found.by_hour, "answered_by_hour": found.answered_by_hour,
            "by_weekday": found.by_weekday, "average_wait": found.average_wait,
            "wait_p90": found.wait_percentile(0.9),
            "busiest": None if busiest is None else {"hour": busiest[0].isoformat(), "calls": busiest[1]}}


@router.get("/reports/traffic.svg")
async def traffic_chart(request: Request, period: str | None = PERIOD,
                        extension: str | None = Query(None, pattern=r"^[0-9]{2,8}$"),
                        principal: Principal = Depends(require(Permission.REPORTS_READ))) -> Response:
    found = await traffic_for(request, principal, period, extension)
    return Response(traffic_svg(found, f"Calls per hour, {found.period.label}"), media_type="image/svg+xml")


# ---------------------------------------------------------------- budgets


class BudgetLimit(BaseModel):
    amount: str = Field(pattern=r"^[0-9]{1,18}(\.[0-9]{1,4})?$", description="per period, in the plan's currency")


def _budget_visible(principal: Principal, plan: Dialplan, kind: BudgetKind, name: str) -> bool:
    seen = scope(principal, plan)
    if seen.everything:
        return True
    if kind == "department":
        return name in seen.departments
    # A project or an account code can span departments: the admin's.
    return kind == "extension" and name in seen.extensions


@router.get("/budgets")
async def budgets(request: Request, period: str | None = PERIOD,
                  principal: Principal = Depends(require(Permission.BUDGETS_READ))) -> dict[str, Any]:
    """Each budget of the reader's scope: its limit, spend and share used in
    a period (default: the budgets' current one)."""
    from pbx.store.budgets import read_spend

    ctx, plan = context(request), plan_of(request)
    settings, billing = plan.budgets, plan.billing
    span = (period_of(now_utc(ctx), settings.period, plan.timezone) if period is None
            else period_in(period, plan, now_utc(ctx)))

    def read() -> tuple[dict[tuple[str, str], int], set[tuple[str, str]]]:
        with ctx.engine.connect() as conn:
            return read_spend(span.label, conn)

    spent, warned = await run_in_threadpool(read)
    return {"period": span.label, "warn_percent": settings.warn_percent, "currency": billing.currency,
            "budgets": [{"kind": u.budget.kind, "name": u.budget.name, "rule": u.budget.rule,
                         "limit_minor": u.budget.limit, "limit": billing.money(u.budget.limit),
                         "spent_minor": u.spent, "spent": billing.money(u.spent), "percent": round(u.percent, 1),
                         "state": u.state}
                        for u in budget_uses(settings, spent, warned, span.label)
                        if _budget_visible(principal, plan, u.budget.kind, u.budget.name)]}


@router.put("/budgets/{kind}/{name}")
async def set_budget(kind: str, name: str, limit: BudgetLimit, request: Request,
                     principal: Principal = Depends(require(Permission.BUDGETS_WRITE))) -> dict[str, Any]:
    """Set a limit per period (written into the dialplan, validated, atomic;
    the server reloads at once, so a raise lets the next call through)."""
    ctx, plan = context(request), plan_of(request)
    if kind not in BUDGET_KINDS:
        raise bad_request(f"kind is one of {', '.join(BUDGET_KINDS)}")
    try:
        minor = parse_money(limit.amount, plan.billing.minor_unit)
    except MoneyError as err:
        raise bad_request(str(err)) from None
    value: object = int(limit.amount) if limit.amount.isdigit() else limit.amount
    try:
        await run_in_threadpool(set_value, ctx.dialplan_path, ("budgets", SECTION_OF[BUDGET_KINDS[kind]], name), value)
    except PlanEditError as err:
        raise bad_request(str(err), err.problems) from None
    await ctx.reload("api")
    await audit(request, principal, "budget.set", f"{kind}:{name}", {"limit": limit.amount})
    return {"kind": BUDGET_KINDS[kind], "name": name, "limit_minor": minor, "limit": plan.billing.money(minor)}
