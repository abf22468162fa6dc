"""Who is asking, and may they: the FastAPI dependencies every route uses.

A request is authenticated by an API token (``Authorization: Bearer
pbx_...``) or by the session cookie. A session's unsafe requests (POST,
PATCH, DELETE) must also carry its CSRF token, in the ``X-CSRF-Token``
header (htmx and scripts) or a ``csrf_token`` form field (plain forms):
a cookie alone, which another site can make the browser send, changes
nothing. Bearer tokens need no CSRF token: browsers never add them by
themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from pbx.web.context import WebContext
from pbx.web.roles import Permission, Principal, allowed

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cookie_name(ctx: WebContext) -> str:
    # The __Host- prefix makes the browser refuse the cookie unless it is
    # Secure, for the whole site and set by this host itself.
    return "__Host-pbx_session" if ctx.secure_cookies else "pbx_session"


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


def now_utc(ctx: WebContext) -> datetime:
    return datetime.fromtimestamp(ctx.clock(), UTC)


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated principal and, for a session, its CSRF token."""

    principal: Principal
    csrf: str | None


class NotLoggedIn(Exception):
    """No valid session or token: the API answers 401, pages redirect."""


async def identify(request: Request) -> Caller | None:
    ctx = context(request)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        principal = await run_in_threadpool(ctx.store.token_principal, header[7:].strip(), now_utc(ctx))
        return Caller(principal, None) if principal is not None else None
    token = request.cookies.get(cookie_name(ctx))
    if not token:
        return None
    found = await run_in_threadpool(ctx.store.session_principal, token, now_utc(ctx))
    return Caller(*found) if found is not None else None


async def _check_csrf(request: Request, caller: Caller) -> None:
    if request.method in SAFE_METHODS or caller.csrf is None:
        return
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if sent is None or not _same(sent, caller.csrf):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token")


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


async def authenticated(request: Request) -> Caller:
    caller = await identify(request)
    if caller is None:
        raise NotLoggedIn()
    await _check_csrf(request, caller)
    request.state.caller = caller
    return caller


def require(permission: Permission) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the principal, if logged in and allowed ``permission``."""

    async def dependency(request: Request) -> Principal:
        caller = await authenticated(request)
        if not allowed(caller.principal, permission):
            raise HTTPException(status_code=403, detail=f"your role may not {permission.value}")
        return caller.principal

    return dependency


async def audit(request: Request, principal: Principal, action: str, target: str,
                detail: dict[str, object] | None = None) -> None:
    """Record a change in the audit log (never a secret in ``detail``)."""
    ctx = context(request)
    await run_in_threadpool(lambda: ctx.store.audit(actor=principal.actor, action=action, target=target,
                                                    now=now_utc(ctx), detail=dict(detail or {}),
                                                    source=client_address(request)))
