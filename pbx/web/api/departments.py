"""``/api/departments``: the departments a reader covers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from pbx.web.api.common import plan_of
from pbx.web.auth import require
from pbx.web.roles import Permission, Principal

router = APIRouter(prefix="/api/departments", tags=["departments"])


@router.get("")
async def list_departments(request: Request, principal: Principal = Depends(require(Permission.DEPARTMENTS_READ))
                           ) -> list[dict[str, Any]]:
    plan = plan_of(request)
    return [{"key": d.key, "name": d.name, "class_of_service": d.class_of_service,
             "extensions": sum(1 for e in plan.extensions.values() if e.department == d.key)}
            for d in plan.departments.values()
            if principal.role == "admin" or d.key in principal.departments]
