"""The running server's live state as plain views (:class:`LiveSource`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pbx.web.context import BlockView, CallView, LegView, RegistrationView

if TYPE_CHECKING:
    from pbx.server.app import Server


class ServerLive:
    def __init__(self, server: Server) -> None:
        self.server = server

    def registrations(self) -> list[RegistrationView]:
        table = self.server.service.registrar.table
        now = time.time()
        views = []
        for aor in table.aors():
            for binding in table.current(aor, now):
                views.append(RegistrationView(
                    extension=aor, contact=binding.contact, user_agent=binding.user_agent,
                    source=f"{binding.source.host}:{binding.source.port}", expires_in=binding.remaining(now)))
        return sorted(views, key=lambda v: (v.extension, v.contact))

    def calls(self) -> list[CallView]:
        controller = self.server.calls
        if controller is None:
            return []
        unique = {id(call): call for call, _ in controller.sessions.values()}
        views = []
        for call in unique.values():
            if call.state.value in ("ended", "ending"):
                continue
            views.append(CallView(
                uuid=call.uuid, caller=call.caller_number,
                caller_department=call.caller.department if call.caller is not None else None,
                dialled=call.dialled, destination=call.destination, state=call.state.value,
                started_at=call.started_at, answered_at=call.answered_at,
                legs=tuple(LegView(target=leg.target, contact=leg.contact, state=leg.state.value, trunk=leg.trunk)
                           for leg in call.legs)))
        return sorted(views, key=lambda v: v.started_at)

    def blocks(self) -> list[BlockView]:
        return [BlockView(source=b.source, username=b.username, until=b.until, failures=b.failures)
                for b in self.server.security.lockout.blocks(time.time())]

    def sockets_bound(self) -> bool:
        return bool(self.server.udp or self.server.tcp)
