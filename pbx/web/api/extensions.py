"""``/api/extensions``: list, show, create (the SIP password shown once),
change, a new SIP password, suspend, resume and retire (as ``pbx ext``),
and forwarding with do not disturb (as ``pbx ext forward``).

Changes are written to the dialplan's files the way ``pbx group`` writes
members files (:mod:`pbx.routing.extensions_file`: atomic, validated, put
back if invalid), then the running server reloads at once. The files keep
digest HA1 values only; the password itself exists in the one response.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pbx.calls.features import Settings
from pbx.routing.dialplan import FORWARD_KINDS, FORWARD_TARGET, Extension
from pbx.routing.feature_codes import ForwardKind
from pbx.routing.rights import forward_refusal
from pbx.store.features import FeatureStore, set_features
from pbx.routing.extensions_file import ExtensionEdit, ExtensionEditError, edit_extensions
from pbx.web.api.common import bad_request, plan_of, scope
from pbx.web.auth import audit, context, now_utc, require
from pbx.web.credentials import ha1_values, new_password
from pbx.web.roles import Permission, Principal, may_forward, may_write_department

router = APIRouter(prefix="/api/extensions", tags=["extensions"])

NUMBER = r"^[0-9]{2,8}$"
NAME = r"^[^\x00-\x1f\x7f]+$"
"""A name is shown on phones in a SIP header: no control characters (line breaks)."""


class NewExtension(BaseModel):
    number: str = Field(pattern=NUMBER)
    name: str = Field(min_length=1, max_length=100, pattern=NAME)
    department: str = Field(min_length=1, max_length=32)
    email: str | None = Field(default=None, max_length=254)
    mobile: str | None = Field(default=None, max_length=21)


class ExtensionChange(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100, pattern=NAME)
    department: str | None = Field(default=None, min_length=1, max_length=32)
    email: str | None = Field(default=None, max_length=254)
    mobile: str | None = Field(default=None, max_length=21)


class ForwardingChange(BaseModel):
    """Forwards to set: a number turns one on, null turns it off, a key
    left out keeps it as it is."""

    always: str | None = Field(default=None, pattern=FORWARD_TARGET.pattern)
    busy: str | None = Field(default=None, pattern=FORWARD_TARGET.pattern)
    no_answer: str | None = Field(default=None, pattern=FORWARD_TARGET.pattern)
    unreachable: str | None = Field(default=None, pattern=FORWARD_TARGET.pattern)
    dnd: bool | None = None


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


def _writable(request: Request, principal: Principal, number: str) -> Extension:
    extension = _visible(request, principal, number)
    if not may_write_department(principal, extension.department):
        raise HTTPException(status_code=403, detail=f"you may not change extensions of {extension.department}")
    return extension


Lifecycle = Literal["suspend", "resume", "retire"]
_STATUS: dict[str, str | None] = {"suspend": "suspended", "resume": None, "retire": "retired"}


async def _lifecycle(request: Request, principal: Principal, number: str, action: Lifecycle) -> dict[str, Any]:
    # The status key goes into the file that defines the extension; the
    # reload drops a suspended or retired extension's registrations at once.
    extension = _writable(request, principal, number)
    await _edit(request, ExtensionEdit(number=number, values={"status": _STATUS[action]}))
    await audit(request, principal, f"extension.{action}", number)
    return view(plan_of(request).extensions.get(number) or extension)


@router.post("/{number}/suspend")
async def suspend_extension(number: str, request: Request,
                            principal: Principal = Depends(require(Permission.EXTENSIONS_WRITE))) -> dict[str, Any]:
    """Stop it registering and calling for now (calls to it: 480)."""
    return await _lifecycle(request, principal, number, "suspend")


@router.post("/{number}/resume")
async def resume_extension(number: str, request: Request,
                           principal: Principal = Depends(require(Permission.EXTENSIONS_WRITE))) -> dict[str, Any]:
    """Make a suspended or retired extension active again."""
    return await _lifecycle(request, principal, number, "resume")


@router.post("/{number}/retire")
async def retire_extension(number: str, request: Request,
                           principal: Principal = Depends(require(Permission.EXTENSIONS_WRITE))) -> dict[str, Any]:
    """Take it out of use for good (calls to it: 404); its CDRs stay."""
    return await _lifecycle(request, principal, number, "retire")


def _forwarding_view(number: str, settings: Settings) -> dict[str, Any]:
    return {"number": number, "dnd": settings.dnd,
            **{kind: getattr(settings.forward, kind) for kind in FORWARD_KINDS}}


@router.get("/{number}/forwarding")
async def show_forwarding(number: str, request: Request,
                          principal: Principal = Depends(require(Permission.EXTENSIONS_READ))) -> dict[str, Any]:
    extension = _visible(request, principal, number)
    found = await run_in_threadpool(FeatureStore(context(request).engine).get, number)
    settings = Settings(dnd=extension.dnd, forward=extension.forward) if found is None else Settings(
        dnd=found.dnd, forward=found.forward)
    return _forwarding_view(number, settings)


@router.put("/{number}/forwarding")
async def set_forwarding(number: str, change: ForwardingChange, request: Request,
                         principal: Principal = Depends(require(Permission.FORWARDING_WRITE))) -> dict[str, Any]:
    """Set forwards and do not disturb; running servers take it up within
    about 5 s (they read the store), as for ``pbx ext forward``."""
    extension = _visible(request, principal, number)
    if not may_forward(principal, number, extension.department):
        raise HTTPException(status_code=403, detail=f"you may not set {number}'s forwarding")
    given = change.model_dump(exclude_unset=True)
    forwards: dict[ForwardKind, str | None] = {}
    for kind in ("always", "busy", "no_answer", "unreachable"):
        if kind in given:
            target = given[kind]
            if target is not None and (refusal := forward_refusal(plan_of(request), extension, target,
                                                                   now_utc(context(request)))) is not None:
                raise bad_request(refusal)
            forwards[kind] = target
    dnd = given.get("dnd")
    settings = await run_in_threadpool(set_features, context(request).engine, extension, forwards, dnd,
                                     context(request).clock())
    await audit(request, principal, "extension.forwarding", number, {k: v for k, v in given.items()})
    return _forwarding_view(number, settings)
