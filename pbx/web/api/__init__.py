"""The JSON API under ``/api/``: one router module per area.

Areas other work adds later plug in here the same way, each as its own
module with an ``APIRouter`` named ``router`` listed in :data:`ROUTERS`:
account codes (create shows the code once, lists show owners only), cost
reports and budgets, extension suspend/resume/retire, and call forwarding.
"""

from __future__ import annotations

from fastapi import APIRouter

from pbx.web.api import admin, cdr, departments, dialplan, extensions, groups, hunt, live, session

ROUTERS: tuple[APIRouter, ...] = (
    session.router, extensions.router, departments.router, groups.router, hunt.router, cdr.router,
    live.router, dialplan.router, admin.router,
)
