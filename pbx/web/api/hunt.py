"""``/api/hunt-groups``: hunt groups, their members' agent state, and
logging an agent in or out (the store, as ``pbx hunt`` and ``*45``/``*46``
write it; running servers take it up within a sweep)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from pbx.calls.hunt_state import HuntState
from pbx.store.hunt import HuntStore, set_agent_login
from pbx.web.api.common import plan_of, scope
from pbx.web.auth import audit, context, require
from pbx.web.roles import Permission, Principal

router = APIRouter(prefix="/api/hunt-groups", tags=["hunt groups"])


class AgentState(BaseModel):
    logged_in: bool


@router.get("")
async def list_hunt_groups(request: Request, principal: Principal = Depends(require(Permission.HUNT_READ))
                           ) -> list[dict[str, Any]]:
    ctx = context(request)
    state = HuntState()
    state.merge(await run_in_threadpool(HuntStore(ctx.engine).load))
    return [{"number": g.number, "name": g.name, "strategy": g.strategy,
             "members": [{"member": m.key, "tier": m.tier,
                          "logged_in": state.record(g.number, m.key).logged_in} for m in g.members]}
            for g in plan_of(request).hunt_groups.values()]


@router.post("/{number}/agents/{member}")
async def set_agent(number: str, member: str, body: AgentState, request: Request,
                    principal: Principal = Depends(require(Permission.HUNT_WRITE))) -> dict[str, Any]:
    plan = plan_of(request)
    group = plan.hunt_groups.get(number)
    if group is None or group.member(member) is None:
        raise HTTPException(status_code=404, detail=f"{member} is not a member of hunt group {number}")
    extension = plan.extensions.get(member)
    if not scope(principal, plan).covers_extension(member, extension.department if extension else None):
        raise HTTPException(status_code=403, detail=f"{member} is outside your departments")
    ctx = context(request)
    await run_in_threadpool(set_agent_login, ctx.engine, [number], member, body.logged_in, ctx.clock())
    await audit(request, principal, "hunt.agent.login" if body.logged_in else "hunt.agent.logout",
                f"{number}/{member}")
    return {"group": number, "member": member, "logged_in": body.logged_in}
