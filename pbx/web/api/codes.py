"""``/api/codes``: account codes, as ``pbx codes`` manages them.

The digits of a new or rotated code are in that one response and nowhere
else: the store keeps a keyed hash (:mod:`pbx.store.codes`), lists show the
owner, department, rights, state and refused uses, and the audit log names
the code by its id and owner. Changes hold from the next call on, on every
node, without a reload (the server looks codes up for each call).

Admins manage every code; a branch admin the codes of their departments,
and only with a class of service their departments already carry (one of
their departments' or extensions'), so a branch admin cannot mint rights
the branch does not have: a code is a portable set of dialling rights.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pbx.accountcodes.codes import StoredCode, WeakCode, unusable_because
from pbx.cli.cdr import TimeFormatError, parse_time
from pbx.routing.dialplan import Dialplan
from pbx.store.codes import CodeInUse, CodeStore, NoSuchCode, new_digits
from pbx.web.api.common import bad_request, plan_of
from pbx.web.auth import audit, context, now_utc, require
from pbx.web.roles import Permission, Principal, may_manage_code

router = APIRouter(prefix="/api/codes", tags=["account codes"])
CODES = require(Permission.CODES_ADMIN)
_RNG = random.SystemRandom()


class NewCode(BaseModel):
    owner: str = Field(min_length=1, max_length=255)
    class_of_service: str = Field(min_length=1, max_length=64)
    department: str | None = Field(default=None, max_length=64)
    employee_id: str | None = Field(default=None, max_length=64)
    code: str | None = Field(default=None, pattern=r"^[0-9]{4,12}$",
                             description="digits to use; default: generated ones of the plan's length")
    valid_from: str | None = Field(default=None, max_length=40, description="ISO date/time (office time zone)")
    valid_until: str | None = Field(default=None, max_length=40, description="a date: the code works all that day")


class Rotation(BaseModel):
    code: str | None = Field(default=None, pattern=r"^[0-9]{4,12}$")


def _store(request: Request) -> CodeStore:
    store = context(request).codes
    if store is None:
        raise HTTPException(status_code=503, detail="account codes are not available on this server")
    return store


def view(code: StoredCode, plan: Dialplan, now: datetime) -> dict[str, Any]:
    """What a list shows of a code: never its digits or hash."""
    def local(moment: datetime | None) -> str | None:
        return None if moment is None else moment.astimezone(plan.timezone).isoformat(timespec="minutes")

    why = unusable_because(code, now)
    return {"id": code.id, "owner": code.owner, "employee_id": code.employee_id, "department": code.department,
            "class_of_service": code.class_of_service, "status": code.status,
            "usable": why is None, "why_not": why, "flagged": code.flagged_at is not None,
            "refused_uses": code.failed_attempts, "valid_from": local(code.valid_from),
            "valid_until": local(code.valid_until)}


def _branch_classes(principal: Principal, plan: Dialplan) -> set[str]:
    """Classes of service the branch admin's departments already carry."""
    classes = {d.class_of_service for k, d in plan.departments.items() if k in principal.departments}
    classes |= {e.class_of_service for e in plan.extensions.values() if e.department in principal.departments}
    return {c for c in classes if c is not None}


def _when(text: str | None, plan: Dialplan, now: datetime, *, end_of_day: bool) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text, now, plan.timezone, end_of_day=end_of_day)
    except TimeFormatError as err:
        raise bad_request(str(err)) from None


async def _managed(request: Request, principal: Principal, code_id: int) -> StoredCode:
    found = await run_in_threadpool(_store(request).find, str(code_id))
    if not found:
        raise HTTPException(status_code=404, detail=f"no code #{code_id}")
    if not may_manage_code(principal, found[0].department):
        raise HTTPException(status_code=403, detail=f"code #{code_id} is outside what you may manage")
    return found[0]


@router.get("")
async def list_codes(request: Request, principal: Principal = Depends(CODES)) -> list[dict[str, Any]]:
    plan, now = plan_of(request), now_utc(context(request))
    found = await run_in_threadpool(_store(request).all)
    return [view(c, plan, now) for c in found if may_manage_code(principal, c.department)]


@router.post("", status_code=201)
async def create_code(new: NewCode, request: Request, principal: Principal = Depends(CODES)) -> dict[str, Any]:
    ctx, plan = context(request), plan_of(request)
    now = now_utc(ctx)
    if new.class_of_service not in plan.classes_of_service:
        raise bad_request(f"no class of service {new.class_of_service!r}")
    if new.department is not None and new.department not in plan.departments:
        raise bad_request(f"no department {new.department!r}")
    if not may_manage_code(principal, new.department):
        raise HTTPException(status_code=403, detail="you may make codes of your departments only")
    if principal.role != "admin" and new.class_of_service not in _branch_classes(principal, plan):
        raise HTTPException(status_code=403,
                            detail=f"your departments do not carry class of service {new.class_of_service!r}")
    start = _when(new.valid_from, plan, now, end_of_day=False)
    end = _when(new.valid_until, plan, now, end_of_day=True)
    if start is not None and end is not None and end <= start:
        raise bad_request("valid_until must be later than valid_from")
    store = _store(request)

    def add() -> tuple[StoredCode, str]:
        digits = new_digits(store, plan.account_codes.length, _RNG, new.code)
        return store.add(digits, owner=new.owner, class_of_service=new.class_of_service, now=now,
                         employee_id=new.employee_id, department=new.department, valid_from=start,
                         valid_until=end), digits

    try:
        code, digits = await run_in_threadpool(add)
    except (WeakCode, CodeInUse) as err:
        raise bad_request(str(err)) from None
    await audit(request, principal, "code.create", code.label,
                {"class_of_service": code.class_of_service, "department": code.department})
    return {**view(code, plan, now), "code": digits, "shown_once": True}


async def _set_status(request: Request, principal: Principal, code_id: int, status: str) -> dict[str, Any]:
    code = await _managed(request, principal, code_id)
    now = now_utc(context(request))
    await run_in_threadpool(_store(request).set_status, code_id, "active" if status == "active" else "disabled", now)
    await audit(request, principal, "code.enable" if status == "active" else "code.disable", code.label)
    changed = (await run_in_threadpool(_store(request).find, str(code_id)))[0]
    return view(changed, plan_of(request), now)


@router.post("/{code_id}/disable")
async def disable_code(code_id: int, request: Request, principal: Principal = Depends(CODES)) -> dict[str, Any]:
    return await _set_status(request, principal, code_id, "disabled")


@router.post("/{code_id}/enable")
async def enable_code(code_id: int, request: Request, principal: Principal = Depends(CODES)) -> dict[str, Any]:
    return await _set_status(request, principal, code_id, "active")


@router.post("/{code_id}/rotate")
async def rotate_code(code_id: int, request: Request, rotation: Rotation | None = None,
                      principal: Principal = Depends(CODES)) -> dict[str, Any]:
    code = await _managed(request, principal, code_id)
    plan, now = plan_of(request), now_utc(context(request))
    store = _store(request)

    def rotate() -> str:
        digits = new_digits(store, plan.account_codes.length, _RNG, rotation.code if rotation else None)
        store.rotate(code_id, digits, now)
        return digits

    try:
        digits = await run_in_threadpool(rotate)
    except (WeakCode, CodeInUse) as err:
        raise bad_request(str(err)) from None
    await audit(request, principal, "code.rotate", code.label)
    return {**view(code, plan, now), "code": digits, "shown_once": True}


@router.delete("/{code_id}")
async def remove_code(code_id: int, request: Request, principal: Principal = Depends(CODES)) -> dict[str, Any]:
    code = await _managed(request, principal, code_id)
    try:
        await run_in_threadpool(_store(request).remove, code_id)
    except NoSuchCode:
        raise HTTPException(status_code=404, detail=f"no code #{code_id}") from None
    await audit(request, principal, "code.remove", code.label)
    return {"id": code_id, "removed": True}
