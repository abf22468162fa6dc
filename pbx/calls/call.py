"""One call through the B2BUA: the coordinator.

A :class:`Call` owns the caller's session (A, where the PBX is UAS) and,
while it rings, a :class:`pbx.calls.fork.Fork` of callee sessions (B, UAC);
once answered, the winning leg. It runs what routing decided
(:mod:`pbx.calls.plan`), relays what must pass between the sides, keeps the
CDR facts and its own timers (ring time, maximum duration, session expiry),
and never builds SIP text: sessions do (:mod:`pbx.sip.session`).

Rules it keeps (RFC 3261 unless said):
- 1xx with SDP are relayed (early media); SDP passes through untouched;
- when A's INVITE carried no offer, B's 2xx holds the offer and A's ACK the
  answer, so B's ACK waits for A's ACK (§13.2.1 delayed offer);
- the final response that ends a call (the error to A's INVITE, the 200 to
  a BYE) is sent only once the CDR is durable: once a phone has seen the
  call end, its CDR survives kill -9.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, assert_never

import structlog

from pbx.calls.fork import Fork, Leg, LegState, Outcome
from pbx.calls.plan import Action, End, Ring
from pbx.cdr.records import Disposition, HangupSide, whole_seconds
from pbx.routing.dialplan import Extension
from pbx.routing.engine import RingMember
from pbx.routing.tariffs import Rate
from pbx.sip import session_timer
from pbx.sip.message import Header, Request, Response
from pbx.sip.session import (
    AckIn,
    AckTimedOut,
    Answered,
    ByeIn,
    CancelIn,
    CancelReceived,
    Confirmed,
    Failed,
    IntervalRaised,
    InviteSession,
    Provisional,
    RequestIn,
    ResponseIn,
    SessionEvent,
)
from pbx.sip.tokens import random_uuid
from pbx.trunks.outbound import TrunkDialling

if TYPE_CHECKING:
    from pbx.calls.controller import CallController

log = structlog.get_logger("pbx.calls")

# Headers carried from one leg's request/response to the other's.
CARRIED = ("content-type", "content-disposition", "content-encoding", "content-language")


class CallState(enum.Enum):
    ROUTING = "routing"
    RINGING = "ringing"      # B legs placed, no 2xx yet
    ANSWERED = "answered"    # a B leg answered; 2xx relayed to A
    ENDING = "ending"        # ended, CDR being made durable
    ENDED = "ended"


class Side(enum.Enum):
    """The two sides of a call: A the caller, B the callee."""

    A = "a"
    B = "b"

    @property
    def other(self) -> Side:
        return Side.B if self is Side.A else Side.A


@dataclass(slots=True, kw_only=True)
class MemberCall:
    """A call to a short-number group member (``RingMember``)."""

    decision: RingMember

    @property
    def short_number(self) -> str | None:
        """The short number dialled, None when a long number was."""
        return self.decision.member.short if self.decision.short_dialled else None

    @property
    def label(self) -> str:
        """``head_office/601 Nguyễn Văn An``: the member, for the CDR."""
        member = self.decision.member
        return f"{self.decision.group}/{member.short}" + (f" {member.name}" if member.name else "")


def _utc(stamp: float) -> datetime:
    # As the CDR adapter stamps times, so billsec here is the row's billsec.
    return datetime.fromtimestamp(stamp, timezone.utc)


def carried(message: Request | Response) -> list[Header]:
    return [(name, value) for name, value in message.headers if name in CARRIED]


@dataclass(slots=True, kw_only=True)
class Call:
    """The coordinator of one call, and the facts its CDR is made of."""

    caller: Extension | None
    """The authenticated extension; None for a call in from a trunk."""
    dialled: str
    a: InviteSession
    started_at: float
    """Wall-clock seconds (the CDR's times are wall-clock; timers monotonic)."""
    controller: CallController
    uuid: str = field(default_factory=lambda: random_uuid().hex)
    state: CallState = CallState.ROUTING
    fork: Fork | None = None
    winner: Leg | None = None
    destination: str | None = None
    rule: str | None = None
    call_class: str | None = None
    """What routing classified the call as (internal, mobile, inbound ...)."""
    answered_at: float | None = None
    ended_at: float | None = None
    disposition: Disposition | None = None
    hangup_status: int | None = None
    hangup_side: HangupSide | None = None
    reason: str | None = None
    trunk: str | None = None
    """The trunk the call came in over."""
    presented_number: str = ""
    presented_name: str | None = None
    """Who a call from a trunk says it is from; only shown, never trusted."""
    outbound: TrunkDialling | None = None
    """The way out through a trunk, once a leg was placed through one."""
    member: MemberCall | None = None
    resolved_number: str | None = None
    """For a member call: the member's number that rang (or answered)."""
    early_leg: Leg | None = None
    """The leg whose early dialog A's early dialog is relayed to (RFC 3311)."""
    session_interval: int | None = None
    """Session interval in force (RFC 4028), None when no timer runs."""
    floor_a: int = 0
    floor_b: int = 0
    """Min-SE each side asked for in a 422 (0: none)."""
    ring_due: float | None = None
    watch_due: float | None = None
    watch_reason: str = ""
    answered_monotonic: float | None = None
    rate: Rate | None = None
    """The tariff its trunk leg is priced by, fixed when the call is placed."""
    cost: int | None = None
    """Minor units, once ended: set when a trunk leg answered and a tariff applies."""
    reinvites: dict[tuple[int, int], tuple[InviteSession, Request]] | None = None
    """Re-INVITEs relayed and answered 2xx, awaiting the originator's ACK:
    the session and request that ACK is for (see pbx.calls.relay); made on
    first use, as most calls have none."""

    # ------------------------------------------------------------ identity

    @property
    def a_call_id(self) -> str:
        return self.a.dialog.call_id

    @property
    def a_request(self) -> Request:
        return self.a.invite

    @property
    def legs(self) -> list[Leg]:
        return self.fork.legs if self.fork is not None else []

    @property
    def caller_number(self) -> str:
        """The extension's number, or the number a trunk call presented."""
        return self.caller.number if self.caller is not None else (self.presented_number or "anonymous")

    @property
    def caller_name(self) -> str | None:
        return self.caller.name if self.caller is not None else self.presented_name

    def floor(self, side: Side) -> int | None:
        """The Min-SE ``side`` asked for in a 422, if it did (RFC 4028 §7.4)."""
        return (self.floor_a if side is Side.A else self.floor_b) or None

    def raise_floor(self, side: Side, min_se: int) -> None:
        if side is Side.A:
            self.floor_a = max(self.floor_a, min_se)
        else:
            self.floor_b = max(self.floor_b, min_se)

    def leg_of(self, session: InviteSession) -> Leg | None:
        return next((leg for leg in self.legs if leg.session is session), None)

    def session_of(self, side: Side) -> InviteSession | None:
        if side is Side.A:
            return self.a
        return self.winner.session if self.winner is not None else None

    # ------------------------------------------------------------ starting

    def run(self, action: Action, now: float) -> None:
        match action:
            case Ring():
                self.state = CallState.RINGING
                self.ring_due = now + action.ring_timeout
                self.fork = Fork(action.targets, self.controller.dialer(self), wall=self.controller.wall,
                                 unreachable=action.unreachable)
                result = self.fork.start(now)
                if result is not None:
                    self.fail(result)
            case End():
                self.end_unanswered(action.status, action.disposition, action.reason, action.side,
                                    list(action.headers), phrase=action.phrase)
            case _:
                assert_never(action)

    # ------------------------------------------------------------ events

    def on_event(self, session: InviteSession, event: SessionEvent, now: float) -> None:
        if session is self.a:
            self._on_a(event, now)
            return
        leg = self.leg_of(session)
        if leg is None:
            return
        match event:
            case Provisional():
                self._on_provisional(leg, event.response)
            case Answered():
                self._on_answered(leg, event.response, now)
            case Failed():
                if self.fork is not None and self.state is CallState.RINGING:
                    result = self.fork.on_failed(leg, event.status, event.reason, now)
                    if result is not None:
                        self.fail(result)
                elif leg.live:
                    leg.close(LegState.FAILED, event.status, self.controller.wall())
            case IntervalRaised():
                self.raise_floor(Side.B, event.min_se)
                log.info("call_leg_interval_raised", call_id=self.a_call_id, uuid=self.uuid, min_se=event.min_se)
            case ByeIn():
                self._on_bye(Side.B, session, event)
            case _:
                self.controller.relay.on_event(self, Side.B, session, event, now)

    def _on_a(self, event: SessionEvent, now: float) -> None:
        match event:
            case CancelReceived():
                if self.state in (CallState.RINGING, CallState.ROUTING):
                    if self.fork is not None:
                        self.fork.stop([])
                    self.end_unanswered(487, Disposition.CANCELLED, "caller_cancelled", HangupSide.CALLER)
            case Confirmed():
                winner = self.winner
                if winner is not None and not winner.session.acked:
                    # Delayed offer: A's ACK carries the answer for B.
                    winner.session.ack(event.ack.body, carried(event.ack))
            case AckTimedOut():
                self.end_by_pbx("no_ack", now, caller_gone=True)
            case ByeIn():
                self._on_bye(Side.A, self.a, event)
            case RequestIn() | AckIn() | ResponseIn() | CancelIn():
                self.controller.relay.on_event(self, Side.A, self.a, event, now)

    def _on_provisional(self, leg: Leg, response: Response) -> None:
        assert self.fork is not None
        self.fork.on_early(leg)
        if response.to.tag is not None and self.state is CallState.RINGING:
            self.early_leg = leg
        if self.state is CallState.RINGING and leg.live:
            self.a.respond(response.status, response.reason, carried(response), response.body)

    def _on_answered(self, leg: Leg, response: Response, now: float) -> None:
        fork = self.fork
        if fork is None or self.state is not CallState.RINGING:
            leg.session.hangup()  # the call is answered elsewhere or over: ACK and BYE (§15)
            return
        if not fork.on_answered(leg):
            return  # lost the race: the fork ACKed and BYEd it, as a 2xx cannot be refused
        self.winner = leg
        if self.member is not None:
            self._member_answered(self.member, leg)
        self.state = CallState.ANSWERED
        self.answered_at = self.controller.wall()
        self.ring_due = None
        timer_headers, interval = session_timer.response_headers(self.a_request, leg.session.invite, response)
        self.a.respond(200, None, [*carried(response), *timer_headers], response.body)
        self.controller.recorder.call_answered(self)
        log.info("call_answered", call_id=self.a_call_id, uuid=self.uuid, contact=leg.contact,
                 session_interval=interval)
        self.answered_monotonic = now
        self.watch(interval, now)

    def _member_answered(self, member: MemberCall, leg: Leg) -> None:
        """Record which of the member's numbers took the call."""
        decision = member.decision
        if leg.trunk is not None and decision.mobile is not None:
            self.resolved_number = decision.member.mobile
            self.destination = decision.mobile.number
            self.call_class = decision.mobile.call_class
        elif decision.extension is not None:
            self.resolved_number = decision.extension.number
            self.destination = decision.extension.number
        log.info("member_answered", call_id=self.a_call_id, uuid=self.uuid, group=decision.group,
                 member=decision.member.short, by="mobile" if leg.trunk is not None else "desk")

    def _on_bye(self, side: Side, session: InviteSession, event: ByeIn) -> None:
        leg = self.leg_of(session) if side is Side.B else None
        if side is Side.B and leg is not self.winner:
            # A fork that lost the race hangs up (we BYEd it too), or a callee
            # leaves its early dialog: only that leg ends.
            session.answer(event.key, event.request, 200)
            if leg is not None and leg.live:
                session.cancel()
            return
        if self.state is not CallState.ANSWERED:
            session.answer(event.key, event.request, 200)
            if side is Side.A and self.state is CallState.RINGING:
                # §15: the caller may end its early dialog with BYE; it means
                # what a CANCEL would.
                if self.fork is not None:
                    self.fork.stop([])
                self.end_unanswered(487, Disposition.CANCELLED, "caller_bye", HangupSide.CALLER)
            return
        side_name = HangupSide.CALLER if side is Side.A else HangupSide.CALLEE
        self._ending(Disposition.ANSWERED, 200, side_name, "bye")
        other = self.session_of(side.other)

        def send_ok() -> None:
            if other is not None:
                other.hangup()
            session.answer(event.key, event.request, 200)
            self.controller.forget(self)

        log.info("call_ended", call_id=self.a_call_id, uuid=self.uuid, side=side_name.value)
        self.controller.recorder.call_ended(self, send_ok)

    # ------------------------------------------------------------ time

    def deadline(self) -> float | None:
        """The earliest of the call's timers (asked after every event: kept
        to plain comparisons, as most calls have one or two timers)."""
        due = self.ring_due
        for other in (self.watch_due, self.a.deadline(),
                      self.fork.deadline() if self.fork is not None and self.state is CallState.RINGING else None,
                      self.winner.session.deadline() if self.winner is not None else None):
            if other is not None and (due is None or other < due):
                due = other
        return due

    def on_timer(self, now: float) -> None:
        for session in (self.a, self.winner.session if self.winner is not None else None):
            if session is not None and (due := session.deadline()) is not None and now >= due:
                for event in session.on_timer(now):
                    self.on_event(session, event, now)
        if self.ring_due is not None and now >= self.ring_due and self.state is CallState.RINGING:
            self.ring_due = None
            if self.fork is not None:
                self.fork.stop([])
            self.end_unanswered(480, Disposition.NO_ANSWER, "ring_timeout", HangupSide.PBX)
            return
        if self.fork is not None and self.state is CallState.RINGING:
            fork_due = self.fork.deadline()
            if fork_due is not None and now >= fork_due:
                result = self.fork.on_timer(now)
                if result is not None:
                    self.fail(result)
        if self.watch_due is not None and now >= self.watch_due:
            self.watch_due = None
            self.end_by_pbx(self.watch_reason, now)

    def watch(self, interval: int | None, now: float) -> None:
        """(Re)arm the one timer that ends an answered call: the session
        expiry when a session timer runs (RFC 4028 §10), else the maximum
        call duration counted from the answer."""
        self.session_interval = interval
        if interval is not None:
            self.watch_due, self.watch_reason = now + session_timer.expiry_delay(interval), "session_expired"
        else:
            answered = self.answered_monotonic if self.answered_monotonic is not None else now
            self.watch_due = answered + self.controller.settings.max_call_seconds
            self.watch_reason = "max_duration"

    # ------------------------------------------------------------ ending

    def _ending(self, disposition: Disposition, status: int, side: HangupSide, reason: str) -> None:
        self.state = CallState.ENDING
        # Every way a call ends passes here: its outside-call slot, if it
        # holds one, is free from now on.
        self.controller.outside_calls.release(self.uuid)
        self.ring_due = self.watch_due = None
        self.disposition, self.hangup_status, self.hangup_side, self.reason = disposition, status, side, reason
        self.ended_at = self.controller.wall()
        self.cost = self._cost(self.ended_at)
        # Its budget reservation goes too, and its cost counts.
        self.controller.budgets.settle(self.uuid, self.cost or 0)

    def _cost(self, ended_at: float) -> int | None:
        """What the call cost: priced only when a leg through a trunk
        answered (a group member's desk answering costs nothing), on the
        billsec its CDR will show."""
        rate, winner, answered_at = self.rate, self.winner, self.answered_at
        if rate is None or winner is None or winner.trunk is None or answered_at is None:
            return None
        billsec = whole_seconds(_utc(max(ended_at, answered_at)) - _utc(answered_at))
        return rate.tariff.cost(billsec)

    def fail(self, result: Outcome) -> None:
        """Every leg failed: tell the caller the fork's one outcome."""
        self.end_unanswered(result.status, result.disposition, result.reason, result.side)

    def end_unanswered(self, status: int, disposition: Disposition, reason: str, side: HangupSide,
                       headers: list[Header] | None = None, *, phrase: str | None = None) -> None:
        """End a call that was never answered, with ``status`` to the caller."""
        if self.state in (CallState.ENDING, CallState.ENDED, CallState.ANSWERED):
            return
        self._ending(disposition, status, side, reason)
        if phrase is None and status == 480:
            phrase = "Temporarily Unavailable"
        final_headers = headers if headers else [("reason", f'SIP;cause={status};text="{reason}"')]

        def send_final() -> None:
            self.a.respond(status, phrase, final_headers)
            self.controller.forget(self)

        event = "call_rejected" if disposition is Disposition.REJECTED else "call_failed"
        log.info(event, call_id=self.a_call_id, uuid=self.uuid, status=status, disposition=disposition.value,
                 reason=reason, rule=self.rule, call_class=self.call_class)
        self.controller.recorder.call_ended(self, send_final)

    def end_by_pbx(self, reason: str, now: float, *, caller_gone: bool = False) -> None:
        """End an answered call from here: BYE to both sides, once the CDR
        saying so is durable. ``caller_gone``: the caller never ACKed, so its
        BYE cannot wait for that ACK."""
        if self.state is not CallState.ANSWERED:
            return
        status = 200 if reason == "max_duration" else 408
        self._ending(Disposition.ANSWERED, status, HangupSide.PBX, reason)
        log.warning("call_ended_by_pbx", call_id=self.a_call_id, uuid=self.uuid, reason=reason,
                    session_interval=self.session_interval)
        headers: list[Header] = [("reason", f'SIP;cause={status};text="{reason}"')]

        def send_byes() -> None:
            self.a.hangup(headers, wait_for_ack=not caller_gone)
            if self.winner is not None:
                self.winner.session.hangup(headers)
            self.controller.forget(self)

        self.controller.recorder.call_ended(self, send_byes)
