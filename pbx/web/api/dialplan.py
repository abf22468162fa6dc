"""``/api/dialplan``: check the files as ``pbx check`` does, and reload
them into the running server."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from pbx.routing.loader import read_dialplan
from pbx.web.auth import audit, context, require
from pbx.web.roles import Permission, Principal

router = APIRouter(prefix="/api/dialplan", tags=["dialplan"])


@router.post("/check")
async def check(request: Request, principal: Principal = Depends(require(Permission.DIALPLAN_ADMIN))
                ) -> dict[str, Any]:
    result = await run_in_threadpool(read_dialplan, context(request).dialplan_path)
    return {"ok": result.dialplan is not None, "errors": [str(p) for p in result.errors],
            "warnings": [str(p) for p in result.warnings]}


@router.post("/reload")
async def reload(request: Request, principal: Principal = Depends(require(Permission.DIALPLAN_ADMIN))
                 ) -> dict[str, Any]:
    ctx = context(request)
    result = await run_in_threadpool(read_dialplan, ctx.dialplan_path)
    applied = result.dialplan is not None and await ctx.reload("api")
    # A valid file the server did not apply is the plan it already runs.
    unchanged = result.dialplan is not None and not applied
    await audit(request, principal, "dialplan.reload", str(ctx.dialplan_path), {"applied": applied})
    return {"applied": applied, "unchanged": unchanged, "errors": [str(p) for p in result.errors]}


@router.post("/ldap-sync")
async def ldap_sync(request: Request, dry_run: bool = True,
                    principal: Principal = Depends(require(Permission.DIALPLAN_ADMIN))) -> dict[str, Any]:
    """Sync employees from the directory now; new extensions' SIP passwords
    are in this answer only."""
    from pbx.ldap.run import ACTOR, SyncError, sync_directory
    from pbx.ldap.sync import describe

    ctx = context(request)
    try:
        result = await run_in_threadpool(lambda: sync_directory(ctx.dialplan_path, dry_run=dry_run, engine=ctx.engine,
                                                                actor=f"{ACTOR} ({principal.actor})"))
    except SyncError as err:
        raise HTTPException(status_code=502, detail={"message": str(err),
                                                     "problems": [str(p) for p in err.problems]}) from None
    applied = result.applied
    if applied is not None:
        await ctx.reload("ldap")
    return {"dry_run": dry_run, "changes": [describe(c) for c in result.planned.changes],
            "skipped": [f"{s.dn}: {s.reason}" for s in result.planned.skipped],
            "not_applied": [describe(c) for c in applied.not_applied] if applied else [],
            "passwords": [{"number": n, "sip_password": p} for n, p in applied.passwords] if applied else []}


@router.post("/ldap-sync/passwords")
async def collect_sync_passwords(request: Request, principal: Principal = Depends(require(Permission.DIALPLAN_ADMIN))
                                 ) -> dict[str, Any]:
    """The SIP passwords of extensions the server's periodic sync created
    since the last collection: in this answer only, then forgotten."""
    taken = context(request).pending_passwords.take(time.monotonic())
    if taken:
        await audit(request, principal, "ldap.passwords_collected", ",".join(n for n, _ in taken)[:255])
    return {"passwords": [{"number": n, "sip_password": p} for n, p in taken]}
