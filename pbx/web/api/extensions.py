"""``/api/extensions``: list, show, create (the SIP password shown once),
change, and a new SIP password.

Changes are written to the dialplan's files the way ``pbx group`` writes
members files (:mod:`pbx.routing.extensions_file`: atomic, validated, put
back if invalid), then the running server reloads at once. The files keep
digest HA1 values only; the password itself exists in the one response.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pbx.routing.dialplan import Extension
from pbx.routing.extensions_file import ExtensionEdit, ExtensionEditError, edit_extensions
from pbx.web.api.common import bad_request, plan_of, scope
from pbx.web.auth import audit, context, require
from pbx.web.credentials import ha1_values, new_password
from pbx.web.roles import Permission, Principal, may_write_department

router = APIRouter(prefix="/api/extensions", tags=["extensions"])

NUMBER = r"^[0-9]{2,8}$"


class NewExtension(BaseModel):
    number: str = Field(pattern=NUMBER)
    name: str = Field(min_length=1, max_length=100)
    department: str = Field(min_length=1, max_length=32)
    email: str | None = Field(default=None, max_length=254)
    mobile: str | None = Field(default=None, max_length=21)


class ExtensionChange(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    department: str | None = Field(default=None, min_length=1, max_length=32)
    email: str | None = Field(default=None, max_length=254)
    mobile: str | None = Field(default=None, max_length=21)


def view(extension: Extension) -> dict[str, Any]:
    return {"number": extension.number, "name": extension.name, "department": extension.department,
            "email": extension.email, "mobile": extension.mobile, "directory": extension.ldap_dn is not None,
            "status": getattr(extension, "status", "active")}


def _visible(request: Request, principal: Principal, number: str) -> Extension:
    plan = plan_of(request)
    extension = plan.extensions.get(number)
    if extension is None:
        raise HTTPException(status_code=404, detail=f"no extension {number}")
    if not scope(principal, plan).covers_extension(number, extension.department):
        raise HTTPException(status_code=403, detail=f"extension {number} is outside what you may see")
    return extension


async def _edit(request: Request, edit: ExtensionEdit) -> None:
    ctx = context(request)
    try:
        await run_in_threadpool(edit_extensions, ctx.dialplan_path, [edit])
    except ExtensionEditError as err:
        raise bad_request(str(err), err.problems) from None
    await ctx.reload("api")


@router.get("")
async def list_extensions(request: Request,
                          principal: Principal = Depends(require(Permission.EXTENSIONS_READ))) -> list[dict[str, Any]]:
    plan = plan_of(request)
    seen = scope(principal, plan)
    return [view(e) for n, e in plan.extensions.items() if seen.covers_extension(n, e.department)]


@router.get("/{number}")
async def show_extension(number: str, request: Request,
                         principal: Principal = Depends(require(Permission.EXTENSIONS_READ))) -> dict[str, Any]:
    return view(_visible(request, principal, number))


@router.post("", status_code=201)
async def create_extension(new: NewExtension, request: Request,
                           principal: Principal = Depends(require(Permission.EXTENSIONS_WRITE))) -> dict[str, Any]:
    plan = plan_of(request)
    if new.department not in plan.departments:
        raise bad_request(f"no department {new.department!r}")
    if not may_write_department(principal, new.department):
        raise HTTPException(status_code=403, detail=f"you may not add extensions to {new.department}")
    password = new_password()
    md5, sha256 = ha1_values(new.number, plan.domain, password)
    values: dict[str, object | None] = {"name": new.name, "department": new.department, "email": new.email,
                                        "mobile": new.mobile, "ha1_md5": md5, "ha1_sha256": sha256}
    await _edit(request, ExtensionEdit(number=new.number, create=True,
                                       values={k: v for k, v in values.items() if v is not None}))
    await audit(request, principal, "extension.create", new.number,
                {"name": new.name, "department": new.department})
    return {"number": new.number, "name": new.name, "department": new.department, "sip_password": password,
            "domain": plan.domain}


@router.patch("/{number}")
async def change_extension(number: str, change: ExtensionChange, request: Request,
                           principal: Principal = Depends(require(Permission.EXTENSIONS_WRITE))) -> dict[str, Any]:
    extension = _visible(request, principal, number)
    values = change.model_dump(exclude_unset=True)
    for department in {extension.department, values.get("department") or extension.department}:
        if not may_write_department(principal, department):
            raise HTTPException(status_code=403, detail=f"you may not change extensions of {department}")
    await _edit(request, ExtensionEdit(number=number, values=values))
    await audit(request, principal, "extension.change", number, values)
    return view(plan_of(request).extensions.get(number) or extension)


@router.post("/{number}/password")
async def new_sip_password(number: str, request: Request,
                           principal: Principal = Depends(require(Permission.EXTENSIONS_WRITE))) -> dict[str, Any]:
    extension = _visible(request, principal, number)
    if not may_write_department(principal, extension.department):
        raise HTTPException(status_code=403, detail=f"you may not change extensions of {extension.department}")
    plan = plan_of(request)
    password = new_password()
    md5, sha256 = ha1_values(number, plan.domain, password)
    await _edit(request, ExtensionEdit(number=number, values={"password": None, "ha1_md5": md5,
                                                              "ha1_sha256": sha256}))
    await audit(request, principal, "extension.password", number)
    return {"number": number, "sip_password": password, "domain": plan.domain}
