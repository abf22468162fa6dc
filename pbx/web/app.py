"""The ASGI app: the JSON API, the console's pages, metrics and health.

Built by :func:`create_app` from a :class:`~pbx.web.context.WebContext`;
``pbx serve --http`` runs it on the SIP server's own event loop
(:mod:`pbx.web.serve`). Routes that touch the database or the dialplan's
files do it in worker threads; live state is read on the loop, from plain
copies, so no request holds the loop for more than a copy's time.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from pbx import __version__
from pbx.web import pages
from pbx.web.api import ROUTERS
from pbx.web.auth import NotLoggedIn, client_address, context, require
from pbx.web.context import WebContext
from pbx.web.roles import Permission

STATIC = Path(__file__).resolve().parent / "static"

# No inline scripts anywhere, so the policy forbids them: an injected
# <script> in a caller's display name would not run even if escaping failed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/api/") or request.url.path == "/metrics":
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The OpenAPI document's operations, in path order, as the reference
    page lists them: method, path, summary, description, parameters."""
    found = []
    for path, item in document.get("paths", {}).items():
        for method in HTTP_METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            found.append({"method": method.upper(), "path": path, "summary": operation.get("summary", ""),
                          "description": operation.get("description", ""), "tags": operation.get("tags", []),
                          "parameters": [(p["name"], p["in"], p.get("required", False),
                                          p.get("description", "")) for p in operation.get("parameters", [])],
                          "body": "requestBody" in operation})
    return found


def create_app(ctx: WebContext) -> FastAPI:
    # FastAPI's own /docs page loads Swagger UI from a CDN with an inline
    # script: the policy above blocks both, and an office LAN may have no
    # Internet. /api/docs is drawn here instead, from the same document.
    app = FastAPI(title="PBX", version=__version__, openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
    app.state.ctx = ctx
    app.add_middleware(SecurityHeaders)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, exc: NotLoggedIn) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/metrics":
            return JSONResponse({"detail": "log in first (session cookie or Bearer token)"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api/") or request.url.path in ("/metrics", "/readyz"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        caller = getattr(request.state, "caller", None)
        message = pages.forbidden_text(request) if exc.status_code == 403 else str(exc.detail)
        return pages.render_error(request, caller, exc.status_code, message)

    @app.get("/api/docs", include_in_schema=False, response_class=HTMLResponse)
    async def api_docs(request: Request) -> HTMLResponse:
        return pages.templates.TemplateResponse(request, "api_docs.html", {"operations": operations(app.openapi()),
                                                                           "version": __version__})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        ctx = context(request)
        sockets = ctx.live.sockets_bound() if ctx.live is not None else False

        def database() -> bool:
            try:
                with ctx.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return True
            except Exception:
                return False

        reachable = await run_in_threadpool(database)
        ready = sockets and reachable
        return JSONResponse({"ready": ready, "database": reachable, "sip_sockets": sockets},
                            status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        ctx = context(request)
        # The numbers tell an outsider how busy the PBX is and when its
        # lock-outs fire: an admin's session or token by default; a local
        # scraper only when the server was started to allow it.
        if not (ctx.metrics_open_on_loopback and _loopback(client_address(request))):
            await require(Permission.METRICS_READ)(request)
        exposition = ctx.metrics_text
        if exposition is None:
            return PlainTextResponse("metrics are off\n", status_code=404)
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    return app
