"""In-dialog requests passed between the two sides of a call.

A re-INVITE, UPDATE, INFO, NOTIFY or MESSAGE from one side goes to the
other side's session (its own dialog, CSeq and Contact), and the response
comes back to the originator; an ACK to a relayed re-INVITE's 2xx follows
to the other side, and a CANCEL of a relayed re-INVITE cancels our copy.

- While the call rings, UPDATE and INFO pass between early dialogs
  (RFC 3311): from the caller to the leg whose 1xx A saw (or any live leg
  with an early dialog), from that leg back to the caller. A re-INVITE
  before the answer gets 491 (§14.1 forbids it), anything else 481.
- Session timers (RFC 4028) are rewritten, not copied: 422 for a Session-
  Expires under our Min-SE; Session-Expires, Min-SE and the ``timer`` tag
  towards the other side per :mod:`pbx.sip.session_timer`; the interval of
  a relayed 2xx re-arms the call's expiry watch.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from pbx.calls import anchoring
from pbx.calls import hold as holds
from pbx.calls import transfer as transfers
from pbx.calls.call import CARRIED, Call, CallState, Side, carried
from pbx.routing.dialplan import CallSettings
from pbx.sip import session_timer
from pbx.sip.events import TransactionKey
from pbx.sip.message import Header, Request
from pbx.sip.session import AckIn, CancelIn, InviteSession, RequestIn, ResponseIn, SessionEvent

log = structlog.get_logger("pbx.calls")

# In-dialog requests also carry what their method needs (RFC 6665 NOTIFY,
# RFC 6086 INFO packages). Session timer headers are rewritten instead.
IN_DIALOG_CARRIED = frozenset({*CARRIED, "event", "subscription-state", "info-package", "recv-info"})
RELAYED = frozenset({"INVITE", "UPDATE", "INFO", "NOTIFY", "MESSAGE"})
# Relayed while the call still rings, between early dialogs (RFC 3311 UPDATE).
EARLY_RELAYED = frozenset({"UPDATE", "INFO"})


@dataclass(slots=True)
class Relayed:
    """A request relayed to the other side, awaiting its answer."""

    origin_session: InviteSession
    key: TransactionKey
    """The originator's server transaction, answered with the response."""
    side: Side
    origin: Request
    relayed: Request | None = None
    """Our copy (kept by the session it went out on: a field naming that
    session would be a reference cycle)."""


class Relay:
    def __init__(self, settings: CallSettings) -> None:
        self.settings = settings

    def on_event(self, call: Call, side: Side, session: InviteSession, event: SessionEvent, now: float) -> None:
        if call.state is CallState.ANSWERED and _is_message(event):
            # A message from a side of the call: it is up (the CDR's end if
            # the process dies now).
            call.controller.recorder.call_alive(call, call.controller.wall())
        match event:
            case RequestIn():
                self._request(call, side, session, event, now)
            case ResponseIn():
                if isinstance(event.ref, Relayed):
                    self._response(call, event.ref, event, now)
                elif isinstance(event.ref, holds.HoldOffer):
                    holds.on_response(call, event.ref, event)
            case AckIn():
                if call.music is not None and holds.on_ack(call, session, event):
                    return
                if call.anchor is not None and event.request.body:
                    anchoring.on_ack(call, side, event.request.body)
                pending = call.reinvites.pop(_ack_id(session, event.request), None) if call.reinvites else None
                if pending is not None:
                    target, relayed = pending
                    target.ack_reinvite(relayed, event.request.body, carried(event.request))
            case CancelIn():
                for other in (call.a, *(leg.session for leg in call.legs)):
                    if other.cancel_sent(lambda ref: isinstance(ref, Relayed) and ref.key == event.key):
                        log.info("reinvite_cancelled", call_id=call.a_call_id, uuid=call.uuid, side=side.value)
                        return

    def refuse_short_interval(self, session: InviteSession, key: TransactionKey, request: Request) -> bool:
        """422 for a session interval below our Min-SE (RFC 4028 §8.1)."""
        refusal = session_timer.interval_refusal(request, self.settings.min_se)
        if refusal is None:
            return False
        session.answer(key, request, 422, headers=refusal)
        return True

    def timer_headers(self, call: Call, request: Request, towards: Side) -> list[Header]:
        settings = self.settings
        return session_timer.request_headers(request, session_expires=settings.session_expires,
                                             floor=settings.min_se, peer_floor=call.floor(towards))

    def _target(self, call: Call, side: Side, session: InviteSession, method: str) -> InviteSession | None:
        """Where an in-dialog request from ``side`` goes: the other side's
        dialog, confirmed once answered, early while ringing (UPDATE, INFO)."""
        if call.state is CallState.ANSWERED:
            if side is Side.B and (call.winner is None or session is not call.winner.session):
                return None
            return call.session_of(side.other)
        if call.state is not CallState.RINGING or method not in EARLY_RELAYED:
            return None
        if side is Side.A:
            early = call.early_leg
            if early is None or not early.live or early.session.dialog.remote_tag is None:
                # That fork failed meanwhile: another one still ringing will do.
                early = next((leg for leg in reversed(call.legs)
                              if leg.live and leg.session.dialog.remote_tag is not None), None)
            return early.session if early is not None else None
        leg = call.leg_of(session)
        if leg is None or not leg.live or call.early_leg is None:
            return None  # A has no early dialog with us until a 1xx went to it
        return call.a

    def _request(self, call: Call, side: Side, session: InviteSession, event: RequestIn, now: float) -> None:
        request, method = event.request, event.request.method
        if method == "REFER":
            # The PBX performs transfers itself (pbx.calls.transfer): a
            # REFER is never passed on to the other side.
            transfers.on_refer(call, side, session, event, now)
            return
        target = self._target(call, side, session, method) if method in RELAYED else None
        if target is None:
            # Nothing to relay to: a fork that lost, a re-INVITE before the
            # answer, an early UPDATE with no early dialog on the other side
            # yet (491: try again later, RFC 3311 §5.2).
            session.answer(event.key, request, 491 if method in ("INVITE", "UPDATE") else 481)
            return
        if method in ("INVITE", "UPDATE") and call.state is CallState.ANSWERED and call.anchor is not None \
                and anchoring.on_offer(call, side, session, event, now):
            return  # each leg of an anchored call has its own media (pbx.calls.anchoring)
        if method in ("INVITE", "UPDATE") and call.state is CallState.ANSWERED \
                and holds.on_offer(call, side, session, event, now):
            return  # music on hold (pbx.calls.hold)
        if method == "INFO" and call.anchor is not None:
            anchoring.on_info(call, side, request, now)
        headers = [(n, v) for n, v in request.headers if n in IN_DIALOG_CARRIED]
        if method in ("INVITE", "UPDATE"):
            if self.refuse_short_interval(session, event.key, request):
                return
            headers.extend(self.timer_headers(call, request, side.other))
        relayed = Relayed(session, event.key, side, request)
        relayed.relayed = target.send(method, headers=headers, body=holds.relayed_body(call, target, request.body),
                                      ref=relayed)

    def _response(self, call: Call, relayed: Relayed, event: ResponseIn, now: float) -> None:
        origin, response, status = relayed.origin, event.response, event.status
        if response is None:
            # §8.1.3.1: no answer from the other side counts as 408.
            relayed.origin_session.answer(relayed.key, origin, 408)
            return
        if status < 200 and origin.method != "INVITE":
            return
        headers: list[Header] = [(n, v) for n, v in response.headers if n in IN_DIALOG_CARRIED]
        if status == 422:
            # The other side wants longer intervals: the originator retries
            # with what it says (RFC 4028 §7.4), and we ask for no less.
            min_se = session_timer.parse_min_se(response.get("min-se"))
            if min_se is not None:
                other = relayed.side.other
                call.raise_floor(other, min_se)
                headers.append(("min-se", str(min_se)))
        if origin.method in ("INVITE", "UPDATE") and 200 <= status < 300 and relayed.relayed is not None:
            timer_headers, interval = session_timer.response_headers(origin, relayed.relayed, response)
            headers.extend(timer_headers)
            if call.state is CallState.ANSWERED:
                call.watch(interval, now)  # a session refresh (RFC 4028 §10)
            if origin.method == "INVITE":
                # Its ACK comes later, as AckIn: remember what it acknowledges.
                target = call.session_of(relayed.side.other)
                if target is not None:
                    if call.reinvites is None:
                        call.reinvites = {}
                    call.reinvites[_ack_id(relayed.origin_session, origin)] = (target, relayed.relayed)
        body = holds.relayed_body(call, relayed.origin_session, response.body) if status < 300 else response.body
        relayed.origin_session.answer(relayed.key, origin, status, response.reason, headers, body)


def _is_message(event: SessionEvent) -> bool:
    """A message came from the peer (a response that never came is no sign)."""
    if isinstance(event, ResponseIn):
        return event.response is not None
    return isinstance(event, RequestIn | AckIn | CancelIn)


def _ack_id(session: InviteSession, request: Request) -> tuple[int, int]:
    """A re-INVITE's ACK is found by its originator's session and CSeq."""
    return id(session), request.cseq.number
