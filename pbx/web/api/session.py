"""Logging in and out (``/api/login``, ``/api/logout``) and ``/api/me``.

The browser pages log in through the same :func:`log_in`."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pbx.web.auth import Caller, audit, authenticated, client_address, context, cookie_name, now_utc
from pbx.web.credentials import MIN_PASSWORD_LENGTH
from pbx.web.roles import Principal
from pbx.web.store import SESSION_LIFETIME

router = APIRouter(prefix="/api", tags=["session"])


class Credentials(BaseModel):
    username: str = Field(max_length=256)
    password: str = Field(max_length=256)  # a megabyte "password" is not hashed


@dataclass(frozen=True, slots=True)
class LoggedIn:
    principal: Principal
    token: str
    csrf: str


class LoginRefused(Exception):
    def __init__(self, status: int, key: str) -> None:
        super().__init__(key)
        self.status, self.key = status, key


async def _checked(request: Request, username: str, password: str) -> Principal:
    """``username``'s principal if ``password`` is theirs, counted by the
    brute-force lock-out (a wrong password is a failure wherever it is tried)."""
    ctx = context(request)
    source, now = client_address(request), ctx.clock()
    if ctx.lockout.blocked(source, username, now) is not None and not ctx.lockout.may_check(source, username, now):
        raise LoginRefused(429, "login_blocked")
    principal = await run_in_threadpool(ctx.store.check_password, username, password)
    if principal is None:
        failure = ctx.lockout.failure(source, username, now)
        blocked = bool(failure.blocks) or ctx.lockout.blocked(source, username, now) is not None
        raise LoginRefused(429 if blocked else 401, "login_blocked" if blocked else "login_failed")
    return principal


async def log_in(request: Request, username: str, password: str) -> LoggedIn:
    """Check the password with the brute-force lock-out; a new session."""
    ctx = context(request)
    principal = await _checked(request, username.strip()[:64], password)
    token, csrf = await run_in_threadpool(ctx.store.open_session, principal, now_utc(ctx))
    return LoggedIn(principal, token, csrf)


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    ctx = context(request)
    response.set_cookie(cookie_name(ctx), token, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
                        secure=ctx.secure_cookies, httponly=True, samesite="strict")


@router.post("/login")
async def login(credentials: Credentials, request: Request, response: Response) -> dict[str, object]:
    try:
        done = await log_in(request, credentials.username, credentials.password)
    except LoginRefused as refused:
        raise HTTPException(status_code=refused.status, detail=refused.key) from None
    set_session_cookie(request, response, done.token)
    return {"username": done.principal.username, "role": done.principal.role, "csrf_token": done.csrf}


@router.post("/logout")
async def logout(request: Request, response: Response, caller: Caller = Depends(authenticated)) -> dict[str, bool]:
    ctx = context(request)
    token = request.cookies.get(cookie_name(ctx))
    if token:
        await run_in_threadpool(ctx.store.close_session, token)
    response.delete_cookie(cookie_name(ctx), path="/", secure=ctx.secure_cookies, httponly=True, samesite="strict")
    return {"logged_out": True}


class PasswordChange(BaseModel):
    current: str = Field(max_length=256)
    new: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=256)


async def replace_password(request: Request, principal: Principal, current: str, new: str) -> LoggedIn:
    """Replace ``principal``'s own password, the current one checked under
    the log-in lock-out; every session of theirs ends and a new one opens
    for the asking browser. Refused with :class:`LoginRefused`: 403
    ``password_wrong``, 422 ``password_weak``, 429 ``login_blocked``."""
    if principal.token is not None:
        raise LoginRefused(403, "password_by_token")
    if new == current or len(new) < MIN_PASSWORD_LENGTH:
        raise LoginRefused(422, "password_weak")
    try:
        await _checked(request, principal.username, current)
    except LoginRefused as refused:
        # 403, not 401: the session is fine, the current password is not.
        raise LoginRefused(429, "login_blocked") if refused.status == 429 else LoginRefused(
            403, "password_wrong") from None
    ctx = context(request)
    await run_in_threadpool(ctx.store.set_password, principal.user_id, new)
    token, csrf = await run_in_threadpool(ctx.store.open_session, principal, now_utc(ctx))
    await audit(request, principal, "user.password", principal.username)
    return LoggedIn(principal, token, csrf)


@router.post("/me/password")
async def change_own_password(change: PasswordChange, request: Request, response: Response,
                              caller: Caller = Depends(authenticated)) -> dict[str, object]:
    """Replace your own password (the admin's printed one-time password
    first of all). Every session of yours ends; this answer carries a new
    one for the browser that asked."""
    try:
        done = await replace_password(request, caller.principal, change.current, change.new)
    except LoginRefused as refused:
        raise HTTPException(status_code=refused.status, detail=refused.key) from None
    set_session_cookie(request, response, done.token)
    return {"changed": True, "csrf_token": done.csrf}


@router.get("/me")
async def me(caller: Caller = Depends(authenticated)) -> dict[str, object]:
    p = caller.principal
    return {"username": p.username, "role": p.role, "departments": sorted(p.departments),
            "extension": p.extension, "token": p.token, "csrf_token": caller.csrf}
