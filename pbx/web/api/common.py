"""Helpers the API routers share: the plan in force, the reader's scope,
and running blocking work off the event loop."""

from __future__ import annotations

from fastapi import HTTPException, Request

from pbx.routing.dialplan import Dialplan
from pbx.web.auth import context
from pbx.web.roles import Principal, Scope, scope_of


def plan_of(request: Request) -> Dialplan:
    return context(request).plan()


def scope(principal: Principal, plan: Dialplan) -> Scope:
    return scope_of(principal, {number: e.department for number, e in plan.extensions.items()})


def bad_request(message: str, problems: tuple[object, ...] = ()) -> HTTPException:
    return HTTPException(status_code=422, detail={"message": message, "problems": [str(p) for p in problems]})
