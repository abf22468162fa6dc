"""Admin only: console users (made, changed, disabled, their password
reset), API tokens, webhooks and the audit log.

A token and a webhook's signing secret are shown once, when made; lists
show their names and owners, never the secrets."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pbx.web.auth import audit, context, now_utc, require
from pbx.web.credentials import MIN_PASSWORD_LENGTH, new_password
from pbx.web.roles import Permission, Principal
from pbx.web.store import NoSuchUser, StoreError

router = APIRouter(prefix="/api", tags=["administration"])
ADMIN = require(Permission.USERS_ADMIN)


class NewUser(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9._@-]{2,64}$")
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=256)
    role: Literal["admin", "branch_admin", "manager", "employee"]
    departments: list[str] = []
    extension: str | None = Field(default=None, pattern=r"^[0-9]{2,8}$")
    language: Literal["en", "vi", "zh"] | None = None


class UserChange(BaseModel):
    """What to change; a key left out stays as it is."""

    role: Literal["admin", "branch_admin", "manager", "employee"] | None = None
    departments: list[str] | None = None
    extension: str | None = Field(default=None, pattern=r"^[0-9]{2,8}$")
    language: Literal["en", "vi", "zh"] | None = None
    disabled: bool | None = None
    """True: the user can no longer log in, their sessions end and their
    API tokens stop working; False: they may log in again."""


class NewToken(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    username: str | None = None
    """The user the token acts as; default: whoever makes it."""


class NewWebhook(BaseModel):
    url: str = Field(pattern=r"^https?://\S+$", max_length=2048)


@router.get("/users")
async def list_users(request: Request, principal: Principal = Depends(ADMIN)) -> list[dict[str, Any]]:
    return [asdict(u) for u in await run_in_threadpool(context(request).store.users)]


@router.post("/users", status_code=201)
async def create_user(new: NewUser, request: Request, principal: Principal = Depends(ADMIN)) -> dict[str, Any]:
    ctx = context(request)
    unknown = [d for d in new.departments if d not in ctx.plan().departments]
    if unknown:
        raise HTTPException(status_code=422, detail=f"no department {unknown[0]!r}")
    try:
        user = await run_in_threadpool(lambda: ctx.store.create_user(
            username=new.username, password=new.password, role=new.role, now=now_utc(ctx),
            departments=tuple(new.departments), extension=new.extension, language=new.language))
    except StoreError as err:
        raise HTTPException(status_code=422, detail=str(err)) from None
    await audit(request, principal, "user.create", new.username,
                {"role": new.role, "departments": new.departments, "extension": new.extension})
    return asdict(user)


@router.patch("/users/{username}")
async def change_user(username: str, change: UserChange, request: Request,
                      principal: Principal = Depends(ADMIN)) -> dict[str, Any]:
    ctx = context(request)
    values = change.model_dump(exclude_unset=True)
    for key in ("role", "departments", "disabled"):
        if key in values and values[key] is None:
            raise HTTPException(status_code=422, detail=f"{key} cannot be null")
    # An admin cannot lock themselves out; another admin can.
    if username == principal.username and (values.get("disabled") or values.get("role", "admin") != "admin"):
        raise HTTPException(status_code=422, detail="you cannot disable yourself or give up your own admin role")
    unknown = [d for d in values.get("departments") or () if d not in ctx.plan().departments]
    if unknown:
        raise HTTPException(status_code=422, detail=f"no department {unknown[0]!r}")
    try:
        user = await run_in_threadpool(ctx.store.update_user, username, values)
    except NoSuchUser as err:
        raise HTTPException(status_code=404, detail=str(err)) from None
    except StoreError as err:
        raise HTTPException(status_code=422, detail=str(err)) from None
    await audit(request, principal, "user.change", username, values)
    return asdict(user)


@router.post("/users/{username}/password")
async def reset_password(username: str, request: Request, principal: Principal = Depends(ADMIN)) -> dict[str, Any]:
    """A new random password for ``username``, in this answer only; their
    sessions end. For a user who forgot theirs (they change it after)."""
    ctx = context(request)
    user = await run_in_threadpool(ctx.store.find_user, username)
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {username!r}")
    password = new_password()
    await run_in_threadpool(ctx.store.set_password, user.id, password)
    await audit(request, principal, "user.password_reset", username)
    return {"username": username, "password": password, "shown_once": True}


@router.get("/tokens")
async def list_tokens(request: Request, principal: Principal = Depends(ADMIN)) -> list[dict[str, Any]]:
    return await run_in_threadpool(context(request).store.tokens)


@router.post("/tokens", status_code=201)
async def create_token(new: NewToken, request: Request, principal: Principal = Depends(ADMIN)) -> dict[str, Any]:
    ctx = context(request)
    user_id = principal.user_id
    if new.username is not None:
        users = {u.username: u.id for u in await run_in_threadpool(ctx.store.users)}
        if new.username not in users:
            raise HTTPException(status_code=422, detail=f"no user {new.username!r}")
        user_id = users[new.username]
    token_id, token = await run_in_threadpool(ctx.store.create_token, user_id, new.name, now_utc(ctx))
    await audit(request, principal, "token.create", new.name, {"id": token_id, "user": new.username})
    return {"id": token_id, "name": new.name, "token": token}


@router.delete("/tokens/{token_id}")
async def revoke_token(token_id: int, request: Request, principal: Principal = Depends(ADMIN)) -> dict[str, Any]:
    ctx = context(request)
    if not await run_in_threadpool(ctx.store.revoke_token, token_id, now_utc(ctx)):
        raise HTTPException(status_code=404, detail=f"no live token {token_id}")
    await audit(request, principal, "token.revoke", str(token_id))
    return {"id": token_id, "revoked": True}


@router.get("/webhooks")
async def list_webhooks(request: Request, principal: Principal = Depends(ADMIN)) -> list[dict[str, Any]]:
    return [{"id": i, "url": url, "active": active}
            for i, url, _, active in await run_in_threadpool(context(request).store.webhooks)]


@router.post("/webhooks", status_code=201)
async def add_webhook(new: NewWebhook, request: Request, principal: Principal = Depends(ADMIN)) -> dict[str, Any]:
    ctx = context(request)
    hook_id, secret = await run_in_threadpool(ctx.store.add_webhook, new.url, now_utc(ctx))
    await audit(request, principal, "webhook.add", new.url, {"id": hook_id})
    return {"id": hook_id, "url": new.url, "secret": secret}


@router.delete("/webhooks/{hook_id}")
async def remove_webhook(hook_id: int, request: Request, principal: Principal = Depends(ADMIN)) -> dict[str, Any]:
    ctx = context(request)
    if not await run_in_threadpool(ctx.store.remove_webhook, hook_id):
        raise HTTPException(status_code=404, detail=f"no webhook {hook_id}")
    await audit(request, principal, "webhook.remove", str(hook_id))
    return {"id": hook_id, "removed": True}


@router.get("/audit")
async def audit_log(request: Request, principal: Principal = Depends(ADMIN)) -> list[dict[str, Any]]:
    return await run_in_threadpool(context(request).store.audit_entries)
