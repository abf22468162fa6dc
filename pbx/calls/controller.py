"""The B2BUA call controller: INVITE in from a phone, INVITEs out to the
callee's registered contacts, and everything in between.

Rules it keeps (RFC 3261 unless said):
- a new INVITE is authenticated with a 407 challenge first (§22.3); the
  caller is the authenticated extension, never the From header;
- every registered contact rings in parallel; the first 2xx wins, the other
  forks get CANCEL (§9.1), and a 2xx that races in later is ACKed and BYEd
  (§13.2.2.4, a B2BUA cannot refuse it);
- 1xx with SDP are relayed (early media); SDP passes through untouched so
  media flows phone to phone;
- when A's INVITE carried no offer, B's 2xx holds the offer and A's ACK the
  answer, so B's ACK waits for A's ACK (§13.2.1 delayed offer);
- in-dialog requests (re-INVITE, UPDATE, INFO, BYE ...) are relayed to the
  other leg with that leg's own dialog, and their responses come back;
- the final response that ends a call (the error to A's INVITE, the 200 to
  a BYE) is sent only once the CDR is durable: once a phone has seen the
  call end, its CDR survives kill -9.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, assert_never

import structlog

from pbx.calls.call import (
    ANSWERED,
    BUSY,
    CANCELLED,
    CONGESTION,
    FAILED,
    NO_ANSWER,
    REJECTED,
    UNAVAILABLE,
    Call,
    CallState,
    Leg,
    LegState,
    MemberCall,
    Relay,
)
from pbx.calls import session_timer
from pbx.cdr.records import disposition_for_status
from pbx.registrar.auth import Authenticated, Authenticator, Challenge
from pbx.registrar.bindings import Binding, BindingTable
from pbx.routing.dialplan import CallSettings, Dialplan, Extension
from pbx.routing.engine import CallRequest, Reject, Ring, RingMember, ToTrunk, decide
from pbx.sip.address import Peer
from pbx.sip.dialog import Dialog, new_branch, new_tag
from pbx.sip.endpoint import SipEndpoint
from pbx.sip.events import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TimedOut,
    TransactionKey,
    TransportFailed,
)
from pbx.sip.message import Header, Request, Response, make_request, make_response, parse_name_addr
from pbx.sip.uri import SipUri, parse_uri
from pbx.trunks.outbound import RING_TIMEOUT as TRUNK_RING_TIMEOUT
from pbx.trunks.outbound import TrunkDialling, Verdict, verdict
from pbx.trunks.sources import TrunkSources

log = structlog.get_logger("pbx.calls")

METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "UPDATE", "INFO", "PRACK", "NOTIFY", "REFER", "MESSAGE"})
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, REGISTER"
RELAYED_IN_DIALOG = frozenset({"INVITE", "UPDATE", "INFO", "NOTIFY", "MESSAGE"})
# Headers carried from one leg's request/response to the other's.
CARRIED = ("content-type", "content-disposition", "content-encoding", "content-language")
# ... and in-dialog requests also carry what their method needs (RFC 6665
# NOTIFY, RFC 6086 INFO packages). Session timer headers are not copied but
# rewritten by pbx.calls.session_timer.
IN_DIALOG_CARRIED = frozenset({*CARRIED, "event", "subscription-state", "info-package", "recv-info"})
# Relayed while the call still rings, between early dialogs (RFC 3311 UPDATE).
EARLY_RELAYED = frozenset({"UPDATE", "INFO"})


class CallRecorder(Protocol):
    """Where the controller reports calls (the CDR writer)."""

    def call_started(self, call: Call) -> None: ...

    def call_answered(self, call: Call) -> None: ...

    def call_ended(self, call: Call, on_durable: Callable[[], None]) -> None: ...


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[[], None]) -> Any: ...


LocalAddress = Callable[[str], tuple[str, int]]
"""transport name -> (host, port) the PBX is reached at, for Via/Contact."""


class CallController:
    methods = METHODS

    def __init__(
        self,
        *,
        endpoint: SipEndpoint,
        plan: Dialplan,
        auth: Authenticator,
        bindings: BindingTable,
        recorder: CallRecorder,
        scheduler: Scheduler,
        local_address: LocalAddress,
        kick: Callable[[], None],
        monotonic: Callable[[], float],
    ) -> None:
        self.endpoint = endpoint
        self.plan = plan
        self.auth = auth
        self.bindings = bindings
        self.recorder = recorder
        self.scheduler = scheduler
        self.local_address = local_address
        self.kick = kick
        self.monotonic = monotonic
        self.calls_by_a_key: dict[TransactionKey, Call] = {}
        self.legs_by_key: dict[TransactionKey, tuple[Call, Leg]] = {}
        # (Call-ID, our tag) -> (call, "a" | "b")
        self.dialogs: dict[tuple[str, str], tuple[Call, str]] = {}
        # client transaction of a relayed in-dialog request -> what it answers
        self.relays: dict[TransactionKey, Relay] = {}
        # A's re-INVITE 2xx awaiting A's ACK -> CSeq of B's re-INVITE to ACK
        self.pending_acks: dict[tuple[str, int], tuple[Call, str, int]] = {}
        # BYEs to callers held back until the ACK of their 2xx (§15), by
        # (Call-ID, our tag) -> (call, Reason headers)
        self.byes_after_ack: dict[tuple[str, str], tuple[Call, list[Header]]] = {}
        self.active = 0
        self.trunk_sources = TrunkSources()
        """Which sources are trunk gateways; the trunk runtime replaces it."""

    def use_plan(self, plan: Dialplan) -> None:
        self.plan = plan

    @property
    def settings(self) -> CallSettings:
        """Session timers and maximum duration, from the dialplan in force."""
        return self.plan.calls

    # ------------------------------------------------------------ helpers

    def _now(self) -> float:
        return self.monotonic()

    def _via(self, transport: str) -> str:
        host, port = self.local_address(transport)
        return f"SIP/2.0/{transport.upper()} {host}:{port};branch={new_branch()};rport"

    def _contact(self, transport: str) -> str:
        host, port = self.local_address(transport)
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{host}:{port}{suffix}>"

    def _respond(self, key: TransactionKey, request: Request, status: int, *, to_tag: str | None,
                 reason: str | None = None, headers: list[Header] | None = None, body: bytes = b"") -> None:
        response = make_response(request, status, reason, to_tag=to_tag, headers=headers or [], body=body)
        self.endpoint.send_response(key, response, self._now())

    # ------------------------------------------------------------ input

    def on_request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        method = request.method
        to_tag = request.to.tag
        if method == "CANCEL":
            self._on_cancel(event)
        elif method == "INVITE" and to_tag is None:
            self._new_call(event)
        elif to_tag is None:
            self._respond(event.key, request, 481, to_tag=new_tag())
        else:
            self._in_dialog(event, to_tag)

    def on_event(self, event: object, now: float) -> None:
        if isinstance(event, ResponseReceived):
            self._on_response(event.response, event.key)
        elif isinstance(event, AckReceived):
            self._on_ack(event.request)
        elif isinstance(event, StrayResponse):
            self._on_stray(event.response)
        elif isinstance(event, (TimedOut, TransportFailed)):
            self._on_timeout(event.key)

    # ------------------------------------------------------------ new calls

    def _new_call(self, event: RequestReceived) -> None:
        request, source = event.request, event.source
        trunk_key = self.trunk_sources.match(source)
        if trunk_key is not None:
            self._new_trunk_call(event, trunk_key)
            return
        try:
            from_user = parse_uri(request.from_.uri)
        except Exception:
            self._respond(event.key, request, 400, to_tag=new_tag(), reason="Bad From")
            return
        claimed = from_user.user if isinstance(from_user, SipUri) else None
        result = self.auth.authenticate(request, source.host, time.time(), proxy=True, user=claimed)
        if isinstance(result, Challenge):
            if result.failed:
                log.warning("call_auth_failed", source=str(source), reason=result.reason)
            if result.blocked is not None:
                log.warning("source_blocked", source=result.blocked.source, failures=result.blocked.failures)
            # Not from a trunk and not (yet) authenticated: nothing is
            # placed, least of all towards a trunk (no open relay).
            dialled = self._dialled(request)
            log.info("call_challenged", source=str(source), dialled=dialled, reason=result.reason,
                     external=self.plan.extension(dialled) is None)
            headers = [("proxy-authenticate", v) for v in result.header_values]
            self._respond(event.key, request, 407, to_tag=new_tag(), headers=headers)
            return
        assert isinstance(result, Authenticated)
        caller = result.extension
        if self._refuse_short_interval(event, new_tag()):
            return
        dialled = self._dialled(request)
        call = self._open_call(event, dialled, caller=caller)
        decision = decide(CallRequest(caller=caller, dialled=dialled, at=datetime.now(timezone.utc),
                                      caller_number=caller.number), self.plan)
        call.rule = decision.rule
        call.call_class = decision.call_class
        if isinstance(decision, RingMember):
            # Known before the CDR row starts, so it records them.
            call.member = MemberCall(decision=decision)
            call.resolved_number = decision.resolved_number
        log.info("call_routed", call_id=call.a_call_id, uuid=call.uuid, caller=caller.number, dialled=dialled,
                 decision=type(decision).__name__, rule=decision.rule, call_class=decision.call_class,
                 steps=[f"{step.rule}: {step.outcome}" for step in decision.steps])
        self.recorder.call_started(call)
        match decision:
            case Ring():
                self._ring(call, decision)
            case RingMember():
                self._ring_member(call, decision)
            case ToTrunk():
                self._to_trunk(call, decision)
            case Reject():
                self._reject(call, decision)
            case _:
                assert_never(decision)

    def _open_call(self, event: RequestReceived, dialled: str, *, caller: Extension | None,
                   trunk: str | None = None, presented_number: str = "",
                   presented_name: str | None = None) -> Call:
        """A new call for the INVITE in ``event``, known to the controller
        from now on (its A dialog answers in-dialog requests and CANCEL)."""
        request = event.request
        a_tag = new_tag()
        call = Call(
            caller=caller,
            trunk=trunk,
            presented_number=presented_number,
            presented_name=presented_name,
            dialled=dialled,
            a_request=request,
            a_source=event.source,
            a_key=event.key,
            a_dialog=Dialog.as_uas(request, a_tag),
            started_at=time.time(),
        )
        self.calls_by_a_key[event.key] = call
        self.dialogs[(request.call_id, a_tag)] = (call, "a")
        self.active += 1
        return call

    def _reject(self, call: Call, decision: Reject) -> None:
        """Refuse a call as routing decided (403 for a barred number, 404
        for an unknown one): a Reason header with the tag, and a Warning
        (RFC 3261 §20.43, code 399) naming the rule and why, so the caller's
        phone or a trace shows which rule refused it; the CDR is REJECTED."""
        status = decision.status
        call.cancel_timers()
        call.state = CallState.ENDING
        call.disposition, call.hangup_status, call.hangup_side = REJECTED, status, "pbx"
        call.reason = decision.reason
        call.ended_at = time.time()
        text = _quoted_text(f"{decision.rule}: {decision.detail or decision.reason}")
        headers: list[Header] = [
            ("reason", f'SIP;cause={status};text="{_quoted_text(decision.reason)}"'),
            ("warning", f'399 {self.plan.domain} "{text}"'),
        ]

        def send_final() -> None:
            self._respond(call.a_key, call.a_request, status, to_tag=call.a_dialog.local_tag, headers=headers)
            self._forget(call)
            self.kick()

        log.info("call_rejected", call_id=call.a_call_id, uuid=call.uuid, status=status, reason=decision.reason,
                 rule=decision.rule, call_class=decision.call_class, detail=decision.detail)
        self.recorder.call_ended(call, send_final)

    def _dialled(self, request: Request) -> str:
        try:
            uri = parse_uri(request.uri)
        except Exception:
            return ""
        if isinstance(uri, SipUri):
            return uri.user or ""
        return uri.number

    def _ring(self, call: Call, decision: Ring) -> None:
        extension = decision.extension
        call.destination = extension.number
        contacts = self.bindings.current(extension.number, time.time())
        if not contacts:
            self._fail(call, 480, UNAVAILABLE, "not_registered", side="pbx")
            return
        self._invite_contacts(call, extension, contacts, _caller_uri(call, self.plan.domain))
        call.state = CallState.RINGING
        call.timers.append(self.scheduler.call_later(extension.ring_timeout, lambda: self._ring_timeout(call)))

    def _invite_contacts(self, call: Call, extension: Extension, contacts: list[Binding], from_uri: str) -> None:
        """Fork the caller's INVITE to every contact, From ``from_uri``."""
        request = call.a_request
        body = request.body
        carried = [(name, value) for name, value in request.headers if name in CARRIED]
        max_forwards = max(0, int(request.get("max-forwards") or "70") - 1)
        for binding in contacts:
            transport = binding.source.transport
            b_dialog = Dialog(
                call_id=f"{call.uuid}-{len(call.legs)}",
                local_tag=new_tag(),
                remote_tag=None,
                local_uri=from_uri,
                remote_uri=f"<sip:{extension.number}@{self.plan.domain}>",
                remote_target=binding.contact,
            )
            invite = b_dialog.request(
                "INVITE",
                via=self._via(transport),
                contact=self._contact(transport),
                headers=[("allow", ALLOW), *carried, *self._timer_headers(call, request, "b")],
                body=body,
                max_forwards=max_forwards,
            )
            key = self.endpoint.send_request(invite, binding.source, self._now())
            leg = Leg(contact=binding.contact, dest=binding.source, invite=invite, key=key, dialog=b_dialog,
                      started_at=time.time())
            call.legs.append(leg)
            self.legs_by_key[key] = (call, leg)
            self.dialogs[(b_dialog.call_id, b_dialog.local_tag)] = (call, "b")

    # ------------------------------------------------------------ B responses

    def _on_response(self, response: Response, key: TransactionKey) -> None:
        relay = self.relays.pop(key, None) if response.status >= 200 else self.relays.get(key)
        if relay is not None:
            self._relay_response(relay, response)
            return
        found = self.legs_by_key.get(key)
        if found is None:
            # A 2xx retransmitted to a relayed re-INVITE is ACKed again;
            # responses to our CANCELs and BYEs need nothing.
            self._on_stray(response)
            return
        call, leg = found
        if leg.trunk is not None and self._on_trunk_response(call, leg, key, response):
            return
        status = response.status
        if status < 200:
            if status > 100 and leg.live:
                leg.state = LegState.EARLY
                self._note_early_dialog(call, leg, response)
                if call.state is CallState.RINGING:
                    self._relay_provisional(call, response)
            return
        if 200 <= status < 300:
            self._on_leg_answered(call, leg, response)
            return
        if status == 422 and self._retry_longer_interval(call, leg, response):
            return
        leg.status = status
        leg.ended_at = time.time()
        if leg.state is not LegState.CANCELLED:
            leg.state = LegState.FAILED
        self.legs_by_key.pop(key, None)
        if call.state is CallState.RINGING and not any(l.live for l in call.legs):
            self._all_legs_failed(call)

    def _relay_provisional(self, call: Call, response: Response) -> None:
        carried = [(n, v) for n, v in response.headers if n in CARRIED]
        transport = call.a_source.transport
        self._respond(call.a_key, call.a_request, response.status, reason=response.reason,
                      to_tag=call.a_dialog.local_tag,
                      headers=[("contact", self._contact(transport)), *carried], body=response.body)

    def _on_leg_answered(self, call: Call, leg: Leg, response: Response) -> None:
        if leg.state is LegState.ANSWERED:
            self._ack_again(call, response)  # a retransmitted 2xx: the same ACK again
            return
        leg.dialog.confirm_as_uac(response)
        leg.status = response.status
        if call.state is not CallState.RINGING:
            # Lost the race (another fork answered, or the caller cancelled):
            # a 2xx cannot be refused, so ACK it and hang up (§15, §13.2.2.4).
            leg.state = LegState.ANSWERED
            self._ack_leg(leg, response)
            self._send_bye(call, leg)
            return
        leg.state = LegState.ANSWERED
        call.winner = leg
        if call.member is not None:
            self._member_answered(call, call.member, leg)
        call.state = CallState.ANSWERED
        call.answered_at = time.time()
        call.cancel_timers()
        for other in call.legs:
            if other is not leg and other.live:
                self._cancel_leg(other)
        if call.a_request.body:
            self._ack_leg(leg, response)  # offer was in the INVITE: ACK now
        # else: delayed offer; B is ACKed with A's answer when A's ACK comes.
        carried = [(n, v) for n, v in response.headers if n in CARRIED]
        timer_headers, interval = session_timer.response_headers(call.a_request, leg.invite, response)
        transport = call.a_source.transport
        self._respond(call.a_key, call.a_request, 200, to_tag=call.a_dialog.local_tag,
                      headers=[("contact", self._contact(transport)), ("allow", ALLOW), *carried, *timer_headers],
                      body=response.body)
        self.recorder.call_answered(call)
        log.info("call_answered", call_id=call.a_call_id, uuid=call.uuid, contact=leg.contact,
                 session_interval=interval)
        call.answered_monotonic = self._now()
        self._watch(call, interval)

    def _ack_leg(self, leg: Leg, response: Response | None, body: bytes = b"", headers: list[Header] | None = None) -> None:
        ack = leg.dialog.request(
            "ACK", via=self._via(leg.dest.transport), contact=None, cseq=leg.invite.cseq.number,
            headers=headers or [], body=body,
        )
        leg.acked = True
        leg.ack = ack.encode()
        self.endpoint.send_raw(leg.ack, leg.dest)

    def _send_ack(self, call: Call, ack: Request, dest: Peer) -> None:
        """An ACK to the 2xx of a relayed re-INVITE, kept to be sent again."""
        data = ack.encode()
        call.acks_sent[(ack.call_id, ack.cseq.number)] = (data, dest)
        self.endpoint.send_raw(data, dest)

    def _ack_again(self, call: Call, response: Response) -> None:
        """A 2xx came again: our ACK was lost, so send the very same ACK
        (§13.2.2.4). One not ACKed yet waits for the other side's ACK, which
        carries the answer to its offer; until then it is absorbed."""
        leg = call.leg_of(response.call_id)
        if leg is not None and leg.ack is not None and response.cseq.number == leg.invite.cseq.number:
            self.endpoint.send_raw(leg.ack, leg.dest)
            return
        sent = call.acks_sent.get((response.call_id, response.cseq.number))
        if sent is not None:
            self.endpoint.send_raw(*sent)

    def _note_early_dialog(self, call: Call, leg: Leg, response: Response) -> None:
        """A 1xx with a To tag makes an early dialog with the callee (§12.1.2):
        keep its tag and target so UPDATE and INFO can be relayed through it
        before the answer (RFC 3311)."""
        if response.to.tag is None:
            return
        leg.dialog.confirm_as_uac(response)
        if call.state is CallState.RINGING:
            call.early_leg = leg

    def _retry_longer_interval(self, call: Call, leg: Leg, response: Response) -> bool:
        """The callee refused our session interval as too small (422, RFC
        4028 §7.4): send its INVITE again with the Min-SE it asked for, once,
        rather than fail the call; later refreshes towards it are raised too."""
        min_se = session_timer.parse_min_se(response.get("min-se"))
        if min_se is None or leg.retried_422 or not leg.live or call.state is not CallState.RINGING:
            return False
        call.peer_floor["b"] = max(call.peer_floor.get("b", 0), min_se)
        old = leg.invite
        leg.dialog.local_cseq += 1
        leg.dialog.remote_tag = None  # the early dialog, if any, ended with the 422
        dropped = {"via", "cseq", "session-expires", "min-se"}
        headers: list[Header] = [
            ("via", self._via(leg.dest.transport)),
            *[(n, v) for n, v in old.headers if n not in dropped],
            ("cseq", f"{leg.dialog.local_cseq} INVITE"),
            *session_timer.retry_headers(old, min_se),
        ]
        invite = make_request("INVITE", old.uri, headers, old.body)
        self.legs_by_key.pop(leg.key, None)
        leg.invite, leg.retried_422 = invite, True
        leg.key = self.endpoint.send_request(invite, leg.dest, self._now())
        self.legs_by_key[leg.key] = (call, leg)
        log.info("call_leg_interval_raised", call_id=call.a_call_id, uuid=call.uuid, min_se=min_se)
        return True

    def _cancel_leg(self, leg: Leg) -> None:
        leg.state = LegState.CANCELLED
        # The layer holds the CANCEL back until a 1xx has arrived (§9.1).
        self.endpoint.cancel(leg.key, self._now())

    def _all_legs_failed(self, call: Call) -> None:
        if call.member is not None:
            self._member_legs_failed(call, call.member)
            return
        statuses = [l.status for l in call.legs if l.status is not None]
        if any(s >= 600 for s in statuses):
            status, disposition, reason = 603, REJECTED, "declined"
        elif 486 in statuses or 600 in statuses:
            status, disposition, reason = 486, BUSY, "busy"
        elif statuses and all(s in (408, 480, 487) for s in statuses):
            status, disposition, reason = 480, NO_ANSWER, "no_answer"
        else:
            status = statuses[0] if statuses else 480
            disposition, reason = FAILED, "callee_error"
        self._fail(call, status, disposition, reason, side="callee")

    def _ring_timeout(self, call: Call) -> None:
        if call.state is not CallState.RINGING:
            return
        for leg in call.legs:
            if leg.live:
                self._cancel_leg(leg)
        self._fail(call, 480, NO_ANSWER, "ring_timeout", side="pbx")
        self.kick()

    def _fail(self, call: Call, status: int, disposition: str, reason: str, *, side: str) -> None:
        """End a call that was never answered, with ``status`` to the caller."""
        call.cancel_timers()
        call.state = CallState.ENDING
        call.disposition, call.hangup_status, call.hangup_side, call.reason = disposition, status, side, reason
        call.ended_at = time.time()
        phrase = None if status != 480 else "Temporarily Unavailable"

        def send_final() -> None:
            headers: list[Header] = [("reason", f'SIP;cause={status};text="{reason}"')]
            self._respond(call.a_key, call.a_request, status, to_tag=call.a_dialog.local_tag, reason=phrase,
                          headers=headers)
            self._forget(call)
            self.kick()

        log.info("call_failed", call_id=call.a_call_id, uuid=call.uuid, status=status, disposition=disposition,
                 reason=reason)
        self.recorder.call_ended(call, send_final)

    # ------------------------------------------------------------ CANCEL

    def _on_cancel(self, event: RequestReceived) -> None:
        invite_key = self.endpoint.transactions.invite_key_for_cancel(event.request, event.source)
        call = self.calls_by_a_key.get(invite_key) if invite_key is not None else None
        if call is None and invite_key is not None and self._cancel_relayed(event, invite_key):
            return
        if call is None:
            # §9.2: no matching transaction: 481.
            self._respond(event.key, event.request, 481, to_tag=new_tag())
            return
        self._respond(event.key, event.request, 200, to_tag=call.a_dialog.local_tag)
        if call.state is not CallState.RINGING and call.state is not CallState.ROUTING:
            return  # already answered or ended: CANCEL has no effect (§9.2)
        for leg in call.legs:
            if leg.live:
                self._cancel_leg(leg)
        self._fail(call, 487, CANCELLED, "caller_cancelled", side="caller")

    def _cancel_relayed(self, event: RequestReceived, invite_key: TransactionKey) -> bool:
        """A CANCEL of a re-INVITE we relayed to the other leg (§9, allowed
        for any pending INVITE): 200 for the CANCEL, and CANCEL the relayed
        re-INVITE; the other leg's 487 then comes back to the sender as the
        answer to its re-INVITE. False if ``invite_key`` is no relayed one."""
        for client_key, relay in self.relays.items():
            if relay.server_key == invite_key and relay.origin.method == "INVITE":
                self._respond(event.key, event.request, 200, to_tag=event.request.to.tag)
                # The layer holds the CANCEL back until a 1xx has arrived (§9.1).
                self.endpoint.cancel(client_key, self._now())
                log.info("reinvite_cancelled", call_id=relay.call.a_call_id, uuid=relay.call.uuid, side=relay.side)
                return True
        return False

    # ------------------------------------------------------------ in dialog

    def _in_dialog(self, event: RequestReceived, to_tag: str) -> None:
        request = event.request
        found = self.dialogs.get((request.call_id, to_tag))
        if found is None:
            self._respond(event.key, request, 481, to_tag=to_tag)
            return
        call, side = found
        leg = call.leg_of(request.call_id) if side == "b" else None
        method = request.method
        if method == "BYE":
            self._on_bye(call, side, leg, event)
            return
        target = self._relay_target(call, side, leg, method)
        if target is None:
            # Nothing to relay to: a fork that lost, a re-INVITE before the
            # answer (§14.1 forbids it), an early UPDATE with no early dialog
            # on the other side yet (491: try again later, RFC 3311 §5.2).
            self._respond(event.key, request, 491 if method in ("INVITE", "UPDATE") else 481, to_tag=to_tag)
            return
        if method in ("INVITE", "UPDATE") and self._refuse_short_interval(event, to_tag):
            return
        dialog, dest = target
        headers = [(n, v) for n, v in request.headers if n in IN_DIALOG_CARRIED]
        if method in ("INVITE", "UPDATE"):
            headers.extend(self._timer_headers(call, request, "b" if side == "a" else "a"))
        transport = dest.transport
        relayed = dialog.request(
            method, via=self._via(transport),
            contact=self._contact(transport) if method in ("INVITE", "UPDATE", "NOTIFY") else None,
            headers=headers, body=request.body,
        )
        key = self.endpoint.send_request(relayed, dest, self._now())
        origin_transport = leg.dest.transport if leg is not None else call.a_source.transport
        self.relays[key] = Relay(call, event.key, side, request, relayed, to_tag, origin_transport)
        if method == "INVITE":
            # The ACK for this re-INVITE's 2xx arrives later as an AckReceived;
            # remember which request on the other leg it must acknowledge.
            self.pending_acks[(request.call_id, request.cseq.number)] = (call, side, relayed.cseq.number)

    def _relay_target(self, call: Call, side: str, leg: Leg | None, method: str) -> tuple[Dialog, Peer] | None:
        """Where an in-dialog request from ``side`` goes: the other leg's
        dialog, confirmed once answered, early while ringing (UPDATE, INFO)."""
        if call.state is CallState.ANSWERED:
            if side == "b" and leg is not call.winner:
                return None
            return self._other_leg(call, side)
        if call.state is not CallState.RINGING or method not in EARLY_RELAYED:
            return None
        if side == "a":
            early = call.early_leg
            if early is None or not early.live or early.dialog.remote_tag is None:
                # That fork failed meanwhile: another one still ringing will do.
                early = next((l for l in reversed(call.legs) if l.live and l.dialog.remote_tag is not None), None)
            if early is None:
                return None
            return early.dialog, early.dest
        if leg is None or not leg.live or call.early_leg is None:
            return None  # A has no early dialog with us until a 1xx went to it
        return call.a_dialog, call.a_source

    def _refuse_short_interval(self, event: RequestReceived, to_tag: str) -> bool:
        """422 for a session interval below our Min-SE (RFC 4028 §8.1)."""
        floor = self.settings.min_se
        if not session_timer.too_small(event.request, floor):
            return False
        self._respond(event.key, event.request, 422, to_tag=to_tag, headers=[("min-se", str(floor))])
        return True

    def _timer_headers(self, call: Call, request: Request, towards: str) -> list[Header]:
        """Session timer headers for ``request`` relayed towards ``towards``."""
        settings = self.settings
        return session_timer.request_headers(request, session_expires=settings.session_expires,
                                             floor=settings.min_se, peer_floor=call.peer_floor.get(towards))

    def _relay_response(self, relay: Relay, response: Response) -> None:
        call, origin, status = relay.call, relay.origin, response.status
        if status == 100:
            return  # hop by hop: the originator's transaction sent its own
        headers: list[Header] = [(n, v) for n, v in response.headers if n in IN_DIALOG_CARRIED]
        if status == 422:
            # The other side wants longer intervals: the originator retries
            # with what it says (RFC 4028 §7.4), and we ask for no less.
            min_se = session_timer.parse_min_se(response.get("min-se"))
            if min_se is not None:
                other = "b" if relay.side == "a" else "a"
                call.peer_floor[other] = max(call.peer_floor.get(other, 0), min_se)
                headers.append(("min-se", str(min_se)))
        if origin.method in ("INVITE", "UPDATE") and 200 <= status < 300:
            timer_headers, interval = session_timer.response_headers(origin, relay.relayed, response)
            headers = [("contact", self._contact(relay.transport)), *headers, *timer_headers]
            if call.state is CallState.ANSWERED:
                self._watch(call, interval)  # a session refresh (RFC 4028 §10)
        self._respond(relay.server_key, origin, status, reason=response.reason, to_tag=relay.to_tag,
                      headers=headers, body=response.body)

    def _other_leg(self, call: Call, side: str) -> tuple[Dialog, Peer] | None:
        if side == "a":
            if call.winner is None:
                return None
            return call.winner.dialog, call.winner.dest
        return call.a_dialog, call.a_source

    def _on_ack(self, request: Request) -> None:
        to_tag = request.to.tag
        if to_tag is None:
            return
        held = self.byes_after_ack.pop((request.call_id, to_tag), None)
        if held is not None:
            # The caller ACKed at last: the BYE that waited for it can go (§15).
            self._send_bye_to(held[0], "a", held[1], wait_for_ack=False)
        found = self.dialogs.get((request.call_id, to_tag))
        if found is None:
            return  # ACK after the call ended (e.g. it crossed a BYE): nothing to do
        call, side = found
        if side == "a" and not call.a_acked and request.cseq.number == call.a_request.cseq.number:
            call.a_acked = True
            leg = call.winner
            if leg is not None and not leg.acked:
                carried = [(n, v) for n, v in request.headers if n in CARRIED]
                self._ack_leg(leg, None, body=request.body, headers=carried)
            return
        entry = self.pending_acks.pop((request.call_id, request.cseq.number), None)
        if entry is None:
            return  # a repeated ACK: the first one was relayed
        _, origin_side, other_cseq = entry
        other = self._other_leg(call, origin_side)
        if other is None:
            return
        dialog, dest = other
        carried = [(n, v) for n, v in request.headers if n in CARRIED]
        ack = dialog.request("ACK", via=self._via(dest.transport), contact=None, cseq=other_cseq,
                             headers=carried, body=request.body)
        self._send_ack(call, ack, dest)

    def _on_stray(self, response: Response) -> None:
        """A 2xx to an INVITE of ours (first or re-INVITE) came again after we
        ACKed it: the ACK was lost, send it again (§13.2.2.4)."""
        if response.cseq.method != "INVITE" or not 200 <= response.status < 300:
            return
        found = self.dialogs.get((response.call_id, response.from_.tag or ""))
        if found is not None:
            self._ack_again(found[0], response)

    # ------------------------------------------------------------ BYE

    def _on_bye(self, call: Call, side: str, leg: Leg | None, event: RequestReceived) -> None:
        request = event.request
        dialog_tag = request.to.tag or ""
        if side == "b" and leg is not call.winner:
            # A fork that lost the race hangs up (we BYEd it too), or a callee
            # leaves its early dialog: only that leg ends.
            self._respond(event.key, request, 200, to_tag=dialog_tag)
            if leg is not None and leg.live:
                self._cancel_leg(leg)
            return
        call.byes_from.add(side)  # a crossing BYE: that side gets none from us
        if call.state in (CallState.ENDING, CallState.ENDED):
            self._respond(event.key, request, 200, to_tag=dialog_tag)
            return
        if call.state is not CallState.ANSWERED:
            self._respond(event.key, request, 200, to_tag=dialog_tag)
            if side == "a" and call.state is CallState.RINGING:
                # §15: the caller may end its early dialog with BYE; it
                # means what a CANCEL would.
                for other in call.legs:
                    if other.live:
                        self._cancel_leg(other)
                self._fail(call, 487, CANCELLED, "caller_bye", side="caller")
            return
        call.cancel_timers()
        call.state = CallState.ENDING
        call.disposition = ANSWERED
        call.hangup_side = "caller" if side == "a" else "callee"
        call.hangup_status = 200
        call.reason = "bye"
        call.ended_at = time.time()
        key = event.key

        def send_ok() -> None:
            self._send_bye_to(call, "b" if side == "a" else "a", [])
            self._respond(key, request, 200, to_tag=dialog_tag)
            self._forget(call)
            self.kick()

        log.info("call_ended", call_id=call.a_call_id, uuid=call.uuid, side=call.hangup_side)
        self.recorder.call_ended(call, send_ok)

    def _send_bye(self, call: Call, leg: Leg) -> None:
        bye = leg.dialog.request("BYE", via=self._via(leg.dest.transport), contact=None)
        self.endpoint.send_request(bye, leg.dest, self._now())

    def _send_bye_to(self, call: Call, side: str, headers: list[Header], *, wait_for_ack: bool = True) -> None:
        """BYE to one side of an answered call, unless it sent its own."""
        if side in call.byes_from:
            return
        if side == "b":
            leg = call.winner
            if leg is None:
                return
            if not leg.acked:
                # Delayed offer and the caller's ACK (with the answer) never
                # came: a 2xx must still be ACKed before the BYE (§13.2.2.4).
                self._ack_leg(leg, None)
            dialog, dest = leg.dialog, leg.dest
        else:
            if wait_for_ack and not call.a_acked:
                # §15: no BYE to the caller before it ACKed our 2xx (or our
                # retransmissions of it gave up, see _on_timeout).
                self.byes_after_ack[(call.a_call_id, call.a_dialog.local_tag)] = (call, headers)
                return
            dialog, dest = call.a_dialog, call.a_source
        bye = dialog.request("BYE", via=self._via(dest.transport), contact=None, headers=headers)
        self.endpoint.send_request(bye, dest, self._now())

    def _watch(self, call: Call, interval: int | None) -> None:
        """(Re)arm the one timer that ends an answered call: the session
        expiry when a session timer runs (RFC 4028 §10), else the maximum
        call duration counted from the answer."""
        if call.watch is not None:
            call.watch.cancel()
        call.session_interval = interval
        if interval is not None:
            delay, reason = session_timer.expiry_delay(interval), "session_expired"
        else:
            answered = call.answered_monotonic if call.answered_monotonic is not None else self._now()
            delay = max(0.0, answered + self.settings.max_call_seconds - self._now())
            reason = "max_duration"
        call.watch = self.scheduler.call_later(delay, lambda: self._end_by_pbx(call, reason))

    def _end_by_pbx(self, call: Call, reason: str, *, caller_gone: bool = False) -> None:
        """End an answered call from here: BYE to both sides, once the CDR
        saying so is durable. ``caller_gone``: the caller never ACKed, so its
        BYE cannot wait for that ACK."""
        if call.state is not CallState.ANSWERED:
            return
        call.cancel_timers()
        call.state = CallState.ENDING
        status = 200 if reason == "max_duration" else 408
        call.disposition, call.hangup_side, call.hangup_status, call.reason = ANSWERED, "pbx", status, reason
        call.ended_at = time.time()
        log.warning("call_ended_by_pbx", call_id=call.a_call_id, uuid=call.uuid, reason=reason,
                    session_interval=call.session_interval)
        headers: list[Header] = [("reason", f'SIP;cause={status};text="{reason}"')]

        def send_byes() -> None:
            self._send_bye_to(call, "a", headers, wait_for_ack=not caller_gone)
            self._send_bye_to(call, "b", headers)
            self._forget(call)
            self.kick()

        self.recorder.call_ended(call, send_byes)
        self.kick()

    # ------------------------------------------------------------ timeouts

    def _on_timeout(self, key: TransactionKey) -> None:
        relay = self.relays.pop(key, None)
        if relay is not None:
            # §8.1.3.1: no answer from the other side counts as 408.
            self._respond(relay.server_key, relay.origin, 408, to_tag=relay.to_tag)
            return
        if key.server:
            self._caller_never_acked(key)
            return
        found = self.legs_by_key.pop(key, None)
        if found is None:
            return
        call, leg = found
        if leg.trunk is not None:
            self._on_trunk_leg_lost(call, leg)
            return
        if leg.live:
            leg.state = LegState.FAILED
            leg.status = 408
            leg.ended_at = time.time()
        if call.state is CallState.RINGING and not any(l.live for l in call.legs):
            self._all_legs_failed(call)

    # ------------------------------------------------------------ trunk calls (pbx.trunks)

    def _new_trunk_call(self, event: RequestReceived, trunk_key: str) -> None:
        """An INVITE from a trunk's gateway: the provider authenticated the
        caller, so no 407; the DID decides where it goes, and nothing from a
        trunk ever goes out through a trunk again."""
        request, source = event.request, event.source
        trunk = self.plan.trunks.get(trunk_key)
        if trunk is None:  # the plan changed under the source table: refuse
            log.warning("trunk_call_refused", source=str(source), trunk=trunk_key, reason="unknown_trunk")
            self._respond(event.key, request, 403, to_tag=new_tag())
            return
        dialled = self._trunk_did(request, trunk.username)
        presented, shown = "", None
        try:
            from_ = request.from_
            from_uri = parse_uri(from_.uri)
        except Exception:
            self._respond(event.key, request, 400, to_tag=new_tag(), reason="Bad From")
            return
        if isinstance(from_uri, SipUri):
            presented = from_uri.user or ""
        else:
            presented = from_uri.number
        shown = from_.display or None
        call = self._open_call(event, dialled, caller=None, trunk=trunk_key, presented_number=presented,
                               presented_name=shown)
        decision = decide(CallRequest(caller=None, trunk=trunk_key, dialled=dialled, caller_number=presented,
                                      at=datetime.now(timezone.utc)), self.plan)
        call.rule = decision.rule
        call.call_class = decision.call_class
        if isinstance(decision, RingMember):
            call.member = MemberCall(decision=decision)
            call.resolved_number = decision.resolved_number
        log.info("trunk_call_routed", call_id=call.a_call_id, uuid=call.uuid, trunk=trunk_key, caller=presented,
                 dialled=dialled, decision=type(decision).__name__, rule=decision.rule)
        self.recorder.call_started(call)
        match decision:
            case Ring():
                self._ring(call, decision)
            case ToTrunk():
                log.warning("trunk_relay_refused", call_id=call.a_call_id, trunk=trunk_key, dialled=dialled,
                            to_trunk=decision.trunk)
                self._fail(call, 403, REJECTED, "no_trunk_to_trunk", side="pbx")
            case RingMember():
                # A DID the admin gave to a group member: their desk and their
                # mobile. The mobile leg goes back out through a trunk, but only
                # to the number the dialplan names, checked against the
                # member's own rights: no number a caller chose is reached.
                self._ring_member(call, decision)
            case Reject():
                self._fail(call, decision.status, REJECTED, decision.reason, side="pbx")
            case _:
                assert_never(decision)

    def _trunk_did(self, request: Request, username: str | None) -> str:
        """The number a trunk call was made to. Providers put the DID in the
        Request-URI, except when they send to the Contact our registration
        left, whose user is the trunk username: then the DID is in To."""
        dialled = self._dialled(request)
        if dialled and dialled != username:
            return dialled
        try:
            to_uri = parse_uri(request.to.uri)
        except Exception:
            return dialled
        if isinstance(to_uri, SipUri):
            return to_uri.user or dialled
        return to_uri.number

    def _to_trunk(self, call: Call, decision: ToTrunk) -> None:
        trunk = self.plan.trunks.get(decision.trunk)
        if call.caller is None:
            # Belt and braces: routing gives trunk calls only DIDs, but a
            # call from a trunk must never be relayed back out (toll fraud).
            log.warning("trunk_relay_refused", call_id=call.a_call_id, trunk=call.trunk, dialled=call.dialled,
                        to_trunk=decision.trunk)
            self._fail(call, 403, REJECTED, "no_trunk_to_trunk", side="pbx")
            return
        if trunk is None:
            log.error("trunk_missing", call_id=call.a_call_id, trunk=decision.trunk)
            self._fail(call, 503, FAILED, "unknown_trunk", side="pbx")
            return
        caller_id = decision.caller_id or trunk.caller_id or call.caller.number
        call.outbound = TrunkDialling(trunk=trunk, number=decision.number, caller_id=caller_id)
        call.destination = decision.number
        call.state = CallState.RINGING
        call.timers.append(self.scheduler.call_later(TRUNK_RING_TIMEOUT, lambda: self._ring_timeout(call)))
        self._trunk_invite(call)

    def _trunk_invite(self, call: Call) -> None:
        """INVITE the current gateway of the call's trunk, and give it
        ``invite_timeout`` seconds to answer anything."""
        dialling = call.outbound
        assert dialling is not None
        gateway = dialling.gateway
        dest = self.trunk_sources.peer(gateway)
        request = call.a_request
        carried = [(name, value) for name, value in request.headers if name in CARRIED]
        max_forwards = max(0, int(request.get("max-forwards") or "70") - 1)
        dialog = Dialog(
            call_id=f"{call.uuid}-{len(call.legs)}",
            local_tag=new_tag(),
            remote_tag=None,
            local_uri=dialling.from_uri,
            remote_uri=dialling.to_uri,
            remote_target=dialling.request_uri,
        )
        invite = dialog.request(
            "INVITE", via=self._via(gateway.transport), contact=self._contact(gateway.transport),
            headers=[("allow", ALLOW), *carried], body=request.body, max_forwards=max_forwards,
        )
        key = self.endpoint.send_request(invite, dest, self._now())
        # The leg's contact names the gateway, so the CDR tells attempts apart.
        host = f"[{dest.host}]" if ":" in dest.host else dest.host
        where = f"{host}:{dest.port}" + ("" if dest.transport == "udp" else f";transport={dest.transport}")
        leg = Leg(contact=f"sip:{dialling.number}@{where}", dest=dest, invite=invite, key=key, dialog=dialog,
                  started_at=time.time(), trunk=dialling.trunk.key)
        call.legs.append(leg)
        self.legs_by_key[key] = (call, leg)
        self.dialogs[(dialog.call_id, dialog.local_tag)] = (call, "b")
        log.info("trunk_invite_sent", call_id=call.a_call_id, uuid=call.uuid, trunk=dialling.trunk.key,
                 gateway=str(dest), number=dialling.number, caller_id=dialling.caller_id)
        self._arm_trunk_silence(call, leg)

    def _arm_trunk_silence(self, call: Call, leg: Leg) -> None:
        dialling = call.outbound
        assert dialling is not None
        timer = self.scheduler.call_later(dialling.trunk.invite_timeout, lambda: self._trunk_silent(call, leg))
        dialling.silence_timer = timer
        call.timers.append(timer)

    def _disarm_trunk_silence(self, call: Call) -> None:
        dialling = call.outbound
        if dialling is not None and dialling.silence_timer is not None:
            timer = dialling.silence_timer
            dialling.silence_timer = None
            timer.cancel()
            if timer in call.timers:
                call.timers.remove(timer)

    def _current_trunk_leg(self, call: Call) -> Leg | None:
        # Failover appends each gateway's leg; a member call's desk legs
        # come before its trunk legs, so the last trunk leg is the current.
        return next((leg for leg in reversed(call.legs) if leg.trunk is not None), None)

    def _on_trunk_response(self, call: Call, leg: Leg, key: TransactionKey, response: Response) -> bool:
        """A response on a trunk leg. Returns False for what the generic
        path handles (1xx and 2xx of the gateway being tried)."""
        status = response.status
        if leg is not self._current_trunk_leg(call) or leg.state is LegState.FAILED:
            # A gateway given up on answered after all.
            if 200 <= status < 300:
                if not leg.acked:
                    leg.dialog.confirm_as_uac(response)
                    self._ack_leg(leg, response)
                    self._send_bye(call, leg)
                    log.info("trunk_late_answer_released", call_id=call.a_call_id, gateway=str(leg.dest))
                else:
                    self._ack_leg(leg, response)
            elif status >= 300:
                self.legs_by_key.pop(key, None)
            return True
        self._disarm_trunk_silence(call)
        if status < 300:
            return False
        leg.status = status
        leg.ended_at = time.time()
        if leg.state is not LegState.CANCELLED:
            leg.state = LegState.FAILED
        self.legs_by_key.pop(key, None)
        if call.state is not CallState.RINGING:
            return True  # the caller left meanwhile; the call is already ending
        dialling = call.outbound
        assert dialling is not None
        match verdict(status):
            case Verdict.AUTHENTICATE:
                self._trunk_authenticate(call, leg, response)
            case Verdict.NEXT_GATEWAY:
                self._trunk_next_gateway(call, str(status))
            case Verdict.END | Verdict.ANSWERED:
                log.info("trunk_call_refused_by_callee", call_id=call.a_call_id, trunk=dialling.trunk.key,
                         status=status)
                self._trunk_gave_up(call, status, disposition_for_status(status).value, f"trunk_{status}",
                                    side="callee")
        return True

    def _trunk_authenticate(self, call: Call, leg: Leg, response: Response) -> None:
        """Send the INVITE again with credentials (RFC 3261 §22.2): same
        Call-ID, From tag and body, next CSeq, new branch."""
        dialling = call.outbound
        assert dialling is not None
        answer = dialling.credentials(response, method="INVITE", uri=leg.invite.uri, cnonce=secrets.token_hex(8))
        if answer is None:
            log.warning("trunk_auth_failed", call_id=call.a_call_id, trunk=dialling.trunk.key,
                        gateway=str(leg.dest), status=response.status,
                        reason="no_credentials" if dialling.trunk.username is None else "rejected")
            self._trunk_gave_up(call, 503, FAILED, "trunk_auth_failed", side="pbx")
            return
        previous = leg.invite
        leg.dialog.local_cseq += 1
        kept = [(name, value) for name, value in previous.headers
                if name not in ("via", "cseq", "authorization", "proxy-authorization", "content-length")]
        invite = make_request("INVITE", previous.uri, [
            ("via", self._via(leg.dest.transport)), ("cseq", f"{leg.dialog.local_cseq} INVITE"), *kept, answer,
        ], previous.body)
        key = self.endpoint.send_request(invite, leg.dest, self._now())
        leg.invite, leg.key = invite, key
        leg.state, leg.status, leg.ended_at = LegState.CALLING, None, None
        self.legs_by_key[key] = (call, leg)
        self._arm_trunk_silence(call, leg)

    def _trunk_silent(self, call: Call, leg: Leg) -> None:
        """``invite_timeout`` passed with nothing at all from the gateway."""
        dialling = call.outbound
        if dialling is None or dialling.silence_timer is None:
            return
        dialling.silence_timer = None
        if call.state is not CallState.RINGING or leg is not self._current_trunk_leg(call) or \
                leg.state is not LegState.CALLING:
            return
        leg.state, leg.status, leg.ended_at = LegState.FAILED, 408, time.time()
        # Keep the transaction: if the gateway wakes up, its 1xx brings the
        # CANCEL out and a 2xx gets ACK and BYE (_on_trunk_response).
        self.endpoint.cancel(leg.key, self._now())
        self._trunk_next_gateway(call, "timeout")
        self.kick()

    def _on_trunk_leg_lost(self, call: Call, leg: Leg) -> None:
        """The INVITE transaction ended without a final response (timer B)
        or could not be sent (transport failure)."""
        if leg is not self._current_trunk_leg(call) or not leg.live:
            return
        self._disarm_trunk_silence(call)
        leg.state, leg.status, leg.ended_at = LegState.FAILED, 408, time.time()
        if call.state is CallState.RINGING:
            self._trunk_next_gateway(call, "no_response")

    def _trunk_next_gateway(self, call: Call, why: str) -> None:
        dialling = call.outbound
        assert dialling is not None
        failed = dialling.gateway
        following = dialling.next_gateway(why)
        log.warning("trunk_gateway_failed", call_id=call.a_call_id, trunk=dialling.trunk.key,
                    gateway=f"{failed.transport}:{failed.host}:{failed.port}", reason=why,
                    next=None if following is None else f"{following.transport}:{following.host}:{following.port}")
        if following is None:
            self._trunk_gave_up(call, 503, CONGESTION, "trunk_unavailable", side="pbx")
            return
        self._trunk_invite(call)

    def _caller_never_acked(self, key: TransactionKey) -> None:
        """The caller's INVITE transaction gave up retransmitting our 2xx
        without an ACK (§13.3.1.4): the session is ended with BYE, and a BYE
        that waited for that ACK goes now."""
        for dialog_key, (held, headers) in list(self.byes_after_ack.items()):
            if held.a_key == key:
                del self.byes_after_ack[dialog_key]
                self._send_bye_to(held, "a", headers, wait_for_ack=False)
        call = self.calls_by_a_key.get(key)
        if call is not None and call.state is CallState.ANSWERED and not call.a_acked:
            self._end_by_pbx(call, "no_ack", caller_gone=True)

    # ------------------------------------------------------------ group short numbers (pbx.routing.short_numbers)

    def _ring_member(self, call: Call, decision: RingMember) -> None:
        """Ring a short-number group member: the registered contacts of
        their extension and/or a leg through the trunk to their mobile,
        together, or the desk first and the mobile joining after
        ``desk_seconds`` (nothing on the desk is cancelled when it joins).
        The first 2xx wins and the other legs get CANCEL, as in any fork.

        The desk leg shows the caller's short number (From user and display
        name), so an in-group call looks like one and can be called back
        by it; the mobile leg presents the caller ID the trunk would present
        for the caller, since providers accept only the company's own numbers.
        An unregistered extension leaves the mobile ringing alone, at once.
        """
        member = call.member
        assert member is not None
        contacts: list[Binding] = []
        if decision.extension is not None:
            call.destination = decision.extension.number
            contacts = self.bindings.current(decision.extension.number, time.time())
            if contacts:
                self._invite_contacts(call, decision.extension, contacts, self._member_from_uri(call, decision))
        if not contacts and decision.mobile is None:
            self._fail(call, 480, UNAVAILABLE, "not_registered", side="pbx")
            return
        call.state = CallState.RINGING
        wait = float(decision.desk_seconds) if contacts and decision.order == "desk_first" else 0.0
        ring_timeout = decision.extension.ring_timeout if decision.extension is not None else TRUNK_RING_TIMEOUT
        call.timers.append(self.scheduler.call_later(wait + ring_timeout, lambda: self._ring_timeout(call)))
        log.info("member_ringing", call_id=call.a_call_id, uuid=call.uuid, group=decision.group,
                 member=decision.member.short, desk_contacts=len(contacts),
                 mobile=decision.mobile.number if decision.mobile is not None else None,
                 mobile_after=wait if decision.mobile is not None else None, presented=decision.presented_number)
        if decision.mobile is None:
            return
        if wait:
            call.timers.append(self.scheduler.call_later(wait, lambda: self._member_mobile_due(call)))
            return
        self._start_member_mobile(call, member)
        if not any(leg.live for leg in call.legs):
            self._member_legs_failed(call, member)

    def _member_from_uri(self, call: Call, decision: RingMember) -> str:
        short = decision.presented_number
        name = call.caller_name
        display = f"{short} {name}" if name else short
        return f'"{_quote(display)}" <sip:{short}@{self.plan.domain}>'

    def _member_mobile_due(self, call: Call) -> None:
        """``desk_seconds`` passed and the desk has not answered: the mobile
        joins the ringing desk."""
        member = call.member
        if call.state is not CallState.RINGING or member is None or not member.mobile_pending:
            return
        log.info("member_mobile_joins", call_id=call.a_call_id, uuid=call.uuid,
                 after=member.decision.desk_seconds)
        self._start_member_mobile(call, member)
        if not any(leg.live for leg in call.legs):
            self._member_legs_failed(call, member)
        self.kick()

    def _start_member_mobile(self, call: Call, member: MemberCall) -> None:
        """Place the mobile leg through its trunk, with failover and the
        provider's challenges handled as for any trunk call."""
        leg = member.decision.mobile
        assert leg is not None
        member.mobile_started = True
        trunk = self.plan.trunks.get(leg.trunk)
        if trunk is None:  # the plan changed under the call
            log.error("trunk_missing", call_id=call.a_call_id, trunk=leg.trunk)
            member.mobile_status = 503
            return
        # Routing names the caller ID (the caller's, or for a DID given to a
        # member, the member's); an outside caller's own number is not ours
        # to present through the provider.
        caller_id = leg.caller_id or trunk.caller_id or call.caller_number
        call.outbound = TrunkDialling(trunk=trunk, number=leg.number, caller_id=caller_id)
        if call.destination is None:
            call.destination = leg.number
        self._trunk_invite(call)

    def _trunk_gave_up(self, call: Call, status: int, disposition: str, reason: str, *, side: str) -> None:
        """A trunk call's way out failed for good (every gateway, the
        credentials, or the called party said no). A plain trunk call ends;
        a member call goes on with its desk legs if any still ring."""
        member = call.member
        if member is None:
            self._fail(call, status, disposition, reason, side=side)
            return
        member.mobile_status = status
        log.info("member_mobile_failed", call_id=call.a_call_id, uuid=call.uuid, status=status, reason=reason)
        if call.state is CallState.RINGING and not any(leg.live for leg in call.legs):
            self._member_legs_failed(call, member)

    def _member_legs_failed(self, call: Call, member: MemberCall) -> None:
        """No leg of a member call rings any more. A desk-first mobile that
        was still waiting rings now (unless the desk declined: a 6xx is
        final everywhere, RFC 3261 §21.6); otherwise the call ends with the
        most telling outcome of all its legs."""
        if call.state is not CallState.RINGING:
            return
        desk = [leg.status for leg in call.legs if leg.trunk is None and leg.status is not None]
        if member.mobile_pending and not any(status >= 600 for status in desk):
            log.info("member_mobile_joins", call_id=call.a_call_id, uuid=call.uuid, after="desk_failed")
            self._start_member_mobile(call, member)
            if any(leg.live for leg in call.legs):
                return
        statuses = desk + ([member.mobile_status] if member.mobile_status is not None else [])
        if any(status >= 600 for status in statuses):
            self._fail(call, 603, REJECTED, "declined", side="callee")
        elif 486 in statuses:
            self._fail(call, 486, BUSY, "busy", side="callee")
        elif statuses and all(status in (408, 480, 487) for status in statuses):
            self._fail(call, 480, NO_ANSWER, "no_answer", side="callee")
        else:
            # Gateways down, a number the provider refused ...: the person
            # cannot be reached now, which is what 480 tells the caller.
            self._fail(call, 480, UNAVAILABLE, "member_unreachable", side="callee")

    def _member_answered(self, call: Call, member: MemberCall, leg: Leg) -> None:
        """Record which of the member's numbers took the call."""
        decision = member.decision
        if leg.trunk is not None and decision.mobile is not None:
            call.resolved_number = decision.member.mobile
            call.destination = decision.mobile.number
            call.call_class = decision.mobile.call_class
        elif decision.extension is not None:
            call.resolved_number = decision.extension.number
            call.destination = decision.extension.number
        log.info("member_answered", call_id=call.a_call_id, uuid=call.uuid, group=decision.group,
                 member=decision.member.short, by="mobile" if leg.trunk is not None else "desk")

    # ------------------------------------------------------------ cleanup

    def _forget(self, call: Call) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        self.active -= 1
        self.calls_by_a_key.pop(call.a_key, None)
        self.dialogs.pop((call.a_call_id, call.a_dialog.local_tag), None)
        for leg in call.legs:
            self.legs_by_key.pop(leg.key, None)
            self.dialogs.pop((leg.dialog.call_id, leg.dialog.local_tag), None)
        for key in [k for k, v in self.relays.items() if v[0] is call]:
            del self.relays[key]
        for ack_key in [k for k, v in self.pending_acks.items() if v[0] is call]:
            del self.pending_acks[ack_key]


def _quoted_text(text: str) -> str:
    """``text`` made safe inside a SIP quoted-string (RFC 3261 §25.1): no
    control characters, quotes and backslashes escaped, bounded length."""
    printable = "".join(char if char >= " " and char != "\x7f" else " " for char in text)[:300]
    return printable.replace("\\", "\\\\").replace('"', '\\"')


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _caller_uri(call: Call, domain: str) -> str:
    """From of a leg towards an extension: who is calling, as shown."""
    name = call.caller_name
    display = f'"{_quote(name)}" ' if name else ""
    return f"{display}<sip:{call.caller_number}@{domain}>"
