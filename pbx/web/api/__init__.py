"""The JSON API under ``/api/``: one router module per area.

Each area is its own module with an ``APIRouter`` named ``router``
listed in :data:`ROUTERS`; new areas plug in the same way.
"""

from __future__ import annotations

from fastapi import APIRouter

from pbx.web.api import admin, cdr, codes, departments, dialplan, extensions, groups, hunt, live, reports, session

ROUTERS: tuple[APIRouter, ...] = (
    session.router, extensions.router, departments.router, groups.router, hunt.router, cdr.router,
    live.router, dialplan.router, admin.router, codes.router, reports.router,
)
