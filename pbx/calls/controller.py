"""The call layer's front door: new calls in, session events out to their
call, and one timer for every call.

:class:`CallController` authenticates a new INVITE (a 407 challenge first,
§22.3: the caller is the authenticated extension, never the From header;
a trunk's gateway is trusted by source address instead), makes the
caller's :class:`pbx.sip.session.InviteSession`, asks routing, and hands
the call to its coordinator (:class:`pbx.calls.call.Call`). Afterwards it
only routes: each message and transaction outcome to its session (by
transaction key, or by dialog: Call-ID and our tag), the session's events
to its call. It keeps one index of each kind, cleared in one place.

Timers: every call reports ``deadline()``; the controller keeps them in one
heap and the driver arms a single timer at :meth:`next_deadline` (as for
the transaction layer). The time of day for routing and the CDR comes from
the injected ``wall_clock``; nothing here reads a clock.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Protocol

import structlog

from pbx.calls.budgets import BudgetLedger, Charge, refusal as budget_refusal
from pbx.calls.call import Call, CallState, MemberCall
from pbx.calls.dialer import CallDialer
from pbx.calls.fork import Dialer, TrunkTarget
from pbx.calls.limits import OutsideCallCounter, refusal as limit_refusal
from pbx.calls.plan import Action, Caller, Ring as RingTargets, plan_call
from pbx.calls.relay import Relay
from pbx.registrar.auth import AnswerUnlessSilent, Authenticated, Authenticator, Challenge, ChallengeSink
from pbx.registrar.bindings import BindingTable
from pbx.registrar.destination import remote_target
from pbx.routing.budgets import FREE_CLASSES, budgets_for, period_of
from pbx.routing.call_limits import limits_for
from pbx.routing.classes import EMERGENCY
from pbx.routing.dialplan import CallSettings, Dialplan, Extension
from pbx.routing.engine import CallRequest, Decision, Ring, RingMember, ToTrunk, decide
from pbx.sip import session_timer
from pbx.sip.address import Peer
from pbx.sip.dialog import new_tag
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
from pbx.sip.errors import SipError
from pbx.sip.message import Header, HeaderValueError, Request, Response, parse_name_addr
from pbx.sip.session import InviteSession, LocalAddress, SessionEvent, refusal
from pbx.sip.uri import SipUri, parse_uri
from pbx.trunks.sources import TrunkSources

log = structlog.get_logger("pbx.calls")

METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "UPDATE", "INFO", "PRACK", "NOTIFY", "REFER", "MESSAGE"})
LINGER = 32.0
"""Seconds a finished call's unsettled sessions stay reachable (64*T1): a
cancelled INVITE's crossing 2xx still gets ACK and BYE, a BYE held for an
ACK still goes."""


class CallRecorder(Protocol):
    """Where the controller reports calls (the CDR writer)."""

    def call_started(self, call: Call) -> None: ...

    def call_answered(self, call: Call) -> None: ...

    def call_alive(self, call: Call, at: float) -> None:
        """An in-dialog message at wall-clock ``at`` shows the answered call is up."""

    def call_ended(self, call: Call, on_durable: Callable[[], None]) -> None: ...


class _Wire:
    """Sessions' output into the endpoint, noting which session owns which
    client transaction."""

    def __init__(self, controller: CallController) -> None:
        self._controller = controller

    def send_request(self, session: InviteSession, request: Request, dest: Peer) -> TransactionKey:
        controller = self._controller
        key = controller.endpoint.send_request(request, dest, controller.now)
        owner = controller.owner
        if owner is not None:
            controller.by_key[key] = (owner, session)
        return key

    def send_response(self, key: TransactionKey, response: Response) -> None:
        self._controller.endpoint.send_response(key, response, self._controller.now)

    def send_ack(self, data: bytes, dest: Peer) -> None:
        self._controller.endpoint.send_raw(data, dest)

    def cancel(self, key: TransactionKey, headers: tuple[Header, ...]) -> None:
        self._controller.endpoint.cancel(key, self._controller.now, headers)


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
        local_address: LocalAddress,
        kick: Callable[[], None],
        monotonic: Callable[[], float],
        wall_clock: Callable[[], float],
        challenges: ChallengeSink | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.plan = plan
        self.auth = auth
        self.challenges: ChallengeSink = challenges or AnswerUnlessSilent()
        self.bindings = bindings
        self.recorder = recorder
        self.local_address = local_address
        self.kick = kick
        self.monotonic = monotonic
        self.wall = wall_clock
        self.now = 0.0
        self.wire = _Wire(self)
        self.relay = Relay(plan.calls)
        self.owner: Call | None = None
        """The call whose session is sending, for the key index."""
        # The two indexes: by dialog (Call-ID, our tag), by transaction key.
        self.sessions: dict[tuple[str, str], tuple[Call, InviteSession]] = {}
        self.by_key: dict[TransactionKey, tuple[Call, InviteSession]] = {}
        self._heap: list[tuple[float, int, Call]] = []
        self._due: dict[int, tuple[float, Call]] = {}
        """Each timed call's deadline, by id: the one heap entry that counts."""
        self._seq = itertools.count()
        self._lingering: dict[int, float] = {}
        self.active = 0
        self.trunk_sources = TrunkSources()
        """Which sources are trunk gateways; the trunk runtime replaces it."""
        self.outside_calls = OutsideCallCounter()
        """Each extension's outside calls, against its caps; kept across
        reloads (a new plan's caps apply to the next call)."""
        self.budgets = BudgetLedger()
        """Spend and reservations against budgets; the edge gives it a
        listener that keeps the store and sends alerts."""

    def use_plan(self, plan: Dialplan) -> None:
        self.plan = plan
        self.relay.settings = plan.calls

    @property
    def settings(self) -> CallSettings:
        """Session timers and maximum duration, from the dialplan in force."""
        return self.plan.calls

    def dialer(self, call: Call) -> Dialer:
        return CallDialer(self, call)

    # ------------------------------------------------------------ input

    def on_request(self, event: RequestReceived, now: float) -> None:
        self.now = now
        request = event.request
        method, to_tag = request.method, request.to.tag
        if method == "CANCEL":
            self._on_cancel(event)
        elif method == "INVITE" and to_tag is None:
            self._new_call(event)
        elif to_tag is None:
            self._respond(event, 481)
        else:
            found = self.sessions.get((request.call_id, to_tag))
            if found is None:
                self._respond(event, 481, to_tag)
                return
            call, session = found
            self._deliver(call, session, lambda: session.on_request(event.key, request))

    def on_event(self, event: object, now: float) -> None:
        self.now = now
        if isinstance(event, ResponseReceived):
            found = self.by_key.get(event.key)
            if found is not None:
                call, session = found
                self._deliver(call, session, lambda: session.on_response(event.key, event.response, now))
        elif isinstance(event, AckReceived):
            to_tag = event.request.to.tag
            found = self.sessions.get((event.request.call_id, to_tag)) if to_tag else None
            if found is not None:
                call, session = found
                self._deliver(call, session, lambda: session.on_ack(event.request))
        elif isinstance(event, StrayResponse):
            found = self.sessions.get((event.response.call_id, event.response.from_.tag or ""))
            if found is not None:
                call, session = found
                self._deliver(call, session, lambda: session.on_stray(event.response))
        elif isinstance(event, (TimedOut, TransportFailed)):
            found = self.by_key.get(event.key)
            if found is not None:
                call, session = found
                lost = session.on_timeout if isinstance(event, TimedOut) else session.on_transport_failed
                self._deliver(call, session, lambda: lost(event.key))

    def _deliver(self, call: Call, session: InviteSession, step: Callable[[], list[SessionEvent]]) -> None:
        """Run ``step`` on ``session`` and its events through ``call``."""
        def work() -> None:
            for event in step():
                call.on_event(session, event, self.now)

        self._on_behalf(call, work)

    def connections(self) -> set[int]:
        """The TCP connections calls in progress use."""
        return {session.dest.connection for _, session in self.sessions.values()
                if session.dest.connection is not None}

    def _on_behalf(self, call: Call, work: Callable[[], None]) -> None:
        """Run ``work`` for ``call``: the transactions it starts are indexed
        as the call's, and the call's timer is re-armed after."""
        previous, self.owner = self.owner, call
        try:
            work()
        finally:
            self.owner = previous
        self._reschedule(call)

    def _respond(self, event: RequestReceived, status: int, to_tag: str | None = None, *,
                 reason: str | None = None, headers: list[Header] | None = None) -> None:
        response = refusal(event.request, status, reason=reason, to_tag=to_tag, headers=headers or ())
        self.endpoint.send_response(event.key, response, self.now)

    def _on_cancel(self, event: RequestReceived) -> None:
        invite_key = self.endpoint.transactions.invite_key_for_cancel(event.request, event.source)
        found = self.by_key.get(invite_key) if invite_key is not None else None
        to_tag = event.request.to.tag
        if found is None and to_tag is not None:
            found = self.sessions.get((event.request.call_id, to_tag))
        if found is None or invite_key is None:
            self._respond(event, 481)  # §9.2: no matching transaction
            return
        call, session = found
        self._deliver(call, session, lambda: session.on_cancel(invite_key, event.key, event.request))

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
            self._respond(event, 400, reason="Bad From")
            return
        claimed = from_user.user if isinstance(from_user, SipUri) else None
        result = self.auth.authenticate(request, source.host, self.wall(), proxy=True, user=claimed,
                                        qop_optional="INVITE" in self.plan.security.digest_without_qop)
        if isinstance(result, Challenge):
            # Not from a trunk and not (yet) authenticated: nothing is
            # placed, least of all towards a trunk (no open relay).
            if not self.challenges.answer(result, source, "INVITE"):
                self.endpoint.discard(event.key)
                return
            dialled = _dialled(request)
            external = self.plan.extension(dialled) is None
            if external or result.reason != "no_credentials":
                # Not the routine first INVITE of an internal call: a probe
                # for a way out, or credentials that did not do.
                log.info("call_challenged", source=str(source), dialled=dialled, reason=result.reason,
                         external=external)
            # Statelessly (one 407, never retransmitted): a forged source
            # address must not make the PBX a traffic reflector.
            self.endpoint.answer_statelessly(event.key, refusal(
                request, 407, to_tag=None, headers=[("proxy-authenticate", v) for v in result.header_values]))
            return
        assert isinstance(result, Authenticated)
        caller = result.extension
        too_short = session_timer.interval_refusal(request, self.settings.min_se)
        if too_short is not None:
            self._respond(event, 422, headers=too_short)  # RFC 4028 §8.1
            return
        dialled = _dialled(request)
        call = self._open_call(event, dialled, caller=caller)
        self._route(call, CallRequest(caller=caller, dialled=dialled, at=self._at(), caller_number=caller.number))

    def _new_trunk_call(self, event: RequestReceived, trunk_key: str) -> None:
        """An INVITE from a trunk's gateway: the provider authenticated the
        caller, so no 407; the DID decides where it goes, and nothing from a
        trunk ever goes out through a trunk again."""
        request, source = event.request, event.source
        trunk = self.plan.trunks.get(trunk_key)
        if trunk is None:  # the plan changed under the source table: refuse
            log.warning("trunk_call_refused", source=str(source), trunk=trunk_key, reason="unknown_trunk")
            self._respond(event, 403)
            return
        try:
            from_ = request.from_
            from_uri = parse_uri(from_.uri)
        except Exception:
            self._respond(event, 400, reason="Bad From")
            return
        presented = (from_uri.user or "") if isinstance(from_uri, SipUri) else from_uri.number
        dialled = _trunk_did(request, trunk.username)
        call = self._open_call(event, dialled, caller=None, trunk=trunk_key, presented_number=presented,
                               presented_name=from_.display or None)
        self._route(call, CallRequest(caller=None, trunk=trunk_key, dialled=dialled, caller_number=presented,
                                      at=self._at()))

    def _at(self) -> datetime:
        return datetime.fromtimestamp(self.wall(), timezone.utc)

    def _open_call(self, event: RequestReceived, dialled: str, *, caller: Extension | None,
                   trunk: str | None = None, presented_number: str = "", presented_name: str | None = None) -> Call:
        """A new call for the INVITE in ``event``, known from now on (its A
        dialog answers in-dialog requests and CANCEL)."""
        dest = None
        if caller is not None:
            # §12.1.1: requests to the caller go to its Contact, or to where
            # it sent from when NAT is seen (pbx/registrar/destination.py).
            contact = event.request.get("contact")
            if contact is not None:
                try:
                    dest = remote_target(parse_name_addr(contact).uri, event.source, caller.nat).peer
                except (HeaderValueError, SipError):
                    dest = None
        a = InviteSession.uas(request=event.request, key=event.key, source=event.source, local_tag=new_tag(),
                              wire=self.wire, local=self.local_address, dest=dest)
        call = Call(caller=caller, dialled=dialled, a=a, started_at=self.wall(), controller=self, trunk=trunk,
                    presented_number=presented_number, presented_name=presented_name)
        self.sessions[a.dialog_id] = (call, a)
        self.by_key[event.key] = (call, a)
        self.active += 1
        return call

    def _route(self, call: Call, request: CallRequest) -> None:
        decision = decide(request, self.plan)
        call.rule, call.call_class = decision.rule, decision.call_class
        if isinstance(decision, RingMember):
            # Known before the CDR row starts, so it records them.
            call.member = MemberCall(decision=decision)
            call.resolved_number = decision.resolved_number
        log.info("call_routed", call_id=call.a_call_id, uuid=call.uuid, caller=call.caller_number,
                 dialled=call.dialled, trunk=call.trunk, decision=type(decision).__name__, rule=decision.rule,
                 call_class=decision.call_class, steps=[f"{step.rule}: {step.outcome}" for step in decision.steps])
        self.recorder.call_started(call)
        if isinstance(decision, Ring):
            call.destination = decision.extension.number
        wall = self.wall()
        caller = Caller(number=call.caller_number, name=call.caller_name, extension=call.caller,
                        from_trunk=call.trunk)
        action = plan_call(decision, caller, self.plan, lambda number: self.bindings.current(number, wall),
                           call.a_call_id)
        if call.caller is not None and isinstance(action, RingTargets):
            action = self._within_limits(call, call.caller, action)
        if call.caller is not None and isinstance(action, RingTargets):
            action = self._within_budget(call, call.caller, action, decision)
        self._on_behalf(call, lambda: call.run(action, self.now))

    def _within_limits(self, call: Call, caller: Extension, action: RingTargets) -> Action:
        """Hold one of ``caller``'s outside-call slots for ``call`` if it
        places a leg through a trunk. Over a cap, the call is refused; a
        group member's desk still rings without the mobile leg. Calls from
        trunks and internal calls are never counted, emergency calls never
        refused."""
        if call.call_class == EMERGENCY or not any(isinstance(t, TrunkTarget) for t in action.targets):
            return action
        hit = self.outside_calls.admit(caller.number, call.uuid, limits_for(self.plan, caller), self.now)
        if hit is None:
            return action
        desk = tuple(target for target in action.targets if not isinstance(target, TrunkTarget))
        log.warning("call_limit_hit", call_id=call.a_call_id, uuid=call.uuid, extension=caller.number,
                    limit=hit.limit, value=hit.value, current=hit.current, rule=hit.rule,
                    retry_after=hit.retry_after, call_class=call.call_class,
                    outcome="trunk_legs_dropped" if desk else "refused")
        if desk:
            # The desk rings alone, for its own ring time: a desk-first
            # mobile's delay had been added to it.
            delay = max(target.after for target in action.targets if isinstance(target, TrunkTarget))
            return replace(action, targets=desk, ring_timeout=action.ring_timeout - delay)
        return limit_refusal(hit, self.plan.domain)

    def _within_budget(self, call: Call, caller: Extension, action: RingTargets, decision: Decision) -> Action:
        """Price ``call``'s trunk leg, and hold the cost of
        ``reserve_seconds`` of it against each of ``caller``'s budgets. A
        paid call without room is refused before anything is placed (a
        group member's desk still rings without the mobile); emergency and
        free-phone calls always go through."""
        leg = next((target for target in action.targets if isinstance(target, TrunkTarget)), None)
        if leg is None:
            return action
        priced: ToTrunk | None = decision.mobile if isinstance(decision, RingMember) else (
            decision if isinstance(decision, ToTrunk) else None)
        call_class = priced.call_class if priced is not None else call.call_class
        number = (priced.e164 if priced is not None else None) or leg.dialling.number
        call.rate = rate = self.plan.billing.rate_for(leg.dialling.trunk.key, call_class, number)
        if rate is None or rate.tariff.free or call_class in FREE_CLASSES:
            return action
        settings = self.plan.budgets
        budgets = budgets_for(self.plan, caller)
        if not budgets:
            return action
        started = datetime.fromtimestamp(call.started_at, timezone.utc)
        period = period_of(started, settings.period, self.plan.timezone).label
        charges = tuple(Charge(budget=b, period=period, warn_level=settings.warn_level(b)) for b in budgets)
        hit = self.budgets.admit(call.uuid, charges, rate.tariff.cost(settings.reserve_seconds))
        if hit is None:
            return action
        desk = tuple(target for target in action.targets if not isinstance(target, TrunkTarget))
        log.warning("budget_exhausted", call_id=call.a_call_id, uuid=call.uuid, extension=caller.number,
                    budget=hit.budget.key, rule=hit.budget.rule, period=hit.period, limit=hit.budget.limit,
                    spent=hit.spent, reserved=hit.reserved, needed=hit.needed, tariff=rate.tariff.id,
                    call_class=call_class, outcome="trunk_legs_dropped" if desk else "refused")
        if desk:
            delay = max(target.after for target in action.targets if isinstance(target, TrunkTarget))
            return replace(action, targets=desk, ring_timeout=action.ring_timeout - delay)
        # Announcement seam: once calls have local media (issue 9), play the
        # "budget exhausted" prompt here before this refusal.
        return budget_refusal(hit, self.plan.domain, rate.money(hit.spent + hit.reserved),
                              rate.money(hit.budget.limit))

    # ------------------------------------------------------------ time

    def _reschedule(self, call: Call) -> None:
        """Keep ``call``'s one heap entry at its deadline. Entries a change
        superseded are skipped when they surface (lazy deletion) and the heap
        is rebuilt when they dominate: a call's maximum-duration entry may be
        hours away, and must not keep a finished call alive till then."""
        due = call.deadline() if call.state is not CallState.ENDED else self._lingering.get(id(call))
        if due is None:
            self._due.pop(id(call), None)
            return
        current = self._due.get(id(call))
        if current is not None and current[0] == due:
            return
        self._due[id(call)] = (due, call)
        heap = self._heap
        heapq.heappush(heap, (due, next(self._seq), call))
        if len(heap) > 2 * len(self._due) + 64:
            heap[:] = [(when, next(self._seq), owner) for when, owner in self._due.values()]
            heapq.heapify(heap)

    def _current(self, due: float, call: Call) -> bool:
        entry = self._due.get(id(call))
        return entry is not None and entry[0] == due and entry[1] is call

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and not self._current(heap[0][0], heap[0][2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def on_timer(self, now: float) -> None:
        self.now = now
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, call = heapq.heappop(heap)
            if not self._current(due, call):
                continue
            del self._due[id(call)]
            if call.state is CallState.ENDED:
                self._drop(call)
                continue
            self._on_behalf(call, lambda: call.on_timer(now))

    # ------------------------------------------------------------ cleanup

    def forget(self, call: Call) -> None:
        """The call is over and its CDR durable. Sessions with nothing left
        to do leave the indexes now; the others linger for a while."""
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        self.active -= 1
        sessions = [call.a, *(leg.session for leg in call.legs)]
        if all(session.settled for session in sessions):
            self._drop(call)
        else:
            self._lingering[id(call)] = self.now + LINGER
            self._due.pop(id(call), None)
            self._reschedule(call)
        self.kick()

    def _drop(self, call: Call) -> None:
        self._lingering.pop(id(call), None)
        self._due.pop(id(call), None)
        if call.fork is not None:
            call.fork.release()
        for session in (call.a, *(leg.session for leg in call.legs)):
            self.sessions.pop(session.dialog_id, None)
            for key in session.keys:
                self.by_key.pop(key, None)


def _dialled(request: Request) -> str:
    try:
        uri = parse_uri(request.uri)
    except Exception:
        return ""
    if isinstance(uri, SipUri):
        return uri.user or ""
    return uri.number


def _trunk_did(request: Request, username: str | None) -> str:
    """The number a trunk call was made to. Providers put the DID in the
    Request-URI, except when they send to the Contact our registration
    left, whose user is the trunk username: then the DID is in To."""
    dialled = _dialled(request)
    if dialled and dialled != username:
        return dialled
    try:
        to_uri = parse_uri(request.to.uri)
    except Exception:
        return dialled
    if isinstance(to_uri, SipUri):
        return to_uri.user or dialled
    return to_uri.number
