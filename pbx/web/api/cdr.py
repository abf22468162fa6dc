"""``/api/cdr``: call records by time range, extension, department,
disposition, account-code owner and hunt group, newest first, in pages; ``/api/cdr.csv``: the
same rows as ``pbx cdr list --csv``. A reader sees the calls of their scope
only (their departments, or their own extension)."""

from __future__ import annotations

import io
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool

from pbx.cdr.query import list_calls, write_csv
from pbx.cdr.records import Disposition
from pbx.cli.cdr import TimeFormatError, parse_time
from pbx.routing.dialplan import Dialplan
from pbx.web.api.common import plan_of, scope
from pbx.web.auth import context, require
from pbx.web.roles import Permission, Principal

router = APIRouter(prefix="/api", tags=["call records"])

MAX_PAGE = 500
MAX_CSV_ROWS = 100_000


def _none_if_empty(value: object) -> object:
    return None if value == "" else value


# The console's search form sends every field, the ones left blank as
# "field=": a blank field means "any", not a value to check.
Blank = BeforeValidator(_none_if_empty)


class CdrFilter:
    """The query's filters, checked against the reader's scope."""

    def __init__(self,
                 since: Annotated[str | None, Query(description="ISO date/time (office time zone) or an age: 7d"),
                                  Blank] = None,
                 until: Annotated[str | None, Query(), Blank] = None,
                 extension: Annotated[str | None, Query(pattern=r"^[0-9+*#]{1,32}$"), Blank] = None,
                 department: Annotated[str | None, Query(max_length=32), Blank] = None,
                 disposition: Annotated[Disposition | None, Query(), Blank] = None,
                 hunt_group: Annotated[str | None, Query(pattern=r"^[0-9]{2,8}$"), Blank] = None,
                 code_owner: Annotated[str | None, Query(max_length=255, description=(
                     "calls placed with an account code of this owner")), Blank] = None) -> None:
        self.since, self.until, self.extension = since, until, extension
        self.department, self.disposition, self.hunt_group = department, disposition, hunt_group
        # The owner narrows within the reader's scope (below), never past it:
        # a manager asking for a code owner sees that owner's calls from
        # their own departments only.
        self.code_owner = code_owner

    def query(self, principal: Principal, plan: Dialplan, now: datetime) -> dict[str, Any]:
        try:
            start = parse_time(self.since, now, plan.timezone) if self.since else None
            end = parse_time(self.until, now, plan.timezone, end_of_day=True) if self.until else None
        except TimeFormatError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None
        seen = scope(principal, plan)
        numbers: Collection[str] | None = None if seen.everything else seen.extensions
        departments: Collection[str] | None = None if seen.everything else seen.departments
        if self.department is not None:
            if not seen.everything and self.department not in seen.departments:
                raise HTTPException(status_code=403, detail=f"department {self.department} is outside your scope")
            numbers = {n for n, e in plan.extensions.items() if e.department == self.department}
            departments = {self.department}
        if self.extension is not None and not seen.everything and self.extension not in seen.extensions:
            raise HTTPException(status_code=403, detail=f"extension {self.extension} is outside your scope")
        return {"since": start, "until": end, "extension": self.extension, "hunt_group": self.hunt_group,
                "account_owner": self.code_owner,
                "disposition": self.disposition.value if self.disposition else None, "numbers": numbers,
                "departments": departments}


def _json_row(row: dict[str, Any], plan: Dialplan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            out[key] = value.astimezone(plan.timezone).isoformat(timespec="seconds")
        elif value is None or isinstance(value, (int, str, float, bool)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


@router.get("/cdr")
async def search_cdr(request: Request, filters: CdrFilter = Depends(),
                     limit: int = Query(50, ge=1, le=MAX_PAGE), offset: int = Query(0, ge=0),
                     principal: Principal = Depends(require(Permission.CDR_READ))) -> dict[str, Any]:
    ctx, plan = context(request), plan_of(request)
    query = filters.query(principal, plan, datetime.fromtimestamp(ctx.clock(), UTC))
    rows = await run_in_threadpool(lambda: list_calls(ctx.engine, limit=limit + 1, offset=offset, **query))
    more = len(rows) > limit
    page = list(reversed(rows))[:limit]  # newest first
    return {"rows": [_json_row(r, plan) for r in page], "limit": limit, "offset": offset,
            "next_offset": offset + limit if more else None, "time_zone": str(plan.timezone)}


@router.get("/cdr.csv")
async def cdr_csv(request: Request, filters: CdrFilter = Depends(),
                  principal: Principal = Depends(require(Permission.CDR_READ))) -> Response:
    ctx, plan = context(request), plan_of(request)
    query = filters.query(principal, plan, datetime.fromtimestamp(ctx.clock(), UTC))

    def build() -> bytes:
        rows = list_calls(ctx.engine, limit=MAX_CSV_ROWS, **query)
        out = io.StringIO(newline="")
        write_csv(rows, out, plan.timezone)
        return out.getvalue().encode("utf-8-sig")  # the BOM: how Excel knows it is UTF-8

    body = await run_in_threadpool(build)
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="calls.csv"'})
