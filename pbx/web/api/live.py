"""``/api/live``: registrations (with the device's user agent), calls in
progress with their legs, and the security lock-out's blocks. Read on the
event loop, where that state lives, and cheap: plain copies of it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from pbx.web.api.common import plan_of, scope
from pbx.web.auth import context, require
from pbx.web.context import CallView, LiveSource
from pbx.web.roles import Permission, Principal, Scope

router = APIRouter(prefix="/api/live", tags=["live state"])


def _live(request: Request) -> LiveSource:
    live = context(request).live
    if live is None:
        raise HTTPException(status_code=503, detail="no SIP server runs in this process")
    return live


def call_in_scope(call: CallView, seen: Scope, departments: dict[str, str]) -> bool:
    numbers = {call.caller, call.dialled, call.destination, *(leg.target for leg in call.legs)}
    return seen.covers_extension(call.caller, call.caller_department) or any(
        n is not None and seen.covers_extension(n, departments.get(n)) for n in numbers)


@router.get("/registrations")
async def registrations(request: Request, principal: Principal = Depends(require(Permission.LIVE_READ))
                        ) -> list[dict[str, Any]]:
    plan = plan_of(request)
    seen = scope(principal, plan)
    return [asdict(r) for r in _live(request).registrations()
            if seen.covers_extension(r.extension, e.department if (e := plan.extensions.get(r.extension)) else None)]


@router.get("/calls")
async def calls(request: Request, principal: Principal = Depends(require(Permission.LIVE_READ))
                ) -> list[dict[str, Any]]:
    plan = plan_of(request)
    seen = scope(principal, plan)
    departments = {n: e.department for n, e in plan.extensions.items()}
    return [asdict(c) for c in _live(request).calls() if call_in_scope(c, seen, departments)]


@router.get("/blocks")
async def blocks(request: Request, principal: Principal = Depends(require(Permission.SECURITY_READ))
                 ) -> list[dict[str, Any]]:
    return [asdict(b) for b in _live(request).blocks()]
