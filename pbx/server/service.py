"""What the PBX does with each new request: the transaction user.

REGISTER goes to the registrar, OPTIONS is answered here (§11.2: 200 with
Allow, Accept, Supported), other methods the PBX does not implement get 405
with Allow (§8.2.1). The calling path (INVITE and in-dialog requests) plugs
in here as another handler, and so do presence (SUBSCRIBE, PUBLISH) and
chat (MESSAGE outside a dialog; one inside a call is the call's). This module logs and hands persistence to the
store's background writer; the decisions themselves are pure.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable, Protocol

import structlog
from sqlalchemy import Connection

from pbx.registrar.bindings import Binding, BindingChange
from pbx.registrar.persist import BindingWriteBehind
from pbx.registrar.registrar import Registrar
from pbx.routing.dialplan import Dialplan
from pbx.sip.address import Peer
from pbx.sip.endpoint import MessageDropped, SipEndpoint
from pbx.sip.events import RequestReceived
from pbx.sip.message import Request, make_response, split_list
from pbx.store.bindings import BindingRecord, BindingStore
from pbx.security.origin import client_of
from pbx.server.security import SecurityEvents
from pbx.store.writer import BackgroundWriter

log = structlog.get_logger("pbx.service")

ALLOW = "REGISTER, OPTIONS"
ACCEPT = "application/sdp"
SUPPORTED = "path"

Clock = Callable[[], float]

# Not gated by the rate limit: an ACK is never answered, and a CANCEL ends
# what an earlier (gated) INVITE started.
_NOT_GATED = frozenset({"ACK", "CANCEL"})


class CallHandler(Protocol):
    """The calling path: INVITE and everything in a dialog."""

    methods: frozenset[str]

    def on_request(self, event: RequestReceived, now: float) -> None: ...

    def on_event(self, event: object, now: float) -> None: ...


class OwnRequests(Protocol):
    """A service of the PBX's own (presence, chat): its requests in, the
    answers to what it sent out (``on_event``: True when it was its own)."""

    def on_request(self, event: RequestReceived, now: float) -> None: ...

    def on_event(self, event: object, now: float) -> bool: ...


class PresenceEvents(OwnRequests, Protocol):
    def changed(self, extension: str) -> None:
        """``extension``'s registrations changed."""

    def registered(self, extension: str) -> None:
        """A phone of ``extension`` registered or refreshed (its voicemail lamp)."""


class ChatEvents(OwnRequests, Protocol):
    def registered(self, aor: str) -> None:
        """``aor`` registered a phone: deliver what waits for it."""


class TrunkEvents(Protocol):
    """The trunk registration clients (``pbx.trunks.client``)."""

    def on_event(self, event: object, now: float) -> bool: ...


class SipService:
    def __init__(
        self,
        endpoint: SipEndpoint,
        registrar: Registrar,
        *,
        writer: BackgroundWriter,
        bindings: BindingStore,
        security: SecurityEvents,
        wall_clock: Clock,
        node: str,
    ) -> None:
        self.endpoint = endpoint
        self.registrar = registrar
        self.writer = writer
        self.bindings = bindings
        self.security = security
        self.wall_clock = wall_clock
        self.node = node
        self.pending_bindings = BindingWriteBehind(writer, node)
        self.calls: CallHandler | None = None
        self.trunks: TrunkEvents | None = None
        self.presence: PresenceEvents | None = None
        self.chat: ChatEvents | None = None
        """Registrations to trunks: they take their own REGISTERs' responses."""
        self.to_tag = secrets.token_hex(6)

    def allowed_methods(self) -> str:
        methods = ["REGISTER", "OPTIONS"]
        if self.calls is not None:
            methods.extend(sorted(self.calls.methods - {"PRACK", "NOTIFY", "REFER", "MESSAGE"}))
        if self.chat is not None:
            methods.append("MESSAGE")
        if self.presence is not None:
            methods.append("SUBSCRIBE")
        return ", ".join(methods)

    # ------------------------------------------------------------ input

    def handle_events(self, events: list[object], now: float) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                trusted = self.registrar.plan.security.trusted_proxies
                if trusted and (client := client_of(event.request, event.source, trusted)) is not None:
                    event = replace(event, client=client)  # an edge relayed it: count the phone
                self._on_request(event, now)
            elif isinstance(event, MessageDropped):
                self.security.dropped(event.reason, event.source, now, answered=event.answered)
            elif self.presence is not None and self.presence.on_event(event, now):
                pass
            elif self.chat is not None and self.chat.on_event(event, now):
                pass
            elif self.trunks is not None and self.trunks.on_event(event, now):
                pass
            elif self.calls is not None:
                # Responses, ACKs to 2xx, stray 2xx and timeouts belong to calls.
                self.calls.on_event(event, now)

    def _on_request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        method = request.method
        if method not in _NOT_GATED and request.to.tag is None and not self.security.admit(
                request, event.origin, now):
            self.endpoint.discard(event.key)
            self.security.dropped("rate_limited", event.origin, now, method=method)
            return
        if method == "REGISTER":
            self._register(event, now)
        elif method == "OPTIONS":
            self._reply(event, request, 200, now, [
                ("allow", self.allowed_methods()), ("accept", ACCEPT), ("supported", SUPPORTED),
                ("accept-language", "en"),
            ])
        elif method in ("SUBSCRIBE", "PUBLISH") and self.presence is not None:
            self.presence.on_request(event, now)
        elif method == "MESSAGE" and request.to.tag is None and self.chat is not None:
            self.chat.on_request(event, now)
        elif self.calls is not None and method in self.calls.methods:
            self.calls.on_request(event, now)
        else:
            self._reply(event, request, 405, now, [("allow", self.allowed_methods())])

    def _reply(self, event: RequestReceived, request: Request, status: int, now: float,
               headers: list[tuple[str, str]]) -> None:
        response = make_response(request, status, to_tag=self.to_tag, headers=headers)
        self.endpoint.send_response(event.key, response, now)

    # ------------------------------------------------------------ registrar

    def _register(self, event: RequestReceived, now: float) -> None:
        wall = self.wall_clock()
        outcome = self.registrar.handle(event.request, event.source, wall, client=event.client)
        challenge = outcome.challenge
        if challenge is not None:
            if self.security.answer(challenge, event.origin, "REGISTER"):
                # Statelessly: nothing is kept for an unauthenticated peer.
                self.endpoint.answer_statelessly(event.key, outcome.response)
            else:
                self.endpoint.discard(event.key)
            return
        self.endpoint.send_response(event.key, outcome.response, now)
        if outcome.response.status >= 300:
            log.info(outcome.event, source=str(event.source), status=outcome.response.status, **outcome.fields)
        for change in outcome.changes:
            self._persist(change, wall)
        changed = {change.binding.aor for change in outcome.changes if change.binding is not None} | {
            change.removed[0] for change in outcome.changes if change.removed is not None}
        for aor in changed:
            if self.presence is not None:
                self.presence.changed(aor)
            if any(change.binding is not None for change in outcome.changes):
                if self.chat is not None:
                    self.chat.registered(aor)
                if self.presence is not None:
                    self.presence.registered(aor)  # the voicemail lamp of a phone that does not subscribe

    def _persist(self, change: BindingChange, wall: float) -> None:
        if change.binding is not None:
            self.pending_bindings.upsert(self.record_of(change.binding, wall))
        elif change.removed is not None:
            self.pending_bindings.delete(*change.removed)

    def record_of(self, binding: Binding, wall: float) -> BindingRecord:
        source = binding.source
        return BindingRecord(
            aor=binding.aor,
            contact=binding.contact,
            expires_at=datetime.fromtimestamp(binding.expires_at, timezone.utc),
            call_id=binding.call_id,
            cseq=binding.cseq,
            q=binding.q,
            transport=source.transport,
            source_host=source.host,
            source_port=source.port,
            connection_id=None if source.connection is None else f"{self.node}/{source.connection}",
            node=self.node,
            user_agent=binding.user_agent,
            instance_id=binding.instance_id,
            reg_id=binding.reg_id,
            updated_at=datetime.fromtimestamp(wall, timezone.utc),
            path=", ".join(binding.path) or None,
        )

    def drop_inactive(self, plan: Dialplan) -> None:
        """Drop at once the registrations of extensions that are not active
        now (suspended, retired, expired, not yet valid): calls to them are
        refused anyway, and a phone that lost its extension must not keep
        its binding till it expires."""
        wall = self.wall_clock()
        at = datetime.fromtimestamp(wall, timezone.utc)
        table = self.registrar.table
        for aor in table.aors():
            extension = plan.extension(aor)
            if extension is None or (state := extension.state_at(at)) == "active":
                continue
            dropped = [binding.contact for binding in table.current(aor, wall)]
            for contact in dropped:
                table.remove(aor, contact)
                self.pending_bindings.delete(aor, contact)
            log.info("bindings_dropped", aor=aor, state=state, count=len(dropped))

    def sweep(self, now: float) -> None:
        """Periodic; ``now`` is the event loop's (monotonic) time."""
        wall = self.wall_clock()
        expired = self.registrar.table.sweep(wall)
        self.security.sweep(now)
        if expired:
            log.info("bindings_expired", count=len(expired))
            if self.presence is not None:
                for aor in {binding.aor for binding in expired}:
                    self.presence.changed(aor)
            cutoff = datetime.fromtimestamp(wall, timezone.utc)

            def sweep(conn: Connection) -> None:
                self.bindings.sweep(cutoff, conn=conn)

            self.writer.submit(sweep)


def binding_of(record: BindingRecord, node: str) -> Binding:
    """A stored binding back in memory. A TCP binding from another node or
    an earlier run has no connection here: requests to it open a new one."""
    return Binding(
        aor=record.aor,
        contact=record.contact,
        expires_at=record.expires_at.timestamp(),
        call_id=record.call_id,
        cseq=record.cseq,
        source=Peer(record.transport, record.source_host, record.source_port, None),
        q=record.q,
        user_agent=record.user_agent,
        instance_id=record.instance_id,
        reg_id=record.reg_id,
        path=tuple(split_list(record.path)) if record.path else (),
    )
