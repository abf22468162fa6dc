"""Placing a fork's INVITEs for one call: one UAC session per leg, with
the caller's offer and carried headers, its own Call-ID and From tag, session
timer headers towards extensions, and the trunk's credentials and gateway
address towards a provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from pbx.calls import anchoring
from pbx.calls.call import Call, Side, carried
from pbx.calls.fork import ContactTarget, Dialer, Leg, TrunkTarget
from pbx.calls.media_policy import leg_offer
from pbx.registrar.destination import destination
from pbx.routing.dialplan import Extension
from pbx.sip.address import Peer
from pbx.sip.dialog import Dialog, new_tag
from pbx.sip.message import Header, Request, Response
from pbx.sip.session import Credentials, InviteSession

if TYPE_CHECKING:
    from pbx.calls.controller import CallController

log = structlog.get_logger("pbx.calls")


class CallDialer(Dialer):
    """Places a fork's INVITEs for one call: the caller's offer and headers,
    one dialog per leg."""

    def __init__(self, controller: CallController, call: Call, *, delayed_offer: bool = False) -> None:
        self.controller, self.call = controller, call
        self.delayed_offer = delayed_offer
        """Send no SDP (a transfer's leg: the target's 2xx offers, and the
        transferee, whose media it is, answers in a re-INVITE)."""

    def _open(self, dialog: Dialog, dest: Peer, *, timers: bool = True,
              credentials: Credentials | None = None, callee: Extension | None = None) -> InviteSession:
        controller, call = self.controller, self.call
        request = call.a_request
        delayed = self.delayed_offer
        headers = [] if delayed else [*carried(request)]
        if timers and not delayed:
            headers.extend(controller.relay.timer_headers(call, request, Side.B))
        # SRTP keys in the offer go on only where both legs are TLS; an
        # anchored call offers the PBX's own media (pbx.calls.anchoring).
        if delayed:
            body = b""
        elif call.anchor is not None:
            body = anchoring.leg_offer(call, call.anchor, on_tls=dest.transport == "tls", callee=callee)
        else:
            body = leg_offer(
                request.body, caller_on_tls=call.a.dest.transport == "tls", leg_on_tls=dest.transport == "tls",
                allow_plain_signalling=controller.plan.security.sdes_over_plain_signalling)
        session = InviteSession.uac(
            dialog=dialog, dest=dest, wire=controller.wire, local=controller.local_address, headers=headers,
            body=body, max_forwards=max(0, int(request.get("max-forwards") or "70") - 1),
            ack_at_once=bool(body), credentials=credentials,
        )
        controller.sessions[session.dialog_id] = (call, session)
        return session

    def invite_contact(self, target: ContactTarget) -> Leg:
        call, binding = self.call, target.binding
        # The Request-URI is the Contact (§16.5); where the INVITE goes is
        # the Contact's address, or the REGISTER's source behind NAT, or the
        # edge proxy the phone registered through (its Path, RFC 3327, is
        # then the route set the INVITE starts with). A menu's transfer: no
        # session timer towards the callee, as the caller was answered by us
        # without one (nobody would refresh it).
        extension = self.controller.plan.extension(target.extension)
        dest = destination(binding, extension.nat if extension is not None else "auto")
        dialog = Dialog(call_id=f"{call.uuid}-{len(call.legs)}", local_tag=new_tag(), remote_tag=None,
                        local_uri=target.from_uri,
                        remote_uri=f"<sip:{target.extension}@{self.controller.plan.domain}>",
                        remote_target=binding.contact,
                        route_set=binding.path if dest.reason == "path" else ())
        if call.destination is None:
            call.destination = target.extension
        session = self._open(dialog, dest.peer, timers=call.media is None, callee=extension)
        return Leg(contact=binding.contact, session=session, started_at=self.controller.wall(),
                   target=target.extension, member=target.member,
                   on_close=self.controller.presence.ring(target.extension))

    def invite_gateway(self, target: TrunkTarget) -> Leg:
        controller, call, dialling = self.controller, self.call, target.dialling
        dest = controller.trunk_sources.peer(dialling.gateway)
        dialog = Dialog(call_id=f"{call.uuid}-{len(call.legs)}", local_tag=new_tag(), remote_tag=None,
                        local_uri=dialling.from_uri, remote_uri=dialling.to_uri, remote_target=dialling.request_uri)
        call.outbound = dialling
        if call.destination is None:
            call.destination = dialling.number
        session = self._open(dialog, dest, timers=False, credentials=self._credentials(target))
        # The leg's contact names the gateway, so the CDR tells attempts apart.
        host = f"[{dest.host}]" if ":" in dest.host else dest.host
        where = f"{host}:{dest.port}" + ("" if dest.transport == "udp" else f";transport={dest.transport}")
        log.info("trunk_invite_sent", call_id=call.a_call_id, uuid=call.uuid, trunk=dialling.trunk.key,
                 gateway=str(dest), number=dialling.number, caller_id=dialling.caller_id)
        return Leg(contact=f"sip:{dialling.number}@{where}", session=session, started_at=controller.wall(),
                   trunk=dialling.trunk.key, target=dialling.number, member=target.member)

    def _credentials(self, target: TrunkTarget) -> Credentials:
        dialling, call_id = target.dialling, self.call.a_call_id  # not the call: no cycle through the session

        def answer(response: Response, invite: Request) -> Header | None:
            header = dialling.credentials(response, method="INVITE", uri=invite.uri, cnonce=new_tag() + new_tag())
            if header is None:
                log.warning("trunk_auth_failed", call_id=call_id, trunk=dialling.trunk.key,
                            gateway=str(dialling.gateway.host), status=response.status,
                            reason="no_credentials" if dialling.trunk.username is None else "rejected")
            return header

        return answer

    def gateway_failed(self, target: TrunkTarget, leg: Leg, why: str, following: bool) -> None:
        dialling = target.dialling
        failed = dialling.failures[-1][0]
        nxt = dialling.gateway if following else None
        log.warning("trunk_gateway_failed", call_id=self.call.a_call_id, trunk=dialling.trunk.key,
                    gateway=f"{failed.transport}:{failed.host}:{failed.port}", reason=why,
                    next=None if nxt is None else f"{nxt.transport}:{nxt.host}:{nxt.port}")
