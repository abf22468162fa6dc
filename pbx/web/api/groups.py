"""``/api/groups``: short-number groups and their members, changed in the
members file as ``pbx group add|remove`` does (:mod:`pbx.routing.members_file`)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pbx.routing.members_file import GroupAdminError, add_member, remove_member
from pbx.routing.short_numbers import Member
from pbx.web.api.common import bad_request, plan_of
from pbx.web.auth import audit, context, require
from pbx.web.roles import Permission, Principal

router = APIRouter(prefix="/api/groups", tags=["groups"])


class NewMember(BaseModel):
    short: str = Field(pattern=r"^[0-9]{2,8}$")
    name: str = Field(default="", max_length=100)
    extension: str | None = None
    mobile: str | None = None
    hunt_group: str | None = Field(default=None, pattern=r"^[0-9]{2,8}$")
    ring: Literal["together", "desk_first"] = "together"
    desk_seconds: int = Field(default=15, ge=1, le=600)


@router.get("")
async def list_groups(request: Request, principal: Principal = Depends(require(Permission.GROUPS_READ))
                      ) -> list[dict[str, Any]]:
    return [{"key": key, "title": g.title, "members_file": g.members_file,
             "members": [{"short": m.short, "name": m.name, "extension": m.extension, "mobile": m.mobile,
                          "hunt_group": m.hunt_group, "ring": m.ring} for m in g.members.values()]}
            for key, g in plan_of(request).groups.items()]


@router.post("/{group}/members", status_code=201)
async def add_group_member(group: str, new: NewMember, request: Request,
                           principal: Principal = Depends(require(Permission.GROUPS_WRITE))) -> dict[str, Any]:
    ctx = context(request)
    try:
        member = Member(short=new.short, name=new.name, extension=new.extension, mobile=new.mobile,
                        hunt_group=new.hunt_group, ring=new.ring, desk_seconds=new.desk_seconds)
        change = await run_in_threadpool(add_member, ctx.dialplan_path, group, member)
    except ValueError as err:
        raise bad_request(str(err)) from None
    except GroupAdminError as err:
        raise bad_request(str(err), err.problems) from None
    await ctx.reload("api")
    await audit(request, principal, f"group.member.{change.action}", f"{group}/{new.short}",
                new.model_dump())
    return {"group": group, "short": new.short, "action": change.action}


@router.delete("/{group}/members/{short}")
async def remove_group_member(group: str, short: str, request: Request,
                              principal: Principal = Depends(require(Permission.GROUPS_WRITE))) -> dict[str, Any]:
    ctx = context(request)
    try:
        await run_in_threadpool(remove_member, ctx.dialplan_path, group, short)
    except GroupAdminError as err:
        raise bad_request(str(err), err.problems) from None
    await ctx.reload("api")
    await audit(request, principal, "group.member.removed", f"{group}/{short}")
    return {"group": group, "short": short, "action": "removed"}
