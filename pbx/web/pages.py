"""The console's pages: server-rendered Jinja2 with a little htmx (the
dashboard's live panel and the live calls refresh themselves). Every page
checks the same permissions as the API behind it and shows the reader's
scope only. Times are shown in the office's time zone (the dialplan's
``timezone``); words in the reader's language (:mod:`pbx.web.i18n`)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time as day_time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from pbx.cdr.query import list_calls
from pbx.cdr.reports import REPORT_BY, traffic_svg, usage_report
from pbx.routing.budgets import period_of
from pbx.routing.dialplan import Dialplan
from pbx.routing.extensions_file import ExtensionEdit, ExtensionEditError, edit_extensions
from pbx.web import i18n
from pbx.web.api.cdr import MAX_PAGE, CdrFilter
from pbx.web.api.extensions import NAME
from pbx.web.api.common import scope
from pbx.web.api.live import call_in_scope
from pbx.web.api.reports import calls_seen, report_by, traffic_for, usage_for, usage_view
from pbx.web.api.session import LoginRefused, log_in, replace_password, set_session_cookie
from pbx.web.auth import Caller, audit, authenticated, context, cookie_name, now_utc
from pbx.web.credentials import ha1_values, new_password
from pbx.web.roles import Permission, Principal, allowed, may_write_department

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))

NAV: tuple[tuple[str, str, Permission], ...] = (
    ("/", "dashboard", Permission.CDR_READ),
    ("/extensions", "extensions", Permission.EXTENSIONS_READ),
    ("/groups", "groups", Permission.GROUPS_READ),
    ("/cdr", "cdr", Permission.CDR_READ),
    ("/reports", "reports", Permission.REPORTS_READ),
    ("/live", "live", Permission.LIVE_READ),
)


def _language(request: Request, principal: Principal | None) -> str:
    return i18n.pick_language(principal.language if principal is not None else None, request.cookies.get("lang"),
                              request.headers.get("accept-language"))


def _render(request: Request, name: str, caller: Caller | None, status: int = 200, **values: Any) -> HTMLResponse:
    ctx = context(request)
    plan = ctx.plan()
    language = _language(request, caller.principal if caller else None)
    zone = plan.timezone

    def local(value: object) -> str:
        if isinstance(value, (int, float)):
            value = datetime.fromtimestamp(value, UTC)
        if isinstance(value, datetime):
            return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        return "" if value is None else str(value)

    nav = [(href, key) for href, key, permission in NAV
           if caller is not None and allowed(caller.principal, permission)]
    return templates.TemplateResponse(request, name, {
        "t": lambda key: i18n.text(key, language), "lang": language, "languages": i18n.LANGUAGES,
        "caller": caller, "nav": nav, "zone": str(zone), "local": local, "path": request.url.path, **values,
    }, status_code=status)


def render_error(request: Request, caller: Caller | None, status: int, message: str) -> HTMLResponse:
    return _render(request, "error.html", caller, status=status, message=message)


def forbidden_text(request: Request) -> str:
    return i18n.text("forbidden", _language(request, None))


async def page_caller(request: Request) -> Caller:
    return await authenticated(request)


def _need(caller: Caller, permission: Permission) -> None:
    if not allowed(caller.principal, permission):
        raise HTTPException(status_code=403, detail="forbidden")


# ------------------------------------------------------------- log-in


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    return _render(request, "login.html", None)


@router.post("/login", response_class=HTMLResponse)
async def login_form(request: Request, username: str = Form(..., max_length=256),
                     password: str = Form(..., max_length=256)) -> Response:
    try:
        done = await log_in(request, username, password)
    except LoginRefused as refused:
        return _render(request, "login.html", None, status=refused.status, error=refused.key)
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(request, response, done.token)
    return response


@router.post("/logout")
async def logout_form(request: Request, caller: Caller = Depends(page_caller)) -> Response:
    ctx = context(request)
    token = request.cookies.get(cookie_name(ctx))
    if token:
        await run_in_threadpool(ctx.store.close_session, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(cookie_name(ctx), path="/", secure=ctx.secure_cookies, httponly=True, samesite="strict")
    return response


@router.get("/lang/{language}")
async def set_language(language: str, request: Request) -> Response:
    # Back to the page the switcher was clicked on, if it is one of ours:
    # never to another site named in the Referer.
    referer = urlsplit(request.headers.get("referer") or "")
    same_site = referer.scheme == request.url.scheme and referer.netloc == request.url.netloc
    target = (referer.path or "/") + (f"?{referer.query}" if referer.query else "") if same_site else "/"
    response = RedirectResponse(target if target.startswith("/") and not target.startswith("//") else "/",
                                status_code=303)
    if language in i18n.LANGUAGES:
        response.set_cookie("lang", language, max_age=365 * 86400, path="/", samesite="lax")
    return response


# ------------------------------------------------------------- own account


@router.get("/account", response_class=HTMLResponse)
async def account_page(request: Request, caller: Caller = Depends(page_caller)) -> Response:
    return _render(request, "account.html", caller)


@router.post("/account/password", response_class=HTMLResponse)
async def account_password(request: Request, caller: Caller = Depends(page_caller),
                           current: str = Form(..., max_length=256), new: str = Form(..., max_length=256),
                           repeat: str = Form(..., max_length=256)) -> Response:
    if new != repeat:
        return _render(request, "account.html", caller, status=422, error="password_mismatch")
    try:
        done = await replace_password(request, caller.principal, current, new)
    except LoginRefused as refused:
        return _render(request, "account.html", caller, status=refused.status, error=refused.key)
    # The page is drawn for the new session: its CSRF token in the forms.
    response = _render(request, "account.html", Caller(done.principal, done.csrf), changed=True)
    set_session_cookie(request, response, done.token)
    return response


# ------------------------------------------------------------- dashboard


def _today_start(plan: Dialplan, now: datetime) -> datetime:
    local = now.astimezone(plan.timezone)
    return datetime.combine(local.date(), day_time(), tzinfo=plan.timezone)


def _live_counts(request: Request, principal: Principal) -> dict[str, Any]:
    ctx = context(request)
    plan = ctx.plan()
    seen = scope(principal, plan)
    departments = {n: e.department for n, e in plan.extensions.items()}
    if ctx.live is None:
        return {"registered": 0, "calls": []}
    registered = {r.extension for r in ctx.live.registrations()
                  if seen.covers_extension(r.extension, departments.get(r.extension))}
    calls = [c for c in ctx.live.calls() if call_in_scope(c, seen, departments)]
    return {"registered": len(registered), "calls": calls}


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, caller: Caller = Depends(page_caller)) -> Response:
    _need(caller, Permission.CDR_READ)
    ctx = context(request)
    plan = ctx.plan()
    query = CdrFilter().query(caller.principal, plan, now_utc(ctx))
    query["since"] = _today_start(plan, now_utc(ctx))
    rows = await run_in_threadpool(lambda: list_calls(ctx.engine, limit=50_000, **query))
    ended = [r for r in rows if r.get("disposition")]
    answered = sum(1 for r in ended if r["disposition"] == "ANSWERED")
    top = Counter(r["caller_number"] for r in rows).most_common(5)
    return _render(request, "dashboard.html", caller, today=len(rows),
                   answer_rate=f"{100 * answered / len(ended):.0f} %" if ended else "-", top=top,
                   spenders=await _top_spenders(request, caller.principal), **_live_counts(request, caller.principal))


async def _top_spenders(request: Request, principal: Principal) -> list[tuple[str, int, str]]:
    """(extension, cost in minor units, cost written out) of today's five
    costliest callers in the reader's scope, from the cost report's query."""
    if not allowed(principal, Permission.REPORTS_READ):
        return []
    ctx = context(request)
    plan = ctx.plan()
    today = period_of(now_utc(ctx), "day", plan.timezone)
    numbers, departments = calls_seen(principal, plan, None)
    found = await run_in_threadpool(lambda: usage_report(ctx.engine, "extension", today, numbers=numbers,
                                                         departments=departments))
    return [(row.key or "-", row.cost, plan.billing.money(row.cost)) for row in found.rows if row.cost > 0][:5]


@router.get("/partials/live", response_class=HTMLResponse)
async def live_partial(request: Request, caller: Caller = Depends(page_caller)) -> Response:
    _need(caller, Permission.LIVE_READ)
    return _render(request, "live_panel.html", caller, **_live_counts(request, caller.principal))


@router.get("/live", response_class=HTMLResponse)
async def live_page(request: Request, caller: Caller = Depends(page_caller)) -> Response:
    _need(caller, Permission.LIVE_READ)
    ctx = context(request)
    plan = ctx.plan()
    seen = scope(caller.principal, plan)
    registrations = [r for r in (ctx.live.registrations() if ctx.live else [])
                     if seen.covers_extension(r.extension, e.department if (e := plan.extensions.get(r.extension))
                                              else None)]
    return _render(request, "live.html", caller, registrations=registrations,
                   **_live_counts(request, caller.principal))


# ------------------------------------------------------------- extensions


def _extensions(request: Request, principal: Principal) -> list[Any]:
    plan = context(request).plan()
    seen = scope(principal, plan)
    return [e for n, e in plan.extensions.items() if seen.covers_extension(n, e.department)]


@router.get("/extensions", response_class=HTMLResponse)
async def extensions_page(request: Request, caller: Caller = Depends(page_caller)) -> Response:
    _need(caller, Permission.EXTENSIONS_READ)
    return _render(request, "extensions.html", caller, extensions=_extensions(request, caller.principal),
                   departments=_writable_departments(request, caller.principal))


def _writable_departments(request: Request, principal: Principal) -> list[Any]:
    plan = context(request).plan()
    return [d for d in plan.departments.values() if may_write_department(principal, d.key)]


@router.post("/extensions", response_class=HTMLResponse)
async def create_extension_form(request: Request, caller: Caller = Depends(page_caller),
                                number: str = Form(..., pattern=r"^[0-9]{2,8}$"),
                                name: str = Form(..., min_length=1, max_length=100, pattern=NAME),
                                department: str = Form(...)) -> Response:
    ctx = context(request)
    plan = ctx.plan()
    if department not in plan.departments or not may_write_department(caller.principal, department):
        raise HTTPException(status_code=403, detail="forbidden")
    password = new_password()
    md5, sha256 = ha1_values(number, plan.domain, password)
    edit = ExtensionEdit(number=number, create=True,
                         values={"name": name, "department": department, "ha1_md5": md5, "ha1_sha256": sha256})
    error = None
    try:
        await run_in_threadpool(edit_extensions, ctx.dialplan_path, [edit])
    except ExtensionEditError as err:
        error = "; ".join([str(err), *(str(p) for p in err.problems)])
    else:
        await ctx.reload("web")
        await audit(request, caller.principal, "extension.create", number, {"name": name, "department": department})
    return _render(request, "extensions.html", caller, status=422 if error else 201,
                   extensions=_extensions(request, caller.principal),
                   departments=_writable_departments(request, caller.principal), error=error,
                   created=None if error else {"number": number, "password": password, "domain": plan.domain})


@router.get("/groups", response_class=HTMLResponse)
async def groups_page(request: Request, caller: Caller = Depends(page_caller)) -> Response:
    _need(caller, Permission.GROUPS_READ)
    plan = context(request).plan()
    return _render(request, "groups.html", caller, groups=list(plan.groups.values()),
                   hunt_groups=list(plan.hunt_groups.values()))


# ------------------------------------------------------------- call records


@router.get("/cdr", response_class=HTMLResponse)
async def cdr_page(request: Request, caller: Caller = Depends(page_caller), filters: CdrFilter = Depends(),
                   offset: int = 0) -> Response:
    _need(caller, Permission.CDR_READ)
    ctx = context(request)
    plan = ctx.plan()
    query = filters.query(caller.principal, plan, now_utc(ctx))
    limit = min(MAX_PAGE, 50)
    rows = await run_in_threadpool(lambda: list_calls(ctx.engine, limit=limit + 1, offset=max(offset, 0), **query))
    more = len(rows) > limit
    page = list(reversed(rows))[:limit]
    params = {k: v for k, v in request.query_params.items() if k != "offset" and v}
    return _render(request, "cdr.html", caller, rows=page, params=params, offset=offset,
                   csv_link="/api/cdr.csv" + ("?" + urlencode(params) if params else ""),
                   older=("/cdr?" + urlencode({**params, "offset": offset + limit})) if more else None,
                   newer=("/cdr?" + urlencode({**params, "offset": max(0, offset - limit)})) if offset else None,
                   departments=[d for d in plan.departments.values()
                                if caller.principal.role == "admin" or d.key in caller.principal.departments])


# ------------------------------------------------------------- reports


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(request: Request, caller: Caller = Depends(page_caller), by: str = "department",
                       period: str | None = None) -> Response:
    _need(caller, Permission.REPORTS_READ)
    chosen = report_by(by) if by in REPORT_BY else "department"
    label = period or None
    usage = usage_view(await usage_for(request, caller.principal, chosen, label, None), context(request).plan())
    traffic = await traffic_for(request, caller.principal, label, None)
    # The chart is drawn here as SVG text (its labels escaped): no script,
    # nothing for the browser to fetch, and the same drawing as
    # `pbx report traffic --svg`.
    chart = traffic_svg(traffic, f"{i18n.text('calls_per_hour', _language(request, caller.principal))}, "
                                 f"{traffic.period.label}")
    peak = max((row["cost_minor"] for row in usage["rows"]), default=0)
    return _render(request, "reports.html", caller, usage=usage, traffic=traffic, chart=chart, by=chosen,
                   choices=REPORT_BY, period=usage["period"], peak=peak)
