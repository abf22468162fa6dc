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
    FAILED,
    NO_ANSWER,
    REJECTED,
    UNAVAILABLE,
    Call,
    CallState,
    Leg,
    LegState,
)
from pbx.registrar.auth import Authenticated, Authenticator, Challenge
from pbx.registrar.bindings import BindingTable
from pbx.routing.dialplan import Dialplan
from pbx.routing.engine import CallRequest, Reject, Ring, ToTrunk, decide
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
from pbx.sip.message import Header, Request, Response, make_response, parse_name_addr
from pbx.sip.uri import SipUri, parse_uri

log = structlog.get_logger("pbx.calls")

METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "UPDATE", "INFO", "PRACK", "NOTIFY", "REFER", "MESSAGE"})
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, REGISTER"
RELAYED_IN_DIALOG = frozenset({"INVITE", "UPDATE", "INFO", "NOTIFY", "MESSAGE"})
# Headers carried from one leg's request/response to the other's.
CARRIED = ("content-type", "content-disposition", "content-encoding", "content-language")


class CallRecorder(Protocol):
    """Where the controller reports calls (the CDR writer)."""

    def call_started(self, call: Call) -> None: ...

    def call_answered(self, call: Call) -> None: ...

    def call_ended(self, call: Call, on_durable: Callable[[], None]) -> None: ...


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[[], None]) -> Any: ...


LocalAddress = Callable[[str], tuple[str, int]]
"""transport name -> (host, port) the PBX is reached at, for Via/Contact."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSettings:
    max_call_seconds: float = 4 * 3600.0
    """Hard limit on an answered call, so a lost BYE cannot leave a call (and
    its CDR) open for ever. RFC 4028 session timers are not yet negotiated."""


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
        settings: CallSettings = CallSettings(),
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
        self.settings = settings
        self.calls_by_a_key: dict[TransactionKey, Call] = {}
        self.legs_by_key: dict[TransactionKey, tuple[Call, Leg]] = {}
        # (Call-ID, our tag) -> (call, "a" | "b")
        self.dialogs: dict[tuple[str, str], tuple[Call, str]] = {}
        # client transaction of a relayed request -> (call, server key it answers, method)
        self.relays: dict[TransactionKey, tuple[Call, TransactionKey, str, Request]] = {}
        # A's re-INVITE 2xx awaiting A's ACK -> CSeq of B's re-INVITE to ACK
        self.pending_acks: dict[tuple[str, int], tuple[Call, str, int]] = {}
        self.active = 0

    def use_plan(self, plan: Dialplan) -> None:
        self.plan = plan

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
            headers = [("proxy-authenticate", v) for v in result.header_values]
            self._respond(event.key, request, 407, to_tag=new_tag(), headers=headers)
            return
        assert isinstance(result, Authenticated)
        caller = result.extension
        dialled = self._dialled(request)
        a_tag = new_tag()
        call = Call(
            caller=caller,
            dialled=dialled,
            a_request=request,
            a_source=source,
            a_key=event.key,
            a_dialog=Dialog.as_uas(request, a_tag),
            started_at=time.time(),
        )
        self.calls_by_a_key[event.key] = call
        self.dialogs[(request.call_id, a_tag)] = (call, "a")
        self.active += 1
        decision = decide(CallRequest(caller=caller, dialled=dialled, at=datetime.now(timezone.utc),
                                      caller_number=caller.number), self.plan)
        call.rule = decision.rule
        log.info("call_routed", call_id=call.a_call_id, uuid=call.uuid, caller=caller.number, dialled=dialled,
                 decision=type(decision).__name__, rule=decision.rule)
        self.recorder.call_started(call)
        match decision:
            case Ring():
                self._ring(call, decision)
            case ToTrunk():
                # Placing calls through trunks is being built (pbx.trunks);
                # until then say so rather than pretend.
                self._fail(call, 503, FAILED, "trunk_not_available", side="pbx")
            case Reject():
                self._fail(call, decision.status, REJECTED, decision.reason, side="pbx")
            case _:
                assert_never(decision)

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
        request = call.a_request
        caller = call.caller
        body = request.body
        carried = [(name, value) for name, value in request.headers if name in CARRIED]
        max_forwards = max(0, int(request.get("max-forwards") or "70") - 1)
        for binding in contacts:
            transport = binding.source.transport
            b_dialog = Dialog(
                call_id=f"{call.uuid}-{len(call.legs)}",
                local_tag=new_tag(),
                remote_tag=None,
                local_uri=f'"{_quote(caller.name)}" <sip:{caller.number}@{self.plan.domain}>',
                remote_uri=f"<sip:{extension.number}@{self.plan.domain}>",
                remote_target=binding.contact,
            )
            invite = b_dialog.request(
                "INVITE",
                via=self._via(transport),
                contact=self._contact(transport),
                headers=[("allow", ALLOW), *carried],
                body=body,
                max_forwards=max_forwards,
            )
            key = self.endpoint.send_request(invite, binding.source, self._now())
            leg = Leg(contact=binding.contact, dest=binding.source, invite=invite, key=key, dialog=b_dialog,
                      started_at=time.time())
            call.legs.append(leg)
            self.legs_by_key[key] = (call, leg)
            self.dialogs[(b_dialog.call_id, b_dialog.local_tag)] = (call, "b")
        call.state = CallState.RINGING
        call.timers.append(self.scheduler.call_later(extension.ring_timeout, lambda: self._ring_timeout(call)))

    # ------------------------------------------------------------ B responses

    def _on_response(self, response: Response, key: TransactionKey) -> None:
        relay = self.relays.pop(key, None) if response.status >= 200 else self.relays.get(key)
        if relay is not None:
            self._relay_response(relay, response)
            return
        found = self.legs_by_key.get(key)
        if found is None:
            return  # response to a CANCEL or BYE we sent: nothing to do
        call, leg = found
        status = response.status
        if status < 200:
            if status > 100 and leg.live:
                leg.state = LegState.EARLY
                if call.state is CallState.RINGING:
                    self._relay_provisional(call, response)
            return
        if 200 <= status < 300:
            self._on_leg_answered(call, leg, response)
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
            self._ack_leg(leg, response)  # a retransmitted 2xx: ACK again
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
        transport = call.a_source.transport
        self._respond(call.a_key, call.a_request, 200, to_tag=call.a_dialog.local_tag,
                      headers=[("contact", self._contact(transport)), ("allow", ALLOW), *carried],
                      body=response.body)
        self.recorder.call_answered(call)
        log.info("call_answered", call_id=call.a_call_id, uuid=call.uuid, contact=leg.contact)
        call.timers.append(self.scheduler.call_later(self.settings.max_call_seconds, lambda: self._max_duration(call)))

    def _ack_leg(self, leg: Leg, response: Response | None, body: bytes = b"", headers: list[Header] | None = None) -> None:
        ack = leg.dialog.request(
            "ACK", via=self._via(leg.dest.transport), contact=None, cseq=leg.invite.cseq.number,
            headers=headers or [], body=body,
        )
        leg.acked = True
        self.endpoint.send_raw(ack.encode(), leg.dest)

    def _cancel_leg(self, leg: Leg) -> None:
        leg.state = LegState.CANCELLED
        # The layer holds the CANCEL back until a 1xx has arrived (§9.1).
        self.endpoint.cancel(leg.key, self._now())

    def _all_legs_failed(self, call: Call) -> None:
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

    # ------------------------------------------------------------ in dialog

    def _in_dialog(self, event: RequestReceived, to_tag: str) -> None:
        request = event.request
        found = self.dialogs.get((request.call_id, to_tag))
        if found is None:
            self._respond(event.key, request, 481, to_tag=to_tag)
            return
        call, side = found
        if request.method == "BYE":
            self._on_bye(call, side, event)
            return
        other = self._other_leg(call, side)
        if other is None or call.state is not CallState.ANSWERED:
            # e.g. UPDATE during early dialog: not relayed (we do not keep
            # early dialogs on both sides yet).
            self._respond(event.key, request, 491 if request.method in ("INVITE", "UPDATE") else 481, to_tag=to_tag)
            return
        dialog, dest = other
        carried = [(n, v) for n, v in request.headers if n in CARRIED or n in ("event", "subscription-state", "session-expires")]
        transport = dest.transport
        relayed = dialog.request(
            request.method, via=self._via(transport),
            contact=self._contact(transport) if request.method in ("INVITE", "UPDATE", "NOTIFY") else None,
            headers=carried, body=request.body,
        )
        key = self.endpoint.send_request(relayed, dest, self._now())
        self.relays[key] = (call, event.key, side, request)
        call_side = "a" if side == "a" else "b"
        if request.method == "INVITE":
            self._remember_request(call, call_side, event, relayed)

    def _remember_request(self, call: Call, side: str, event: RequestReceived, relayed: Request) -> None:
        # The ACK for this re-INVITE's 2xx arrives later as an AckReceived;
        # remember which request on the other leg it must acknowledge.
        self.pending_acks[(event.request.call_id, event.request.cseq.number)] = (
            call, side, relayed.cseq.number)

    def _relay_response(self, relay: tuple[Call, TransactionKey, str, Request], response: Response) -> None:
        call, server_key, side, origin = relay
        dialog = call.a_dialog if side == "a" else (call.winner.dialog if call.winner else None)
        if dialog is None:
            return
        carried = [(n, v) for n, v in response.headers if n in CARRIED or n == "session-expires"]
        transport = call.a_source.transport if side == "a" else (call.winner.dest.transport if call.winner else "udp")
        headers: list[Header] = [*carried]
        if origin.method in ("INVITE", "UPDATE") and 200 <= response.status < 300:
            headers.insert(0, ("contact", self._contact(transport)))
        self._respond(server_key, origin, response.status, reason=response.reason, to_tag=dialog.local_tag,
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
        found = self.dialogs.get((request.call_id, to_tag))
        if found is None:
            return  # ACK after the call ended (e.g. crossed a BYE): ignore
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
            return
        _, origin_side, other_cseq = entry
        other = self._other_leg(call, origin_side)
        if other is None:
            return
        dialog, dest = other
        carried = [(n, v) for n, v in request.headers if n in CARRIED]
        ack = dialog.request("ACK", via=self._via(dest.transport), contact=None, cseq=other_cseq,
                             headers=carried, body=request.body)
        self.endpoint.send_raw(ack.encode(), dest)

    def _on_stray(self, response: Response) -> None:
        """A 2xx retransmitted after its transaction ended: ACK it again."""
        if response.cseq.method != "INVITE" or not 200 <= response.status < 300:
            return
        found = self.dialogs.get((response.call_id, response.from_.tag or ""))
        if found is None:
            return
        call, side = found
        if side == "b":
            for leg in call.legs:
                if leg.dialog.call_id == response.call_id and leg.state is LegState.ANSWERED:
                    if leg.acked or call.a_request.body:
                        self._ack_leg(leg, response)

    # ------------------------------------------------------------ BYE

    def _on_bye(self, call: Call, side: str, event: RequestReceived) -> None:
        dialog_tag = call.a_dialog.local_tag if side == "a" else (call.winner.dialog.local_tag if call.winner else "")
        if call.state in (CallState.ENDING, CallState.ENDED):
            self._respond(event.key, event.request, 200, to_tag=dialog_tag)
            return
        if call.state is not CallState.ANSWERED:
            # BYE from the callee's early dialog, or caller before answer:
            # treat as a failure of that leg / a cancel.
            self._respond(event.key, event.request, 200, to_tag=dialog_tag)
            return
        call.cancel_timers()
        call.state = CallState.ENDING
        call.disposition = ANSWERED
        call.hangup_side = "caller" if side == "a" else "callee"
        call.hangup_status = 200
        call.reason = "bye"
        call.ended_at = time.time()
        other = self._other_leg(call, side)
        if other is not None:
            dialog, dest = other
            bye = dialog.request("BYE", via=self._via(dest.transport), contact=None)
            self.endpoint.send_request(bye, dest, self._now())
        key, request = event.key, event.request

        def send_ok() -> None:
            self._respond(key, request, 200, to_tag=dialog_tag)
            self._forget(call)
            self.kick()

        log.info("call_ended", call_id=call.a_call_id, uuid=call.uuid, side=call.hangup_side)
        self.recorder.call_ended(call, send_ok)

    def _send_bye(self, call: Call, leg: Leg) -> None:
        bye = leg.dialog.request("BYE", via=self._via(leg.dest.transport), contact=None)
        self.endpoint.send_request(bye, leg.dest, self._now())

    def _max_duration(self, call: Call) -> None:
        if call.state is not CallState.ANSWERED:
            return
        call.state = CallState.ENDING
        call.disposition, call.hangup_side, call.hangup_status, call.reason = ANSWERED, "pbx", 200, "max_duration"
        call.ended_at = time.time()
        bye_a = call.a_dialog.request("BYE", via=self._via(call.a_source.transport), contact=None)
        self.endpoint.send_request(bye_a, call.a_source, self._now())
        if call.winner is not None:
            self._send_bye(call, call.winner)
        log.warning("call_max_duration", call_id=call.a_call_id, uuid=call.uuid)

        def done() -> None:
            self._forget(call)
            self.kick()

        self.recorder.call_ended(call, done)
        self.kick()

    # ------------------------------------------------------------ timeouts

    def _on_timeout(self, key: TransactionKey) -> None:
        found = self.legs_by_key.pop(key, None)
        relay = self.relays.pop(key, None)
        if relay is not None:
            call, server_key, side, origin = relay
            tag = call.a_dialog.local_tag if side == "a" else (call.winner.dialog.local_tag if call.winner else None)
            self._respond(server_key, origin, 408, to_tag=tag)
            return
        if found is None:
            return
        call, leg = found
        if leg.live:
            leg.state = LegState.FAILED
            leg.status = 408
            leg.ended_at = time.time()
        if call.state is CallState.RINGING and not any(l.live for l in call.legs):
            self._all_legs_failed(call)

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


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
