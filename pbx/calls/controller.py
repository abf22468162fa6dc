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
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Protocol

import structlog

from pbx.calls.budgets import (BudgetHit, BudgetLedger, Charge, OutsideSlot, SharedHold, SharedReservations,
                               refusal as budget_refusal, transfer_hold)
from pbx.calls.call import Call, CallState, MemberCall
from pbx.calls.codes import AccountCodes, CodeChecker
from pbx.calls import conference, parking
from pbx.calls.parking import ParkingLot
from pbx.conference.pins import PinGate
from pbx.calls.dialer import CallDialer
from pbx.calls.fork import Dialer, TrunkTarget
from pbx.calls.hunt_queue import HuntQueues
from pbx.calls.hunt_state import HuntState
from pbx.calls.overload import OverloadGate
from pbx.calls.limits import LimitHit, OutsideCallCounter, refusal as limit_refusal
from pbx.calls.local import PHRASE_FOR_STATUS, LocalMedia
from pbx.calls.anchoring import BRIDGED_REFUSALS, Anchors
from pbx.calls.media_policy import check_offer
from pbx.calls.plan import (Action, AnswerConference, Caller, End, Hunting, LeaveMessage, OpenMailbox,
                            Ring as RingTargets, over_tls_only, plan_call, sips_not_allowed)
from pbx.calls.features import FeatureState, ForwardOnFail, forward_before_ringing
from pbx.calls.presence import Presence
from pbx.calls.pricing import member_rates, single_rate
from pbx.cdr.records import Disposition, HangupSide
from pbx.ivr.menu import MenuRun, Transfer
from pbx.calls.relay import Relay
from pbx.registrar.auth import AnswerUnlessSilent, Authenticated, Authenticator, Challenge, ChallengeSink
from pbx.registrar.bindings import Binding, BindingTable
from pbx.registrar.destination import first_hop, remote_target
from pbx.routing.account_codes import masked, split_prefixed
from pbx.routing.budgets import FREE_CLASSES, budgets_for, period_of
from pbx.routing.call_limits import limits_for
from pbx.routing.classes import EMERGENCY
from pbx.routing.dialplan import CallSettings, Dialplan, Extension
from pbx.routing.engine import (AgentCode, CallRequest, CodeRequired, Decision, Feature, Hunt, Reject, Ring,
                                RingMember, ToTrunk, decide, decide_menu_destination, menu_caller,
                                overflow_decision, queue_hunt)
from pbx.routing.hunt_groups import Condition, HuntGroup
from pbx.routing.ivr import HoursOverride, IvrMenu, entry_menu
from pbx.routing.tariffs import Rate
from pbx.routing.voicemail import MailboxSettings
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
MAX_OVERFLOWS = 5
"""Hunt group overflows one call may take (the loader refuses loops; this
bounds a plan built otherwise)."""
LINGER = 32.0
"""Seconds a finished call's unsettled sessions stay reachable (64*T1): a
cancelled INVITE's crossing 2xx still gets ACK and BYE, a BYE held for an
ACK still goes."""


VOICEMAIL_REASONS = frozenset({"busy", "do_not_disturb", "not_registered"})
"""Refusals of a call to an extension before it rings that its mailbox takes instead."""


class Mailboxes(Protocol):
    """Where messages left in calls go (:class:`pbx.voicemail.service.VoicemailService`)."""

    def deposit(self, *, mailbox: str, audio: bytes, caller_number: str, caller_name: str | None,
                call_uuid: str) -> None: ...


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
        hunts: HuntState | None = None,
        rng: random.Random | None = None,
        features: FeatureState | None = None,
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
        """Calls' deadlines; of a call's entries only the one at its
        ``timer_due`` counts (the others were superseded)."""
        self._seq = itertools.count()
        self._lingering: dict[int, float] = {}
        self.active = 0
        self.trunk_sources = TrunkSources()
        """Which sources are trunk gateways; the trunk runtime replaces it."""
        self.outside_calls = OutsideCallCounter()
        """Each extension's outside calls, against its caps; kept across
        reloads (a new plan's caps apply to the next call)."""
        self.presence = Presence()
        """Who is on a call, for hunt groups that skip busy members."""
        self.hunts = hunts or HuntState()
        """Agents' log-ins and the strategies' state (the store's cache)."""
        self.rng = rng or random.Random()
        """The ``random`` strategy's source; tests pass a seeded one."""
        self.media: LocalMedia | None = None
        """How calls are answered locally (menus, announcements); None: never."""
        self.anchors: Anchors | None = None
        """Media relays for calls recorded or SRTP-bridged; None: direct media only."""
        self.hours: Mapping[str, HoursOverride] = {}
        """Administrators' schedule overrides (``pbx hours``), as last read from the store."""
        self.features = features or FeatureState()
        """Forwards and do not disturb (the store's cache)."""
        self.codes: CodeChecker | None = None
        """Where account codes are looked up; None: calls that need one are refused."""
        self.overload: OverloadGate | None = None
        """Whether the server is behind and refuses new calls (pbx/calls/overload.py); None: never."""
        self.account_codes = AccountCodes(self)
        self.parking = ParkingLot()
        """Parked calls by slot (this node's, in memory)."""
        self.conference_pins = PinGate()
        """Wrong conference PINs, counted per source (this node's, in memory)."""
        self.queues = HuntQueues()
        """Callers waiting in hunt group queues: this node's, in memory only."""
        self._queued: dict[str, Call] = {}
        self.voicemail: Mailboxes | None = None
        """Where messages are kept; None: calls never go to a mailbox."""
        self.budgets = BudgetLedger()
        """Spend and reservations against budgets; the edge gives it a
        listener that keeps the store and sends alerts."""
        self.shared_budgets: SharedReservations | None = None
        """Set when several nodes share the budgets (PostgreSQL): paid calls
        reserve in the store too."""

    def use_plan(self, plan: Dialplan) -> None:
        self.plan = plan
        self.relay.settings = plan.calls

    @property
    def settings(self) -> CallSettings:
        """Session timers and maximum duration, from the dialplan in force."""
        return self.plan.calls

    def dialer(self, call: Call, *, delayed_offer: bool = False) -> Dialer:
        return CallDialer(self, call, delayed_offer=delayed_offer)

    def at(self) -> datetime:
        """Now, for routing and rights (aware, from the injected wall clock)."""
        return self._at()

    # ------------------------------------------------------------ transfers

    def plan_transfer(self, call: Call, payer: Extension, transferee: Caller, dialled: str) -> Action:
        """What a transfer of ``call`` to ``dialled`` rings: routed as if
        ``payer`` dialled it (their rights, their outside-call caps), the
        new leg showing ``transferee`` as the caller."""
        request = CallRequest(caller=payer, dialled=dialled, at=self._at(), caller_number=payer.number,
                              hours=self.hours)
        decision = _no_code_now(decide(request, self.plan))
        log.info("transfer_routed", call_id=call.a_call_id, uuid=call.uuid, payer=payer.number, dialled=dialled,
                 decision=type(decision).__name__, rule=decision.rule,
                 steps=[f"{step.rule}: {step.outcome}" for step in decision.steps])
        if isinstance(decision, Reject):
            return End(status=decision.status, disposition=Disposition.REJECTED, reason=decision.reason)
        if not isinstance(decision, (Ring, RingMember, Hunt, ToTrunk)):
            return End(status=488, disposition=Disposition.REJECTED, reason="not_a_transfer_target")
        wall = self.wall()
        hunting = Hunting(view=self.hunts, busy=self.presence.busy, rng=self.rng, day=self._day(wall))
        action = plan_call(decision, transferee, self.plan, lambda number: self.bindings.current(number, wall),
                           call.a_call_id, hunting, transfer=True)
        if isinstance(action, RingTargets) and action.hunt is None:
            action = self._within_limits(call, payer, action)
        if isinstance(action, RingTargets) and action.hunt is None:
            action = self._transfer_within_budget(call, payer, action, decision)
        return action

    def dialog_for(self, call_id: str, to_tag: str, from_tag: str) -> tuple[Call, InviteSession] | None:
        """The call and session of the dialog a Replaces names (RFC 3891
        §3): our tag is one of the two, the peer's the other."""
        for ours, theirs in ((to_tag, from_tag), (from_tag, to_tag)):
            found = self.sessions.get((call_id, ours))
            if found is not None and found[1].dialog.remote_tag == theirs:
                return found
        return None

    def adopt(self, call: Call, session: InviteSession) -> None:
        """``session`` belongs to ``call`` from now on (taken over from
        another call by an attended transfer)."""
        self.sessions[session.dialog_id] = (call, session)
        for key in session.keys:
            if key in self.by_key:
                self.by_key[key] = (call, session)

    def act(self, call: Call, work: Callable[[], None]) -> None:
        """Run ``work`` for ``call`` from outside the SIP input path (the
        media layer's callbacks), then flush what it sent."""
        self.now = self.monotonic()
        self._on_behalf(call, work)
        self.kick()

    def menu_run(self, menu: IvrMenu) -> MenuRun:
        """A caller's run through ``menu``; a menu entered by key is
        replaced by its closed menu when its hours are closed then."""
        plan = self.plan
        return MenuRun(plan.ivr_menus, menu, extensions=plan.extensions.keys(),
                       enter=lambda chosen: entry_menu(plan.ivr_menus, chosen, self._at(), self.hours)[0])

    def transfer(self, call: Call, chosen: Transfer) -> None:
        """Place what a menu chose for ``call``: routed like a call of its
        own (a group member, an outside number with the menu's rights)."""
        request = CallRequest(caller=call.caller, trunk=call.trunk, dialled=call.dialled, at=self._at(),
                              caller_number=call.caller_number, hours=self.hours)
        decision = decide_menu_destination(self.plan, chosen.menu, chosen.destination, chosen.rule, request)
        payer = None
        if isinstance(decision, ToTrunk):
            call.call_class = decision.call_class
            # The menu places it: its caps and budget, whoever called (a
            # caller from a trunk has none, and must not get a free line out).
            payer = menu_caller(chosen.menu)
        log.info("menu_transfer", call_id=call.a_call_id, uuid=call.uuid, menu=chosen.menu.key, rule=chosen.rule,
                 destination=chosen.destination.describe(), decision=type(decision).__name__,
                 steps=[f"{step.rule}: {step.outcome}" for step in decision.steps])
        call.transfer(self._plan(call, decision, transfer=True, payer=payer), decision.rule, self.now)

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

    def calls(self) -> list[Call]:
        """The calls in progress, oldest first."""
        return sorted({id(c): c for c, _ in self.sessions.values()}.values(), key=lambda c: c.started_at)

    def on_behalf(self, call: Call, work: Callable[[], None]) -> None:
        """Run ``work`` for ``call`` (another call's business started it)."""
        self._on_behalf(call, work)

    def resume(self, call: Call, action: Action) -> None:
        """Run ``action`` for ``call`` after an asynchronous step (a budget
        reservation in the store) and send what it sends."""
        self._on_behalf(call, lambda: call.run(action, self.now))
        self.kick()

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

    def _shed(self, event: RequestReceived) -> bool:
        """While the server is behind: 503 with Retry-After for a new call,
        before any authentication or routing work; True if refused. A number
        any number plan classes as an emergency number goes through."""
        gate = self.overload
        if gate is None or not gate.shedding or self.plan.may_be_emergency(_dialled(event.request)):
            return False
        self._respond(event, 503, headers=[("retry-after", str(gate.refuse()))])
        return True

    def _new_call(self, event: RequestReceived) -> None:
        request, source = event.request, event.source
        if self._shed(event):
            return
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
        origin = event.origin  # the phone behind a trusted edge: whom the lock-out counts
        wall = self.wall()
        result = self.auth.authenticate(request, origin.host, wall, proxy=True, user=claimed,
                                        qop_optional="INVITE" in self.plan.security.digest_without_qop,
                                        registered_phone=event.client is None and claimed is not None
                                        and self.bindings.registered_from(claimed, event.source, wall))
        if isinstance(result, Challenge):
            # Not from a trunk and not (yet) authenticated: nothing is
            # placed, least of all towards a trunk (no open relay).
            if not self.challenges.answer(result, origin, "INVITE"):
                self.endpoint.discard(event.key)
                return
            dialled = _dialled(request)
            external = self.plan.extension(dialled) is None and self.plan.menu_at(dialled) is None
            if external or result.reason != "no_credentials":
                # Not the routine first INVITE of an internal call: a probe
                # for a way out, or credentials that did not do.
                log.info("call_challenged", source=str(origin), dialled=masked(dialled, self.plan.account_codes.prefix),
                         reason=result.reason, external=external)
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
        # An account code dialled before the number (*11<code>#<number>)
        # leaves the dialled string here: only the number is logged, routed
        # and written to the CDR.
        prefixed = split_prefixed(dialled, self.plan.account_codes.prefix)
        if prefixed is not None:
            dialled = prefixed.number
        call = self._open_call(event, dialled, caller=caller)
        self._route(call, CallRequest(caller=caller, dialled=dialled, at=self._at(), caller_number=caller.number,
                                      hours=self.hours, code_given=prefixed is not None),
                    given=prefixed.code if prefixed is not None else None)

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
                                      at=self._at(), hours=self.hours))

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
            record_route = event.request.get_all("record-route")
            if record_route:
                # §12.2.1.1: a proxy stayed in the dialog (the cluster's
                # edge): our requests go to the first hop of the route set.
                dest = first_hop(record_route[0], event.source)
            elif contact is not None:
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
        if caller is not None:
            call.on_call = self.presence.hold((), caller.number)
        return call

    def _route(self, call: Call, request: CallRequest, given: str | None = None) -> None:
        decision = decide(request, self.plan)
        call.rule, call.call_class = decision.rule, decision.call_class
        if isinstance(decision, RingMember):
            # Known before the CDR row starts, so it records them.
            call.member = MemberCall(decision=decision)
            call.resolved_number = decision.resolved_number
        elif isinstance(decision, Hunt):
            call.hunt_group = decision.group.number
        log.info("call_routed", call_id=call.a_call_id, uuid=call.uuid, caller=call.caller_number,
                 dialled=call.dialled, trunk=call.trunk, decision=type(decision).__name__, rule=decision.rule,
                 call_class=decision.call_class, steps=[f"{step.rule}: {step.outcome}" for step in decision.steps])
        self.recorder.call_started(call)
        if isinstance(decision, AgentCode):
            agent = self._agent_code(call, decision)
            self._on_behalf(call, lambda: call.run(agent, self.now))
            return
        if isinstance(decision, Feature):
            feature = self._feature_code(call, decision)
            if feature is not None:  # None: a parked call being picked up answers it later
                self._on_behalf(call, lambda: call.run(feature, self.now))
            return
        if isinstance(decision, CodeRequired):
            self._on_behalf(call, lambda: self.account_codes.start(call, decision, request, given))
            return
        refused = self._media_refusal(call, decision)
        action = refused if refused is not None else self._plan(call, decision)
        self._on_behalf(call, lambda: call.run(action, self.now))

    def _media_refusal(self, call: Call, decision: Decision) -> End | None:
        """488 for an offer the caller's or callee's media_encryption, or
        the signalling its keys would cross, does not allow
        (:mod:`pbx.calls.media_policy`)."""
        callee = decision.extension if isinstance(decision, Ring) else None
        callee_on_tls = None
        if callee is not None and b"crypto" in call.a_request.body:  # it matters only for an offer with keys
            phones = self.bindings.current(callee.number, self.wall())
            callee_on_tls = bool(phones) and all(b.source.transport == "tls" for b in phones)
        refused = check_offer(
            call.a_request.body, caller=call.caller.media_encryption if call.caller is not None else None,
            callee=callee.media_encryption if callee is not None else None,
            caller_on_tls=call.a.dest.transport == "tls", callee_on_tls=callee_on_tls,
            allow_plain_signalling=self.plan.security.sdes_over_plain_signalling)
        if refused is None:
            return None
        if refused.tag in BRIDGED_REFUSALS and self.anchors is not None and call.a_request.body:
            # The PBX's relay gives each leg what it can do (pbx.calls.anchoring).
            call.bridge_srtp = True
            return None
        log.info("call_media_refused", call_id=call.a_call_id, uuid=call.uuid, reason=refused.tag,
                 caller=call.caller_number, callee=callee.number if callee is not None else None)
        return End(status=refused.status, disposition=Disposition.REJECTED, reason=refused.tag,
                   phrase=refused.reason)

    def plan_for(self, call: Call, decision: Decision, *, transfer: bool = False) -> Action:
        """What ``call`` does for ``decision`` (an account code's too)."""
        return self._plan(call, decision, transfer=transfer)

    def _plan(self, call: Call, decision: Decision, *, transfer: bool = False,
              payer: Extension | None = None) -> Action:
        """What ``call`` does for ``decision`` (a menu's ``transfer`` too),
        held to the outside-call caps of whoever pays: the caller, or the
        extension whose forward placed it (``payer``)."""
        wall = self.wall()
        callee = _one_extension(decision)
        if callee is not None:
            call.destination = callee.number
            redirect = self._redirect(call, callee, wall)
            if redirect is not None:
                return self._or_voicemail(callee, redirect)
        caller = Caller(number=call.caller_number, name=call.caller_name, extension=call.caller,
                        from_trunk=call.trunk)
        hunting = Hunting(view=self.hunts, busy=self.presence.busy, rng=self.rng, day=self._day(wall))
        secure = _is_sips(call.a_request)

        def contacts(number: str) -> list[Binding]:
            found = self.bindings.current(number, wall)
            return over_tls_only(found) if secure else found

        if secure and isinstance(decision, Ring) and not contacts(decision.extension.number) \
                and self.bindings.current(decision.extension.number, wall):
            log.info("call_sips_not_allowed", call_id=call.a_call_id, uuid=call.uuid,
                     callee=decision.extension.number)
            return sips_not_allowed(self.plan.domain)
        action = plan_call(decision, caller, self.plan, contacts,
                           call.a_call_id, hunting, transfer=transfer or payer is not None)
        on_behalf = payer is not None
        payer = payer or call.caller
        if payer is not None and isinstance(action, RingTargets) and action.hunt is None:
            # A hunt group's outside members go out with the group's rights,
            # not as the caller's outside calls.
            action = self._within_limits(call, payer, action)
        if payer is not None and isinstance(action, RingTargets) and action.hunt is None:
            action = self._within_budget(call, payer, action, decision)
            if on_behalf and isinstance(action, RingTargets) and any(
                    isinstance(target, TrunkTarget) for target in action.targets):
                call.billed_to = payer  # the CDR's billed_to: reports and budgets count it there
        if isinstance(action, RingTargets):
            self._price_unbudgeted(call, action, decision)
        if isinstance(action, AnswerConference):
            return conference.refused(self, call, action) or action
        if callee is not None and isinstance(action, RingTargets):
            forward = self.features.settings(callee).forward
            if forward.busy is not None or forward.no_answer is not None:
                action = replace(action, forward=ForwardOnFail(callee.number, forward.busy, forward.no_answer))
            mailbox = self._mailbox(callee)
            if mailbox is not None:
                ring = float(mailbox.ring_seconds) if mailbox.ring_seconds is not None else action.ring_timeout
                action = replace(action, voicemail=callee.number, ring_timeout=ring)
        if callee is not None:
            action = self._or_voicemail(callee, action)
        return action

    def _mailbox(self, extension: Extension) -> MailboxSettings | None:
        """``extension``'s mailbox settings, if calls may go to it."""
        if self.voicemail is None or self.media is None:
            return None
        settings = self.plan.voicemail.for_extension(extension)
        return settings if settings.enabled else None

    def _or_voicemail(self, extension: Extension, action: Action) -> Action:
        """A call to ``extension`` refused before ringing because it is busy
        (do not disturb, its maximum of calls) or has no phone registered:
        its mailbox takes it, if it has one. Forwards were tried first."""
        if not isinstance(action, End) or action.reason not in VOICEMAIL_REASONS or self._mailbox(extension) is None:
            return action
        return LeaveMessage(mailbox=extension.number, disposition=action.disposition)

    def call_back(self, call: Call, mailbox: str, number: str) -> None:
        """From the mailbox menu: call a message's caller back, routed as a
        call the mailbox's owner places (their rights, caps and budgets;
        never the rights of whoever dialled ``*98``)."""
        owner = self.plan.extension(mailbox)
        if owner is None:
            call.transfer(End(status=404, disposition=Disposition.REJECTED, reason="mailbox_gone"), "voicemail",
                          self.now)
            return
        request = CallRequest(caller=owner, dialled=number, at=self._at(), caller_number=owner.number,
                              hours=self.hours)
        decision = decide(request, self.plan)
        log.info("voicemail_call_back", call_id=call.a_call_id, uuid=call.uuid, mailbox=mailbox, dialled=number,
                 decision=type(decision).__name__, rule=decision.rule,
                 steps=[f"{step.rule}: {step.outcome}" for step in decision.steps])
        if isinstance(decision, Reject):
            call.transfer(End(status=decision.status, disposition=Disposition.REJECTED, reason=decision.reason,
                              announcement=PHRASE_FOR_STATUS.get(decision.status)), decision.rule, self.now)
            return
        if not isinstance(decision, (Ring, RingMember, Hunt, ToTrunk)):
            call.transfer(End(status=488, disposition=Disposition.REJECTED, reason="not_a_call_back_target"),
                          decision.rule, self.now)
            return
        if isinstance(decision, ToTrunk):
            call.call_class = decision.call_class
        call.paid_by = owner
        call.transfer(self._plan(call, decision, payer=owner), decision.rule, self.now)

    # ------------------------------------------------------------ forwarding

    def _redirect(self, call: Call, extension: Extension, wall: float) -> Action | None:
        """A call to ``extension`` that must not ring it: forwarded, or busy
        (do not disturb, its maximum of calls); None: ring it."""
        settings = self.features.settings(extension)
        redirect = forward_before_ringing(settings, calls=self.presence.calls(extension.number),
                                          max_calls=extension.max_calls,
                                          registered=bool(self.bindings.current(extension.number, wall)))
        if redirect is None:
            return None
        if redirect.target is not None:
            return self.forward(call, extension, redirect.condition, redirect.target)
        reason = "do_not_disturb" if redirect.condition == "dnd" else "busy"
        log.info("call_busy", call_id=call.a_call_id, uuid=call.uuid, extension=extension.number, reason=reason,
                 calls=self.presence.calls(extension.number), max_calls=extension.max_calls)
        return End(status=486, disposition=Disposition.BUSY, reason=reason, side=HangupSide.CALLEE,
                   announcement="busy" if self.plan.media.announce_refusals else None,
                   language=self.plan.language_for(call.caller))

    def forward(self, call: Call, extension: Extension, condition: str, target: str) -> Action:
        """Send ``call`` on to ``target`` as ``extension``'s forward: routed
        as a call ``extension`` places (its rights, its caps); a chain of
        forwards is followed at most ``forward_limit`` times."""
        call.forwards += 1
        call.transfers.append(f"forward {condition} {extension.number} -> {target}")
        limit = self.plan.features.forward_limit
        if call.forwards > limit:
            log.warning("forward_limit", call_id=call.a_call_id, uuid=call.uuid, chain=call.transfers,
                        limit=limit)
            return End(status=482, disposition=Disposition.FAILED, reason="forward_limit", phrase="Loop Detected")
        request = CallRequest(caller=extension, dialled=target, at=self._at(), caller_number=extension.number,
                              hours=self.hours)
        decision = _no_code_now(decide(request, self.plan))
        log.info("call_forwarded", call_id=call.a_call_id, uuid=call.uuid, extension=extension.number,
                 condition=condition, target=target, decision=type(decision).__name__, rule=decision.rule,
                 steps=[f"{step.rule}: {step.outcome}" for step in decision.steps])
        if isinstance(decision, Reject):
            return End(status=decision.status, disposition=Disposition.REJECTED, reason=f"forward_{decision.reason}")
        if not isinstance(decision, (Ring, RingMember, Hunt, ToTrunk)):
            return End(status=480, disposition=Disposition.UNAVAILABLE, reason="forward_not_a_destination")
        if isinstance(decision, ToTrunk):
            call.call_class = decision.call_class
        return self._plan(call, decision, payer=extension)

    def forward_unanswered(self, call: Call, number: str, condition: str, target: str) -> None:
        """The rung extension was busy or did not answer: its forward rings."""
        extension = self.plan.extension(number)
        if extension is None:
            call.run(End(status=480, disposition=Disposition.UNAVAILABLE, reason="forward_extension_gone"),
                     self.now)
            return
        call.run(self.forward(call, extension, condition, target), self.now)

    # ------------------------------------------------------------ pickup

    def pickup(self, call: Call, decision: Feature) -> Action:
        """``*8`` (a call ringing in the picker's pickup group) or ``**E``
        (the call ringing at extension E): the ringing phones stop with
        "Call completed elsewhere" and the picker talks to the caller."""
        picker = decision.extension
        directed = decision.dialled.argument if decision.dialled.action == "directed_pickup" else None
        group = picker.pickup_group or picker.department
        for candidate in self.calls():
            if candidate is call or candidate.state is not CallState.RINGING or candidate.local \
                    or candidate.fork is None:
                continue
            for leg in candidate.fork.legs:
                rung = self.plan.extension(leg.target) if leg.live and leg.trunk is None and leg.target else None
                if rung is None or rung.number == picker.number:
                    continue
                if directed == rung.number or (directed is None and (rung.pickup_group or rung.department) == group):
                    if candidate.picked_up(call, picker, rung.number, self.now):
                        log.info("call_picked_up", call_id=candidate.a_call_id, uuid=candidate.uuid,
                                 picker=picker.number, rung=rung.number, by=call.uuid)
                        return End(status=480, disposition=Disposition.ANSWERED, reason="picked_up")
                    return End(status=488, disposition=Disposition.FAILED, reason="pickup_media_unusable")
        log.info("pickup_nothing_ringing", call_id=call.a_call_id, uuid=call.uuid, picker=picker.number,
                 directed=directed, group=group)
        return End(status=480, disposition=Disposition.UNAVAILABLE, reason="nothing_to_pick_up",
                   phrase="Nothing To Pick Up")

    def _feature_code(self, call: Call, decision: Feature) -> Action | None:
        """Change the caller's forwards or do not disturb, then say so: a
        spoken confirmation in early media where the call has media, and a
        480 whose reason phrase says what was done (the agent codes' way)."""
        feature, extension, wall = decision.dialled, decision.extension, self.wall()
        match feature.action:
            case "forward_on" | "forward_off":
                assert feature.kind is not None
                target = feature.argument if feature.action == "forward_on" else None
                self.features.set_forward(extension, feature.kind, target, wall)
                on = target is not None
                phrase = f"Forwarding {feature.kind} " + (f"On {target}" if on else "Off")
                prompt = "forwarding_on" if on else "forwarding_off"
            case "dnd_on" | "dnd_off":
                on = feature.action == "dnd_on"
                self.features.set_dnd(extension, on, wall)
                phrase, prompt = ("Do Not Disturb On", "dnd_on") if on else ("Do Not Disturb Off", "dnd_off")
            case "pickup" | "directed_pickup":
                return self.pickup(call, decision)
            case "park":
                return parking.park(self, call, decision)
            case "park_pickup":
                return parking.pick_up(self, call, decision)
            case "voicemail" | "voicemail_login":
                return self._open_mailbox(call, decision)
        log.info("feature_set", call_id=call.a_call_id, uuid=call.uuid, extension=extension.number,
                 action=feature.action, kind=feature.kind, target=feature.argument, by="feature_code")
        return End(status=480, disposition=Disposition.UNAVAILABLE, reason=f"feature_{feature.action}",
                   headers=(("reason", f'SIP;cause=200;text="{feature.action}"'),), phrase=phrase,
                   announcement=prompt, language=self.plan.language_for(extension))

    def _open_mailbox(self, call: Call, decision: Feature) -> Action:
        """``*97`` (one's own mailbox, no PIN) or ``*98`` (any, with its PIN)."""
        extension, language = decision.extension, self.plan.language_for(decision.extension)
        own = decision.dialled.action == "voicemail"
        if self.voicemail is None or self.media is None or (own and self._mailbox(extension) is None):
            return End(status=480, disposition=Disposition.UNAVAILABLE, reason="voicemail_not_enabled",
                       phrase="No Voicemail", announcement="not_available", language=language)
        mailbox = extension.number if own else decision.dialled.argument
        return OpenMailbox(mailbox=mailbox, authenticated=own, language=language)

    # ------------------------------------------------------------ hunt groups

    def overflow(self, call: Call, group: HuntGroup, condition: Condition, call_class: str, *,
                 queue: bool = True) -> None:
        """Queue ``call`` if ``group`` queues on ``condition`` (and
        ``queue``) and its queue has room; else send it on to the group's
        destination for ``condition``, or tell the caller (an announcement
        destination says what to)."""
        if queue and call.queued is None and group.queues_on(condition) and self.enqueue(
                call, group, condition, call_class):
            return
        call.overflows += 1
        within = call.overflows <= MAX_OVERFLOWS
        decision = overflow_decision(self.plan, group, condition, self._at(), call_class, self.hours) \
            if within else None
        destination = group.overflow.get(condition) if within else None
        log.info("hunt_overflow", call_id=call.a_call_id, uuid=call.uuid, group=group.number, condition=condition,
                 destination=None if destination is None else destination.what)
        if decision is None:
            status, disposition = {
                "busy": (486, Disposition.BUSY), "no_answer": (480, Disposition.NO_ANSWER),
            }.get(condition, (480, Disposition.UNAVAILABLE))
            end = End(status=status, disposition=disposition, reason=f"hunt_{condition}",
                      announcement=destination.announcement if destination is not None else None,
                      language=self.plan.language_for(call.caller))
            self._go_on(call, end, group.rule)
            return
        self._go_on(call, self._plan(call, decision), decision.rule)

    def _go_on(self, call: Call, action: Action, rule: str) -> None:
        """Run ``action`` for ``call``: placed from the PBX's own media when
        the PBX answered the caller (a queue, a menu's transfer), else as a
        new call's."""
        if call.local:
            call.state = CallState.LOCAL
            call.transfer(action, rule, self.now)
        else:
            call.run(action, self.now)

    # ------------------------------------------------------------ queues

    def enqueue(self, call: Call, group: HuntGroup, condition: Condition, call_class: str) -> bool:
        """Put ``call`` in ``group``'s queue: answered, told its place, music.
        False when the queue is full (the group overflows instead)."""
        settings = group.queue
        assert settings is not None
        entry = self.queues.join(group.number, call.uuid, condition, settings, call_class, self.now)
        if entry is None:
            log.info("hunt_queue_full", call_id=call.a_call_id, uuid=call.uuid, group=group.number,
                     max_length=settings.max_length)
            return False
        music = self.plan.music_on_hold(department=group.department)
        if not call.wait_in_queue(entry, music, self.now):
            self.queues.leave(entry)
            return True  # it could not be answered, and has ended
        self._queued[call.uuid] = call
        log.info("hunt_queued", call_id=call.a_call_id, uuid=call.uuid, group=group.number, condition=condition,
                 position=self.queues.position(entry), max_wait=settings.max_wait)
        return True

    def dequeue(self, call: Call) -> None:
        entry = call.queued
        if entry is not None:
            self.queues.leave(entry)
            call.queued = None
        self._queued.pop(call.uuid, None)

    def serve_queues(self) -> None:
        """Offer members who are free now to the callers waiting, in each
        queue first come first served (a member ringing or on a call is not
        free)."""
        if not self._queued:
            return
        for number in self.queues.groups():
            self._serve(number)

    def _serve(self, number: str) -> None:
        group = self.plan.hunt_groups.get(number)
        for entry in self.queues.waiting(number):
            call = self._queued.get(entry.key)
            if call is None or call.state is not CallState.LOCAL:
                continue
            if group is None:
                return  # the group left the plan: its callers overflow at their max_wait
            decision = queue_hunt(self.plan, replace(group, skip_busy=True), self._at(), entry.call_class)
            if isinstance(decision, Reject):
                return
            wall = self.wall()
            hunting = Hunting(view=self.hunts, busy=self._engaged, rng=self.rng, day=self._day(wall))
            caller = Caller(number=call.caller_number, name=call.caller_name, extension=call.caller,
                            from_trunk=call.trunk)
            action = plan_call(decision, caller, self.plan, lambda n: self.bindings.current(n, wall),
                               call.a_call_id, hunting)
            if not isinstance(action, RingTargets):
                return  # nobody free: nobody for the callers behind it either
            self._price_unbudgeted(call, action, decision)
            self.queues.ringing(entry)
            log.info("hunt_queue_ringing", call_id=call.a_call_id, uuid=call.uuid, group=number,
                     waited=round(self.now - entry.joined, 3), order=list(action.hunt.order) if action.hunt else [])
            self._on_behalf(call, lambda: call.ring_from_queue(action, self.now))

    def _engaged(self, extension: str) -> bool:
        return self.presence.busy(extension) or self.presence.ringing(extension) > 0

    def queue_not_answered(self, call: Call) -> None:
        entry = call.queued
        if entry is not None:
            self.queues.not_answered(entry, self.now)
            log.info("hunt_queue_not_answered", call_id=call.a_call_id, uuid=call.uuid, group=entry.group,
                     position=self.queues.position(entry))

    def queue_due(self, call: Call, now: float) -> None:
        """A queued caller's timer: its longest wait is over (the group
        overflows), or it is time to offer it a member again."""
        entry = call.queued
        assert entry is not None
        if now < entry.expires:
            self.queues.retried(entry, now)
            self._serve(entry.group)
            return
        self.dequeue(call)
        if call.fork is not None and call.state is CallState.RINGING:
            call.fork.stop([])
        call.state, call.ring_due = CallState.LOCAL, None
        log.info("hunt_queue_timeout", call_id=call.a_call_id, uuid=call.uuid, group=entry.group,
                 waited=round(now - entry.joined, 3))
        group = self.plan.hunt_groups.get(entry.group)
        if group is None:
            self._go_on(call, End(status=480, disposition=Disposition.UNAVAILABLE, reason="hunt_group_gone"),
                        "hunt_groups")
            return
        self.overflow(call, group, entry.condition, entry.call_class, queue=False)

    def _day(self, wall: float) -> str:
        return datetime.fromtimestamp(wall, self.plan.timezone).date().isoformat()

    def hunt_answered(self, call: Call) -> None:
        if call.hunt is not None and call.answered_by is not None:
            wall = self.wall()
            self.hunts.answered(call.hunt.group.number, call.answered_by, wall, self._day(wall))
            log.info("hunt_answered", call_id=call.a_call_id, uuid=call.uuid, group=call.hunt.group.number,
                     member=call.answered_by, wait=round(wall - call.started_at, 3))

    def hunt_ended(self, call: Call) -> None:
        if call.hunt is not None and call.answered_by is not None:
            self.hunts.ended(call.hunt.group.number, call.answered_by, self.wall())

    def _agent_code(self, call: Call, decision: AgentCode) -> End:
        """Log the agent in or out, then say so: a spoken confirmation in
        early media where the call has media (as feature codes do), and a
        480 whose reason phrase says what was done: ``Logged In 501`` /
        ``Logged Out 501``. A log-in may free a member for a queued caller."""
        extension, groups = decision.extension, decision.groups
        match decision.action:
            case "login":
                logged_in = True
            case "logout" | "logout_all":
                logged_in = False
            case "toggle":
                logged_in = not any(self.hunts.logged_in(group, extension) for group in groups)
        wall = self.wall()
        for group in groups:
            self.hunts.set_login(group, extension, logged_in, wall)
        if logged_in:
            self.serve_queues()
        word = "logged_in" if logged_in else "logged_out"
        log.info("hunt_agent", call_id=call.a_call_id, uuid=call.uuid, extension=extension, groups=list(groups),
                 state=word, by="feature_code")
        phrase = ("Logged In " if logged_in else "Logged Out ") + ",".join(groups)
        return End(status=480, disposition=Disposition.UNAVAILABLE, reason=f"hunt_{word}",
                   headers=(("reason", f'SIP;cause=200;text="hunt_{word} {",".join(groups)}"'),), phrase=phrase,
                   announcement=word, language=self.plan.language_for(self.plan.extension(extension)))

    def _within_limits(self, call: Call, caller: Extension, action: RingTargets) -> Action:
        """Hold one of ``caller``'s outside-call slots for ``call`` if it
        places a leg through a trunk. Over a cap, the call is refused; a
        group member's desk still rings without the mobile leg. Calls from
        trunks and internal calls are never counted, emergency calls never
        refused."""
        if call.call_class == EMERGENCY or not any(isinstance(t, TrunkTarget) for t in action.targets):
            return action
        limits = limits_for(self.plan, caller)
        hit = self.outside_calls.admit(caller.number, call.uuid, limits, self.now)
        if hit is None:
            if self.shared_budgets is None:
                return action
            # Other nodes place this extension's calls too: count it in the
            # store before anything rings (Call._ring waits for the answer).
            return replace(action, hold=SharedHold(outside=OutsideSlot(
                extension=caller.number, limits=limits,
                refuse=lambda shared_hit: self._shared_limit_refusal(call, caller, action, shared_hit))))
        return self._limit_refused(call, caller, action, hit)

    def _shared_limit_refusal(self, call: Call, caller: Extension, action: RingTargets, hit: LimitHit) -> Action:
        self.outside_calls.release(call.uuid)  # this node's count goes with the store's refusal
        self.budgets.settle(call.uuid, 0)
        return self._limit_refused(call, caller, replace(action, hold=None), hit)

    def _limit_refused(self, call: Call, caller: Extension, action: RingTargets, hit: LimitHit) -> Action:
        """``call`` would break ``hit``'s cap: its desk phones only, or 486."""
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
        charges = self._charges(call, caller)
        if not charges:
            return action
        amount = rate.tariff.cost(self.plan.budgets.reserve_seconds)
        hit = self.budgets.admit(call.uuid, charges, amount)
        if hit is None:
            if self.shared_budgets is None:
                return action
            # Other nodes spend from the same budgets: hold it in the store
            # too before anything rings (Call._ring waits for the answer),
            # with the outside-call slot if there is one.
            return replace(action, hold=replace(
                action.hold or SharedHold(), charges=charges, amount=amount,
                refuse=lambda shared_hit: self._shared_refusal(call, caller, action, shared_hit, call_class)))
        return self._budget_refused(call, caller, action, hit, call_class)

    def _charges(self, call: Call, payer: Extension) -> tuple[Charge, ...]:
        """The budgets a paid leg ``payer`` places for ``call`` is charged
        to, in the period the call started in."""
        settings = self.plan.budgets
        # A call placed under an account code is charged to the code's
        # budget too (named by the code's id, as its CDR column is).
        code = str(call.account.code_id) if call.account is not None else None
        budgets = budgets_for(self.plan, payer, code)
        if not budgets:
            return ()
        started = datetime.fromtimestamp(call.started_at, timezone.utc)
        period = period_of(started, settings.period, self.plan.timezone).label
        return tuple(Charge(budget=b, period=period, warn_level=settings.warn_level(b)) for b in budgets)

    def _transfer_within_budget(self, call: Call, payer: Extension, action: RingTargets,
                                decision: Decision) -> Action:
        """A blind transfer to an outside number is an outside call its
        payer places: priced by its own tariff from when it joins, and
        refused (403 sipfrag, the call stays) when a budget of the payer has
        no room for ``reserve_seconds`` of it. Without this, taking any call
        and transferring it out was a way round every budget."""
        hold = transfer_hold(call.uuid)
        rate = single_rate(self.plan.billing, decision, action.targets)
        if call.transfer_leg is not None:
            # An outside leg a transfer brought in is still on the call (it
            # stays as the transferee): a second one would go unpriced, or
            # drop the first's spend. Refused rather than miscounted (the
            # transfer's refusal is logged as transfer_refused). A transfer
            # of it to an extension keeps its price and hold as they are.
            if rate is not None:
                return End(status=403, disposition=Disposition.REJECTED, reason="second_transfer_out")
            return action
        self.budgets.settle(hold, 0)  # an earlier attempt's hold: it never joined
        call.transfer_rate = rate
        priced = decision.mobile if isinstance(decision, RingMember) else decision
        call_class = priced.call_class if isinstance(priced, ToTrunk) else None
        if rate is None or rate.tariff.free or call_class in FREE_CLASSES:
            return action
        charges = self._charges(call, payer)
        amount = rate.tariff.cost(self.plan.budgets.reserve_seconds)
        hit = self.budgets.admit(hold, charges, amount)
        if hit is None:
            if self.shared_budgets is None or not charges:
                return action
            # Other nodes spend from the same budgets: the store holds it
            # too before the transfer rings (pbx.calls.transfer waits).
            return replace(action, hold=replace(
                action.hold or SharedHold(), charges=charges, amount=amount,
                refuse=lambda shared_hit: self._transfer_budget_refusal(call, payer, shared_hit, rate,
                                                                        call_class)))
        call.transfer_rate = None
        return self._transfer_budget_refusal(call, payer, hit, rate, call_class)

    def _transfer_budget_refusal(self, call: Call, payer: Extension, hit: BudgetHit, rate: Rate,
                                 call_class: str | None) -> End:
        log.warning("budget_exhausted", call_id=call.a_call_id, uuid=call.uuid, extension=payer.number,
                    budget=hit.budget.key, rule=hit.budget.rule, period=hit.period, limit=hit.budget.limit,
                    spent=hit.spent, reserved=hit.reserved, needed=hit.needed, tariff=rate.tariff.id,
                    call_class=call_class, outcome="transfer_refused")
        return budget_refusal(hit, self.plan.domain, rate.money(hit.spent + hit.reserved),
                              rate.money(hit.budget.limit))

    def take_over_priced(self, call: Call, other: Call, payer: Extension) -> End | None:
        """An attended transfer is about to take ``other``'s answered trunk
        leg into ``call``: from then on that leg is priced on ``call`` by the
        tariff it was placed with and held against ``payer``'s budgets like
        a blind transfer out (``other`` is billed up to the hand-over). The
        refusal, or None."""
        rate, winner = other.rate, other.winner
        if rate is None or winner is None or winner.trunk is None or rate.tariff.free:
            return None
        if call.transfer_leg is not None:
            return End(status=403, disposition=Disposition.REJECTED, reason="second_transfer_out")
        hold = transfer_hold(call.uuid)
        self.budgets.settle(hold, 0)  # an earlier attempt's hold: it never joined
        call.transfer_rate = None
        if other.call_class not in FREE_CLASSES:
            hit = self.budgets.admit(hold, self._charges(call, payer),
                                     rate.tariff.cost(self.plan.budgets.reserve_seconds))
            if hit is not None:
                return self._transfer_budget_refusal(call, payer, hit, rate, other.call_class)
        call.transfer_rate = rate
        return None

    def _price_unbudgeted(self, call: Call, action: RingTargets, decision: Decision) -> None:
        """Price the trunk legs no budget step priced: a hunt group's outside
        members, or a leg placed for nobody's extension (an overflow or a
        menu's transfer of a call from a trunk). Nobody's budget is charged,
        but the CDR carries what the call cost the company."""
        if call.rate is not None:
            return
        if action.hunt is not None:
            call.member_rates = member_rates(self.plan.billing, decision)
        else:
            call.rate = single_rate(self.plan.billing, decision, action.targets)

    def _shared_refusal(self, call: Call, caller: Extension, action: RingTargets, hit: BudgetHit,
                        call_class: str | None) -> Action:
        self.budgets.settle(call.uuid, 0)  # this node's hold goes with the store's refusal
        return self._budget_refused(call, caller, replace(action, hold=None), hit, call_class)

    def _budget_refused(self, call: Call, caller: Extension, action: RingTargets, hit: BudgetHit,
                        call_class: str | None) -> Action:
        """``call`` does not fit in ``hit``'s budget: its desk phones only,
        or the 403 (said first when the plan announces refusals)."""
        rate = call.rate
        assert rate is not None
        desk = tuple(target for target in action.targets if not isinstance(target, TrunkTarget))
        log.warning("budget_exhausted", call_id=call.a_call_id, uuid=call.uuid, extension=caller.number,
                    budget=hit.budget.key, rule=hit.budget.rule, period=hit.period, limit=hit.budget.limit,
                    spent=hit.spent, reserved=hit.reserved, needed=hit.needed, tariff=rate.tariff.id,
                    call_class=call_class, outcome="trunk_legs_dropped" if desk else "refused")
        if desk:
            delay = max(target.after for target in action.targets if isinstance(target, TrunkTarget))
            return replace(action, targets=desk, ring_timeout=action.ring_timeout - delay, hold=None)
        refused = budget_refusal(hit, self.plan.domain, rate.money(hit.spent + hit.reserved),
                                 rate.money(hit.budget.limit))
        if self.plan.media.announce_refusals:
            # Said before the 403, in early media, like routing's refusals.
            refused = replace(refused, announcement="budget_exhausted", language=self.plan.language_for(caller))
        return refused

    # ------------------------------------------------------------ time

    def _reschedule(self, call: Call) -> None:
        """Keep ``call``'s one heap entry at its deadline. Entries a change
        superseded are skipped when they surface (lazy deletion) and the heap
        is rebuilt when they dominate: a call's maximum-duration entry may be
        hours away, and must not keep a finished call alive till then."""
        due = call.deadline() if call.state is not CallState.ENDED else self._lingering.get(id(call))
        if due is None or due == call.timer_due:
            call.timer_due = due
            return
        call.timer_due = due
        heap = self._heap
        heapq.heappush(heap, (due, next(self._seq), call))
        # Every timed call is active or lingering: at most that many
        # entries count.
        if len(heap) > 2 * (self.active + len(self._lingering)) + 64:
            current = {id(owner): (when, seq, owner) for when, seq, owner in heap if owner.timer_due == when}
            heap[:] = current.values()
            heapq.heapify(heap)

    @staticmethod
    def _current(due: float, call: Call) -> bool:
        return call.timer_due == due

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
            call.timer_due = None
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
        sessions = [call.a, *(leg.session for leg in call.legs), *call.retired]
        if all(session.settled for session in sessions):
            self._drop(call)
        else:
            self._lingering[id(call)] = self.now + LINGER
            call.timer_due = None
            self._reschedule(call)
        self.kick()

    def _drop(self, call: Call) -> None:
        self._lingering.pop(id(call), None)
        call.timer_due = None
        if call.fork is not None:
            call.fork.release()
        for leg in call.legs:
            leg.stopped_ringing()  # a leg nobody closed must not ring on the busy lamps forever
        for session in (call.a, *(leg.session for leg in call.legs), *call.retired):
            # A session an attended transfer moved to another call is that
            # call's to drop.
            if self.sessions.get(session.dialog_id, (call,))[0] is call:
                self.sessions.pop(session.dialog_id, None)
            for key in session.keys:
                if self.by_key.get(key, (call,))[0] is call:
                    self.by_key.pop(key, None)


def _one_extension(decision: Decision) -> Extension | None:
    """The one extension ``decision`` rings, whose forwards, do not disturb,
    call limit and mailbox apply: a call to it, or a group co-member's call
    to its desk alone (a member with a mobile as well rings as the group
    says)."""
    if isinstance(decision, Ring):
        return decision.extension
    if isinstance(decision, RingMember) and decision.mobile is None:
        return decision.extension
    return None


def _no_code_now(decision: Decision) -> Decision:
    """A leg the PBX places on someone's behalf (a transfer, a forward)
    that routing says needs an account code: nobody is there to key one,
    so it is a number the payer may not dial (403, the transferor's
    sipfrag), never a call placed without the code."""
    if not isinstance(decision, CodeRequired):
        return decision
    return Reject(status=403, reason=decision.barred or "account_code_required", rule=decision.rule,
                  call_class=decision.call_class, steps=decision.steps,
                  detail="an account code would be needed and cannot be asked for here")


def _is_sips(request: Request) -> bool:
    return request.uri[:5].lower() == "sips:"


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
