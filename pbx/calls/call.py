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
  call end, its CDR survives kill -9;
- a call the PBX answers itself (an auto attendant, an announcement before
  a refusal) has a local media side (:mod:`pbx.calls.local`) until it ends
  or a transfer is answered; meanwhile A's in-dialog requests are the
  PBX's to answer (keys in INFO, re-INVITEs), never relayed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, assert_never

import structlog

from pbx.calls.budgets import BudgetHit, transfer_hold
from pbx.calls.limits import LimitHit
from pbx.calls.features import ForwardOnFail
from pbx.calls.fork import COMPLETED_ELSEWHERE, Fork, Leg, LegState, Outcome
from pbx.calls.hunt import HuntRing
from pbx.calls.hunt_queue import position_phrase
from pbx.calls.local import PHRASE_FOR_STATUS, SDP_TYPE, CallMedia, DirectMedia, MediaUnavailable
from pbx.calls import anchoring
from pbx.calls.media_policy import local_encryption
from pbx.calls import transfer as transfers
from pbx.calls import conference, parking
from pbx.calls.plan import (Action, AnswerConference, AnswerMenu, AskCode, End, LeaveMessage, OpenMailbox, Overflowing,
                            Ring, quoted_text as quoted)
from pbx.ivr.menu import Hangup, Transfer
from pbx.media.sdp import SdpError, cross_answer
from pbx.cdr.records import Disposition, HangupSide, whole_seconds
from pbx.routing.dialplan import Extension
from pbx.routing.engine import RingMember, ToTrunk
from pbx.routing.hunt_groups import Condition
from pbx.routing.tariffs import Rate
from pbx.routing.voicemail import PinPolicy
from pbx.sip import session_timer
from pbx.sip.message import Header, Request, Response
from pbx.sip.session import (
    ALLOW,
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
from pbx.voicemail.menu import MailboxMenu
from pbx.voicemail.session import Message, MessageRequest

if TYPE_CHECKING:
    from pbx.calls.codes import AccountUse, CodeCall
    from pbx.calls.anchoring import Anchor
    from pbx.calls.hold import MusicOnHold
    from pbx.calls.hunt_queue import Waiting
    from pbx.calls.parking import Parked
    from pbx.calls.controller import CallController
    from pbx.calls.transfer import CallTransfer

log = structlog.get_logger("pbx.calls")

# Headers carried from one leg's request/response to the other's.
CARRIED = ("content-type", "content-disposition", "content-encoding", "content-language")
# What most calls have of a hunt group's member tariffs: one shared empty
# table (read-only), not one each. The legs a call keeps for the CDR
# besides its fork's are tuples for the same reason: most calls have none.
_NO_RATES: Mapping[str, Rate] = MappingProxyType({})


class CallState(enum.Enum):
    ROUTING = "routing"
    LOCAL = "local"          # the PBX answers (menu) or speaks before refusing; no B leg rings
    RINGING = "ringing"      # B legs placed, no 2xx yet (a menu's transfer too)
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


@dataclass(slots=True, kw_only=True)
class VoicemailUse:
    """A call that went to ``mailbox``: the message's length once left."""

    mailbox: str
    condition: str
    seconds: float | None = None
    before: str | None = None
    """The menus the caller went through first, if any."""

    @property
    def path(self) -> str:
        """The CDR's ``ivr_path``: ``voicemail[2002 no_answer, message 12.3 s]``."""
        message = f"message {self.seconds:.1f} s" if self.seconds is not None else "no message"
        return (f"{self.before} " if self.before else "") + f"voicemail[{self.mailbox} {self.condition}, {message}]"


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
    timer_due: float | None = None
    """The controller's: the earliest of the deadlines above as its timer
    heap holds it (None: no entry counts)."""
    answered_monotonic: float | None = None
    hunt: HuntRing | None = None
    """The hunt group being rung (or that answered), if any."""
    hunt_group: str | None = None
    """The CDR's hunt group: the group dialled, then the one that answered."""
    answered_by: str | None = None
    """The hunt group member who took the call."""
    earlier_legs: tuple[Leg, ...] = ()
    """Legs of the forks an overflow replaced, for the CDR."""
    overflows: int = 0
    on_call: tuple[str, ...] = ()
    """Extensions this call keeps busy (for ``skip_busy`` hunt groups)."""
    media: CallMedia | None = None
    """The local media side while the PBX answers the call itself."""
    ivr_path: str | None = None
    """Menus the caller went through and what was keyed (the CDR's)."""
    language: str = "en"
    announced: End | None = None
    """The refusal an announcement plays before."""
    code: CodeCall | None = None
    """The account code business of a call routing said needs one."""
    account: AccountUse | None = None
    """The account code the call is placed with: its rights, its billing."""
    code_decision: ToTrunk | None = None
    """Where the call goes with the code's rights, once the code is right."""
    unanswered: Disposition = Disposition.CANCELLED
    """How a call the PBX answered itself (a code prompt) but nobody else
    did ends in the CDR, should it end before anyone answers."""
    rate: Rate | None = None
    """The tariff its trunk leg is priced by, fixed when the call is placed."""
    kept_trunk: Leg | None = None
    """The trunk leg that answered a paid call whose caller then
    transferred it away: the call is priced by it to the end."""
    transfer_rate: Rate | None = None
    """The tariff of the outside leg a blind transfer is placing, fixed
    when it is routed (on the transfer's payer, who holds its budget)."""
    transfer_leg: Leg | None = None
    transfer_joined: float | None = None
    """That leg once it joined the call, and the wall time it did: it is
    priced from then on, on top of what the call cost before."""
    member_rates: Mapping[str, Rate] = field(default_factory=lambda: _NO_RATES)
    """A hunt group's outside members' tariffs, by member key: the one
    whose leg answers prices the call (:mod:`pbx.calls.pricing`)."""
    cost: int | None = None
    """Minor units, once ended: set when a trunk leg answered and a tariff applies."""
    billed_to: Extension | None = None
    """Who pays when not the caller: the extension whose forward (or
    transfer, or mailbox call-back) took the call out through a trunk."""
    shared_hold: bool = False
    """It asked the shared store for a budget reservation (released at the end)."""
    transfer_shared_hold: bool = False
    """A blind transfer's outside leg is held in the shared store too
    (under ``transfer_hold(uuid)``; released when the leg or the call ends)."""
    reinvites: dict[tuple[int, int], tuple[InviteSession, Request]] | None = None
    """Re-INVITEs relayed and answered 2xx, awaiting the originator's ACK:
    the session and request that ACK is for (see pbx.calls.relay); made on
    first use, as most calls have none."""
    paid_by: Extension | None = None
    """Whose rights the caller's side uses when it is not the caller's own
    (an account code's): see :meth:`payer`."""
    transferring: CallTransfer | None = None
    """A transfer in progress (pbx.calls.transfer)."""
    transfer_legs: tuple[Leg, ...] = ()
    """Legs transfers placed or took over, for the CDR."""
    retired: tuple[InviteSession, ...] = ()
    """Sessions of parties that left by a transfer: answered, not relayed."""
    transfers: list[str] = field(default_factory=list)
    """The CDR's words for each transfer: ``blind 2002 -> 2003``."""
    linked_call: str | None = None
    """The other call an attended transfer joined to this one (its uuid)."""
    first_call_id: str | None = None
    """The caller's Call-ID, kept once a transfer moved the A side."""
    forward_on_fail: ForwardOnFail | None = None
    """The rung extension's busy and no-answer forwards (pbx.calls.features)."""
    forwards: int = 0
    """Forwards followed so far (bounded by the plan's forward_limit)."""
    music: MusicOnHold | None = None
    """Music on hold, once a side put the other on hold (pbx.calls.hold)."""
    queued: Waiting | None = None
    """The caller's place in a hunt group's queue while it waits there."""
    parked: Parked | None = None
    """The call's slot while it waits there to be picked up (pbx.calls.parking)."""
    mailbox: str | None = None
    """The mailbox that takes the call if the extension rung does not."""
    voicemail: VoicemailUse | None = None
    """The message being left, once the call went to a mailbox."""
    anchor: Anchor | None = None
    """The PBX's media relay, when the call is anchored (pbx.calls.anchoring)."""
    anchor_swapped: bool = False
    """A transfer by the caller made the anchor's leg B the call's A side."""
    bridge_srtp: bool = False
    """Anchor it whatever the recording: its legs cannot share SRTP keys."""
    recording_file: str | None = None
    """The recording's file name, once the call ended (the CDR links it)."""

    # ------------------------------------------------------------ identity

    @property
    def a_call_id(self) -> str:
        return self.first_call_id or self.a.dialog.call_id

    @property
    def a_request(self) -> Request:
        return self.a.invite

    @property
    def local(self) -> bool:
        """The PBX itself answered A (a menu, or a transfer from it ringing)."""
        return self.media is not None and self.a.answered

    @property
    def routing(self) -> bool:
        """Not yet ringing, answered or refused (an account code being looked up)."""
        return self.state is CallState.ROUTING

    @property
    def answering_locally(self) -> bool:
        """The PBX itself talks to the caller (a menu, a prompt, an announcement)."""
        return self.state is CallState.LOCAL and self.media is not None

    @property
    def legs(self) -> list[Leg]:
        legs = self.fork.legs if self.fork is not None else []
        if self.transfer_legs or self.transferring is not None:
            pending = self.transferring.legs if self.transferring is not None else []
            return [*self.earlier_legs, *legs, *self.transfer_legs, *pending]
        return [*self.earlier_legs, *legs] if self.earlier_legs else legs

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

    # ------------------------------------------------------------ who pays

    def party(self, side: Side) -> Extension | None:
        """The extension on ``side``: the caller, or the callee that
        answered (None for a party through a trunk)."""
        if side is Side.A:
            return self.caller
        winner = self.winner
        if winner is None or winner.trunk is not None or winner.target is None:
            return None
        return self.controller.plan.extension(winner.target)

    def party_of(self, session: InviteSession) -> Extension | None:
        if session is self.a:
            return self.party(Side.A)
        if self.winner is not None and session is self.winner.session:
            return self.party(Side.B)
        return None

    def payer(self, side: Side) -> Extension | None:
        """Whose rights a leg placed on ``side``'s behalf is checked against
        (a transfer, a forward): the caller's own, or what the call was
        placed with (``paid_by``, an account code's rights); the callee's
        own for the callee. Rights follow the call, never more. The one
        place that answers "who pays"."""
        if side is Side.A:
            return self.paid_by or self.caller
        return self.party(side)

    # ------------------------------------------------------------ transfers

    def retire(self, session: InviteSession) -> None:
        """``session``'s party left by a transfer: its dialog only ends."""
        if session not in self.retired:
            self.retired += (session,)

    def transfer_done(self, transfer: CallTransfer) -> None:
        """The transfer is over (done or not): its legs stay, for the CDR."""
        self.transferring = None
        self.transfer_legs += tuple(leg for leg in transfer.legs if leg not in self.transfer_legs)

    def transferred(self, kind: str, side: Side, by: str, target: str, leg: Leg) -> None:
        """The transferee and ``leg`` are the call's sides from now on."""
        if side is Side.A:
            # The caller left: the callee takes its place as the A side.
            self.first_call_id = self.a_call_id
            previous = self.winner
            assert previous is not None
            self.a = previous.session
            if previous.trunk is not None and self.kept_trunk is None and previous is not self.transfer_leg:
                # The provider's party stays in the call: it is still billed
                # (one a transfer brought in is billed as such already).
                self.kept_trunk = previous
            if self.anchor is not None:
                self.anchor_swapped = not self.anchor_swapped
        self.winner = leg
        self.destination = target
        if leg.trunk is not None and self.transfer_rate is not None:
            self.transfer_leg, self.transfer_joined = leg, self.controller.wall()
            self.rate = self.rate or self.transfer_rate  # the CDR names a tariff
        if self.music is not None:
            self.music.stop()  # the transferee was re-INVITEd to the target
        presence = self.controller.presence
        self.on_call = presence.release(self.on_call)
        for number in (self.party(Side.A), self.party(Side.B)):
            if number is not None:
                self.on_call = presence.hold(self.on_call, number.number)
        self.transfers.append(f"{kind} {by} -> {target}")

    def picked_up(self, picker_call: Call, picker: Extension, rung: str, now: float) -> bool:
        """``picker_call`` (the picker's ``*8``) takes this ringing call: the
        phones that ring stop (CANCEL with "Call completed elsewhere"), the
        caller and the picker are answered, each with an answer pointing at
        the other's offer, and the picker's dialog becomes this call's
        callee. False when their offers have nothing in common (or one is
        missing): nothing changes then."""
        offer, picker_offer = self.a_request.body, picker_call.a_request.body
        if self.anchor is not None:
            # Anchored (recorded): the picker takes the anchor's callee leg.
            answers = anchoring.answer_picker(self, picker_call.a, picker, picker_offer)
            if answers is None:
                return False
            to_caller, to_picker = answers
        else:
            try:
                to_caller = cross_answer(offer, picker_offer, session_id=abs(hash(self.uuid)) % 10**9)
                to_picker = cross_answer(picker_offer, offer, session_id=abs(hash(picker_call.uuid)) % 10**9)
            except SdpError:
                return False
        if self.fork is not None:
            self.fork.stop([COMPLETED_ELSEWHERE])
        session = picker_call.a
        leg = Leg(contact=session.dialog.remote_target, session=session, started_at=picker_call.started_at,
                  target=picker.number, state=LegState.ANSWERED)
        # The picker's own call ends here (answered, linked to this one);
        # its dialog is this call's from now on.
        picker_call.answered_at = self.controller.wall()
        session.respond(200, None, [SDP_TYPE], to_picker)
        self.controller.recorder.call_answered(picker_call)
        self.controller.adopt(self, session)
        picker_call.hand_over(session, into=self, reason="picked_up")
        self.transfer_legs += (leg,)
        self.winner, self.state, self.ring_due = leg, CallState.ANSWERED, None
        self.destination = picker.number
        self.transfers.append(f"pickup {picker.number} <- {rung}")
        self.on_call = self.controller.presence.hold(self.on_call, picker.number)
        self.answered_at = self.controller.wall()
        self.answered_monotonic = now
        self.a.respond(200, None, [SDP_TYPE], to_caller)
        self.controller.recorder.call_answered(self)
        self.watch(None, now)
        return True

    def hand_over(self, session: InviteSession, *, into: Call, reason: str = "transferred") -> None:
        """An attended transfer takes ``session`` (this call's dialog with
        the target) into call ``into``: this call ends for the rest of it,
        its CDR linked to that call."""
        self.linked_call, into.linked_call = into.uuid, self.uuid
        others = [s for s in (self.a, self.winner.session if self.winner is not None else None)
                  if s is not None and s is not session]
        if self.winner is not None and self.winner.session is session:
            if self.winner.trunk is not None and self.kept_trunk is None:
                # Its provider's party was on this call until now: billed so far.
                self.kept_trunk = self.winner
            self.winner = None
        self.retire(session)  # never hung up from here
        self._ending(Disposition.ANSWERED, 200, HangupSide.CALLER, reason)
        log.info("call_ended", call_id=self.a_call_id, uuid=self.uuid, side="transfer", into=into.uuid)

        def hang_up() -> None:
            for other in others:
                other.hangup()
            self.controller.forget(self)

        self.controller.recorder.call_ended(self, hang_up)

    # ------------------------------------------------------------ starting

    def run(self, action: Action, now: float) -> None:
        match action:
            case Ring():
                self._ring(action, now)
            case End():
                if action.announcement is not None and self._announce(action, now):
                    return
                self.end_unanswered(action.status, action.disposition, action.reason, action.side,
                                    list(action.headers), phrase=action.phrase)
            case Overflowing():
                unavailable = action.unavailable
                log.info("hunt_unavailable", call_id=self.a_call_id, uuid=self.uuid, group=unavailable.group.number,
                         condition=unavailable.condition)
                self.controller.overflow(self, unavailable.group, unavailable.condition, unavailable.call_class)
            case AnswerMenu():
                self._answer_menu(action, now)
            case AskCode():
                self._ask_code(action, now)
            case AnswerConference():
                self._answer_conference(action, now)
            case LeaveMessage():
                self._leave_message(action, now)
            case OpenMailbox():
                self._open_mailbox(action, now)
            case _:
                assert_never(action)

    def _ring(self, action: Ring, now: float) -> None:
        shared = self.controller.shared_budgets
        if action.hold is not None and shared is not None:
            # The budgets are shared with other nodes: nothing rings until
            # the store has the reservation (pbx.calls.budgets).
            self.shared_hold = True
            shared.reserve(self.uuid, action.hold, lambda hit: self._held(action, hit))
            return
        self.state = CallState.RINGING
        if self.fork is not None:  # an overflow: the legs rung so far stay in the CDR
            self.earlier_legs += tuple(self.fork.legs)
            self.fork.release()
            self.destination = None  # the new fork's first leg names it
        self.hunt = action.hunt
        if action.hunt is not None:
            self.hunt_group = action.hunt.group.number
        self.ring_due = now + action.ring_timeout
        self.forward_on_fail = action.forward
        self.mailbox = action.voicemail
        anchoring.prepare(self, action)
        self.fork = Fork(action.targets, self.controller.dialer(self), wall=self.controller.wall,
                         unreachable=action.unreachable)
        result = self.fork.start(now)
        if result is not None:
            self.fail(result)

    def _held(self, action: Ring, hit: BudgetHit | LimitHit | None) -> None:
        """The store answered ``action``'s reservation (outside-call slot,
        budgets)."""
        hold, shared = action.hold, self.controller.shared_budgets
        assert hold is not None and shared is not None
        if self.state in (CallState.ENDING, CallState.ENDED):
            shared.release(self.uuid)  # the caller gave up meanwhile: a late hold must not stay
            return
        then: Action
        if hit is None:
            then = replace(action, hold=None)
        elif isinstance(hit, LimitHit):
            assert hold.outside is not None
            then = hold.outside.refuse(hit)
        else:
            then = hold.refuse(hit)
        self.controller.resume(self, then)

    # ------------------------------------------------------------ answering locally

    def _open_media(self) -> CallMedia | None:
        service = self.controller.media
        if service is None:
            return None
        try:
            encryption = local_encryption(
                self.caller.media_encryption if self.caller is not None else None,
                on_tls=self.a.dest.transport == "tls",
                allow_plain_signalling=self.controller.plan.security.sdes_over_plain_signalling)
            return service.open(lambda work: self.controller.act(self, work), encryption)
        except MediaUnavailable as err:
            log.warning("media_unavailable", call_id=self.a_call_id, uuid=self.uuid, error=str(err))
            return None

    def _announce(self, action: End, now: float) -> bool:
        """Say why before refusing (183 with SDP, the prompt, then the final
        response): only when A offered SDP, so early media can flow."""
        if not self.a_request.body:
            return False
        media = self._open_media()
        if media is None:
            return False
        try:
            sdp = media.answer(self.a_request.body)
        except SdpError:
            media.close()
            return False
        self.media, self.announced, self.state = media, action, CallState.LOCAL
        self.ring_due = now + ANNOUNCEMENT_LIMIT
        self.a.respond(183, "Session Progress", [SDP_TYPE], sdp)
        log.info("call_announcement", call_id=self.a_call_id, uuid=self.uuid, phrase=action.announcement,
                 status=action.status, language=action.language)
        media.announce(action.announcement or "", action.language, self._announced)
        return True

    def _announced(self) -> None:
        action = self.announced
        if action is None or self.state is not CallState.LOCAL:
            return
        self.end_unanswered(action.status, action.disposition, action.reason, action.side, list(action.headers),
                            phrase=action.phrase)

    def _answer_locally(self) -> CallMedia | None:
        """Answer A with our own media side (a 200 with our SDP), or end
        the call when that cannot be done."""
        media = self._open_media()
        if media is None:
            self.end_unanswered(503, Disposition.CONGESTION, "media_unavailable", HangupSide.PBX)
            return None
        offer = self.a_request.body
        try:
            sdp = media.answer(offer) if offer else media.offer()
        except SdpError as err:
            media.close()
            self.end_unanswered(488, Disposition.FAILED, "sdp_refused", HangupSide.PBX,
                                [("warning", f'399 {self.controller.plan.domain} "{quoted(str(err))}"')])
            return None
        self.media, self.state = media, CallState.LOCAL
        self.a.respond(200, None, [SDP_TYPE], sdp)
        return media

    def _answer_menu(self, action: AnswerMenu, now: float) -> None:
        media = self._answer_as(f"menu:{action.menu.key}", action.language, now, "call_answered_by_menu")
        if media is not None:
            media.run_menu(self.controller.menu_run(action.menu), action.language, self._menu_action,
                           self.set_path)

    def _answer_conference(self, action: AnswerConference, now: float) -> None:
        media = self._answer_as(f"conference:{action.room.key}", action.language, now,
                                "call_answered_by_conference")
        if media is not None:
            conference.enter(self, action.room, media, action.language)

    def _answer_as(self, destination: str, language: str, now: float, event: str) -> CallMedia | None:
        """Answer the call for good as ``destination`` (a menu, a
        conference room): the CDR's answer time and destination, the
        maximum duration from now."""
        media = self._answer_locally()
        if media is None:
            return None
        self.language = language
        self.destination = destination
        self.answered_at = self.controller.wall()
        self.answered_monotonic = now
        self.controller.recorder.call_answered(self)
        log.info(event, call_id=self.a_call_id, uuid=self.uuid, destination=destination, language=language)
        self.watch(None, now)
        return media

    def _ask_code(self, action: AskCode, now: float) -> None:
        """Answer and ask for an account code. Not the call's answer: the
        CDR's answer time is the callee's (a prompt is not billed)."""
        media = self._answer_locally()
        if media is None:
            return
        self.language = action.language
        codes = self.controller.account_codes
        log.info("account_code_prompt", call_id=self.a_call_id, uuid=self.uuid, mode=action.decision.mode,
                 language=action.language)
        self.watch(None, now)
        media.run_code_prompt(codes.prompt(), action.language, lambda chosen: codes.on_prompt(self, chosen),
                              self.set_path)

    # ------------------------------------------------------------ voicemail

    def _to_voicemail(self, disposition: Disposition, now: float) -> bool:
        """The extension rung did not take the call (and no forward did):
        its mailbox does, if it has one."""
        mailbox = self.mailbox
        if mailbox is None or self.state is not CallState.RINGING:
            return False
        self.mailbox = None
        if self.fork is not None:
            self.fork.stop([])
        # A caller a menu put through is answered already: the message is
        # taken on the same media.
        self._leave_message(LeaveMessage(mailbox=mailbox, disposition=disposition), now)
        return True

    def _leave_message(self, action: LeaveMessage, now: float) -> None:
        """Answer (unless a menu did already) and take a message: the
        greeting, the beep, the recording. The CDR keeps how the call would
        have ended (``unanswered``), its reason says voicemail."""
        controller = self.controller
        owner = controller.plan.extension(action.mailbox)
        settings = controller.plan.voicemail.for_extension(owner) if owner is not None else None
        if owner is None or settings is None or not settings.enabled:
            self.end_unanswered(480, action.disposition, "voicemail_unavailable", HangupSide.PBX)
            return
        media = self.media if self.local else self._answer_locally()
        if media is None:
            return
        self.state, self.ring_due = CallState.LOCAL, None
        self.unanswered = action.disposition
        self.destination = action.mailbox
        condition = {Disposition.BUSY: "busy", Disposition.NO_ANSWER: "no_answer"}.get(action.disposition,
                                                                                        "unavailable")
        # A menu's path so far stays in front (``main[2] voicemail[...]``).
        self.voicemail = VoicemailUse(mailbox=action.mailbox, condition=condition, before=self.ivr_path)
        self.ivr_path = self.voicemail.path
        self.language = controller.plan.language_for(self.caller)
        log.info("call_to_voicemail", call_id=self.a_call_id, uuid=self.uuid, mailbox=action.mailbox,
                 condition=condition)
        if self.answered_monotonic is None:
            self.watch(None, now)
        request = MessageRequest(mailbox=action.mailbox, owner_name=owner.name,
                                 max_seconds=float(settings.max_message_seconds),
                                 silence_seconds=settings.silence_seconds, language=self.language)
        media.leave_message(request, self._message_left, self._voicemail_done)

    def _message_left(self, message: Message) -> None:
        """The caller's message is complete: kept by the mailbox service,
        its length in the CDR (run before the CDR row is written, even when
        the caller's hang-up ended it)."""
        use = self.voicemail
        if use is None:
            return
        use.seconds = message.seconds
        self.ivr_path = use.path
        boxes = self.controller.voicemail
        if boxes is not None:
            boxes.deposit(mailbox=use.mailbox, audio=message.audio, caller_number=self.caller_number,
                          caller_name=self.caller_name, call_uuid=self.uuid)

    def _voicemail_done(self, reason: str) -> None:
        self.end_by_pbx(reason, self.controller.now, status=200)

    def _open_mailbox(self, action: OpenMailbox, now: float) -> None:
        """``*97``/``*98``: answer and run the mailbox menu."""
        plan = self.controller.plan
        media = self._answer_locally()
        if media is None:
            return
        self.language = action.language
        self.destination = f"voicemail:{action.mailbox or '?'}"
        self.answered_at = self.controller.wall()
        self.answered_monotonic = now
        self.controller.recorder.call_answered(self)
        self.watch(None, now)
        company = plan.voicemail

        def pin_policy(mailbox: str) -> PinPolicy:
            owner = plan.extension(mailbox)
            return company.for_extension(owner).pin if owner is not None else PinPolicy()

        log.info("voicemail_menu", call_id=self.a_call_id, uuid=self.uuid, mailbox=action.mailbox,
                 authenticated=action.authenticated)
        menu = MailboxMenu(mailbox=action.mailbox, authenticated=action.authenticated, pin_policy=pin_policy)
        media.run_mailbox(menu, action.language, self._call_back, self._mailbox_closed, self.set_path)

    def _call_back(self, mailbox: str, number: str) -> None:
        if self.state is CallState.LOCAL:
            self.controller.call_back(self, mailbox, number)

    def _mailbox_closed(self, reason: str) -> None:
        if self.state is CallState.LOCAL:
            self.end_by_pbx(reason, self.controller.now, status=200)

    def end_locally(self, reason: str, disposition: Disposition, now: float) -> None:
        """End a call the PBX answered but nobody else did (a code prompt
        that gave up), as ``disposition``."""
        self.unanswered = disposition
        self.end_by_pbx(reason, now, status=200)

    def set_path(self, path: str) -> None:
        """What the caller went through (menus, entries), for the CDR."""
        self.ivr_path = path

    def _menu_action(self, action: Transfer | Hangup) -> None:
        if self.state is not CallState.LOCAL:
            return
        match action:
            case Hangup():
                self.end_by_pbx(action.reason, self.controller.now, status=200)
            case Transfer():
                self.controller.transfer(self, action)

    def transfer(self, action: Action, rule: str, now: float) -> None:
        """Ring what the menu chose while the caller hears ringback."""
        media = self.media
        if media is None or self.state is not CallState.LOCAL:
            return
        self.rule = rule
        match action:
            case Ring():
                self.destination = None
                media.ringback(self.controller.plan.media.tones)
                self._ring(action, now)
            case End():
                self._transfer_failed(Outcome(action.status, action.disposition, action.reason, action.side),
                                      phrase=action.announcement)
            case AnswerMenu():
                # A queue overflowing to a menu: the caller is answered
                # already, the menu runs on the same media.
                self.language = action.language
                self.destination = f"menu:{action.menu.key}"
                if self.answered_at is None:
                    self.answered_at, self.answered_monotonic = self.controller.wall(), now
                    self.controller.recorder.call_answered(self)
                media.run_menu(self.controller.menu_run(action.menu), action.language, self._menu_action,
                               self.set_path)
            case LeaveMessage():
                self._leave_message(action, now)
            case AskCode() | AnswerConference() | OpenMailbox():
                self._transfer_failed(Outcome(480, Disposition.UNAVAILABLE, "menu_not_a_transfer"))
            case Overflowing():
                self._transfer_failed(Outcome(480, Disposition.UNAVAILABLE, f"hunt_{action.unavailable.condition}"))
            case _:
                assert_never(action)

    def _transfer_failed(self, result: Outcome, phrase: str | tuple[str, ...] | None = None) -> None:
        """Nobody took the transfer: say so (``phrase``, else the words
        for its status), then hang up."""
        media = self.media
        if media is None:
            return
        self.state, self.ring_due = CallState.LOCAL, None
        self.unanswered = result.disposition
        log.info("menu_transfer_failed", call_id=self.a_call_id, uuid=self.uuid, status=result.status,
                 reason=result.reason)
        media.announce(phrase or PHRASE_FOR_STATUS.get(result.status, "not_available"), self.language,
                       lambda: self.end_by_pbx(f"transfer_{result.reason}", self.controller.now, status=200))

    def _transfer_answered(self, leg: Leg, response: Response, now: float) -> None:
        """The callee took the transfer: the caller's media goes to it
        directly, the PBX leaves the media path."""
        media = self.media
        assert media is not None
        self.media = None
        self.winner, self.state, self.ring_due = leg, CallState.ANSWERED, None
        if self.answered_at is None:  # a code prompt answered the caller, the callee answers the call
            self.answered_at, self.answered_monotonic = self.controller.wall(), now
        # An anchored call's caller goes to the anchor, not to the callee.
        remote = anchoring.to_caller(self, response.body, final=True) if response.body else b""
        offer = media.reoffer(remote) if remote else b""
        media.close()
        self.controller.recorder.call_answered(self)
        log.info("menu_transfer_answered", call_id=self.a_call_id, uuid=self.uuid, contact=leg.contact,
                 destination=self.destination)
        if not offer:
            self.end_by_pbx("no_sdp_from_callee", now)
            return
        direct = DirectMedia()
        direct.request = self.a.send("INVITE", headers=[SDP_TYPE], body=offer, ref=direct, retry_glare=True)
        self.watch(None, now)

    def _direct_media(self, ref: DirectMedia, event: ResponseIn, now: float) -> None:
        winner = self.winner
        if event.response is not None and 200 <= event.status < 300 and ref.request is not None:
            self.a.ack_reinvite(ref.request)
            if winner is not None and not winner.session.acked:
                # Delayed offer: the callee's 2xx offered, the caller's re-INVITE 2xx answers.
                winner.session.ack(event.response.body, [SDP_TYPE])
            log.info("direct_media", call_id=self.a_call_id, uuid=self.uuid)
            return
        log.warning("direct_media_refused", call_id=self.a_call_id, uuid=self.uuid, status=event.status)
        self.end_by_pbx("reinvite_refused", now)

    def _local_request(self, event: RequestIn | AckIn) -> None:
        """A's in-dialog request while the PBX is its peer."""
        media = self.media
        assert media is not None
        if isinstance(event, AckIn):
            if event.request.body:
                try:
                    media.accept(event.request.body)
                except SdpError as err:
                    log.info("sdp_answer_refused", call_id=self.a_call_id, uuid=self.uuid, error=str(err))
            return
        request, key = event.request, event.key
        if request.method == "INFO":
            status = media.info(request.get("content-type") or "", request.body)
            self.a.answer(key, request, status)
        elif request.method in ("INVITE", "UPDATE"):
            try:
                sdp = media.answer(request.body) if request.body else media.offer()
            except SdpError as err:
                self.a.answer(key, request, 488, headers=[("warning", f'399 {self.controller.plan.domain}'
                                                                       f' "{quoted(str(err))}"')])
                return
            self.a.answer(key, request, 200, headers=[SDP_TYPE], body=sdp)
        else:
            self.a.answer(key, request, 405, headers=[("allow", ALLOW)])

    # ------------------------------------------------------------ events

    def on_event(self, session: InviteSession, event: SessionEvent, now: float) -> None:
        if self.transferring is not None and transfers.on_event(self, self.transferring, session, event, now):
            return
        if self.parked is not None and parking.on_event(self, session, event, now):
            return
        if session in self.retired:
            if isinstance(event, ByeIn | RequestIn):
                session.answer(event.key, event.request, 200 if isinstance(event, ByeIn) else 481)
            return
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
                if self.media is not None and not self.a.answered:  # during an announcement
                    self.end_unanswered(487, Disposition.CANCELLED, "caller_cancelled", HangupSide.CALLER)
                elif self.state in (CallState.RINGING, CallState.ROUTING):
                    if self.fork is not None:
                        self.fork.stop([])
                    self.end_unanswered(487, Disposition.CANCELLED, "caller_cancelled", HangupSide.CALLER)
            case Confirmed() if self.media is not None:
                if event.ack.body and not self.a_request.body:
                    try:
                        self.media.accept(event.ack.body)  # the answer to the offer in our 200
                    except SdpError as err:
                        log.info("sdp_answer_refused", call_id=self.a_call_id, uuid=self.uuid, error=str(err))
                        self.end_by_pbx("sdp_refused", now)
            case Confirmed():
                winner = self.winner
                if winner is not None and not winner.session.acked:
                    # Delayed offer: A's ACK carries the answer for B.
                    winner.session.ack(event.ack.body, carried(event.ack))
            case AckTimedOut():
                self.end_by_pbx("no_ack", now, caller_gone=True)
            case ByeIn():
                self._on_bye(Side.A, self.a, event)
            case ResponseIn() if isinstance(event.ref, DirectMedia):
                self._direct_media(event.ref, event, now)
            case RequestIn() | AckIn() if self.media is not None:
                self._local_request(event)
            case RequestIn() | AckIn() | ResponseIn() | CancelIn():
                self.controller.relay.on_event(self, Side.A, self.a, event, now)

    def _on_provisional(self, leg: Leg, response: Response) -> None:
        assert self.fork is not None
        self.fork.on_early(leg)
        if self.local:
            return  # the caller hears our ringback; the callee's early dialog stays with us
        if response.to.tag is not None and self.state is CallState.RINGING:
            self.early_leg = leg
        if self.state is CallState.RINGING and leg.live:
            self.a.respond(response.status, response.reason, carried(response),
                           anchoring.to_caller(self, response.body, final=False) if response.body else b"")

    def _on_answered(self, leg: Leg, response: Response, now: float) -> None:
        fork = self.fork
        if fork is None or self.state is not CallState.RINGING:
            leg.session.hangup()  # the call is answered elsewhere or over: ACK and BYE (§15)
            return
        if not fork.on_answered(leg):
            return  # lost the race: the fork ACKed and BYEd it, as a 2xx cannot be refused
        if self.local:
            if self.queued is not None:
                self.controller.dequeue(self)
            self._hunt_answered(leg)
            self._transfer_answered(leg, response, now)
            return
        self.winner = leg
        if self.member is not None:
            self._member_answered(self.member, leg)
        if leg.target is not None and leg.trunk is None:
            self.on_call = self.controller.presence.hold(self.on_call, leg.target)
        self._hunt_answered(leg)
        self.state = CallState.ANSWERED
        self.answered_at = self.controller.wall()
        self.ring_due = None
        timer_headers, interval = session_timer.response_headers(self.a_request, leg.session.invite, response)
        self.a.respond(200, None, [*carried(response), *timer_headers],
                       anchoring.to_caller(self, response.body, final=True))
        self.controller.recorder.call_answered(self)
        log.info("call_answered", call_id=self.a_call_id, uuid=self.uuid, contact=leg.contact,
                 session_interval=interval)
        self.answered_monotonic = now
        self.watch(interval, now)

    def _hunt_answered(self, leg: Leg) -> None:
        if self.hunt is not None:
            self.hunt_group = self.hunt.group.number
            self.answered_by = leg.member
            self.destination = leg.target or self.destination
            self.controller.hunt_answered(self)

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
        if side is Side.A and self.local:
            # The caller left the menu, or the transfer while it rang.
            if self.fork is not None and self.state is CallState.RINGING:
                self.fork.stop([])
            self._ending(Disposition.ANSWERED, 200, HangupSide.CALLER, "bye")
            log.info("call_ended", call_id=self.a_call_id, uuid=self.uuid, side="caller", path=self.ivr_path)

            def answer_bye() -> None:
                session.answer(event.key, event.request, 200)
                self.controller.forget(self)

            self.controller.recorder.call_ended(self, answer_bye)
            return
        if self.state is not CallState.ANSWERED:
            session.answer(event.key, event.request, 200)
            if side is Side.A and self.media is not None:
                self.end_unanswered(487, Disposition.CANCELLED, "caller_bye", HangupSide.CALLER)
            elif side is Side.A and self.state is CallState.RINGING:
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
            if other is not None and other not in self.retired:  # a parker's dialog ended at parking
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
                      self.transferring.deadline() if self.transferring is not None else None,
                      self.fork.deadline() if self.fork is not None and self.state is CallState.RINGING else None,
                      self.winner.session.deadline() if self.winner is not None else None,
                      self.queued.deadline() if self.queued is not None else None,
                      parking.due(self)):
            if other is not None and (due is None or other < due):
                due = other
        return due

    def on_timer(self, now: float) -> None:
        for session in (self.a, self.winner.session if self.winner is not None else None):
            if session is not None and (due := session.deadline()) is not None and now >= due:
                for event in session.on_timer(now):
                    self.on_event(session, event, now)
        if self.queued is not None and now >= self.queued.deadline():
            self.controller.queue_due(self, now)
        if (park_due := parking.due(self)) is not None and now >= park_due:
            parking.on_timer(self, now)
        if self.ring_due is not None and now >= self.ring_due and self.state is CallState.RINGING:
            self.ring_due = None
            if self.fork is not None:
                self.fork.stop([])
            if self._back_to_queue() or self._overflowed("no_answer") or self._forwarded("no_answer") \
                    or self._to_voicemail(Disposition.NO_ANSWER, now):
                return
            if self.local:
                self._transfer_failed(Outcome(480, Disposition.NO_ANSWER, "ring_timeout", HangupSide.PBX))
            else:
                self.end_unanswered(480, Disposition.NO_ANSWER, "ring_timeout", HangupSide.PBX)
            return
        if self.ring_due is not None and now >= self.ring_due and self.state is CallState.LOCAL:
            self.ring_due = None
            self._announced()  # the announcement took too long: refuse now
        if self.fork is not None and self.state is CallState.RINGING:
            fork_due = self.fork.deadline()
            if fork_due is not None and now >= fork_due:
                result = self.fork.on_timer(now)
                if result is not None:
                    self.fail(result)
        if self.transferring is not None and (due := self.transferring.deadline()) is not None and now >= due:
            transfers.on_timer(self, self.transferring, now)
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
        if disposition is Disposition.ANSWERED and self.answered_at is None:
            # Answered by the PBX itself (a code prompt), never by anyone:
            # the CDR says how it ended instead.
            disposition = self.unanswered
        # Every way a call ends passes here: its outside-call slot, if it
        # holds one, is free from now on.
        self.controller.outside_calls.release(self.uuid)
        self.on_call = self.controller.presence.release(self.on_call)
        if self.answered_by is not None and self.hunt is not None:
            self.controller.hunt_ended(self)
        self.ring_due = self.watch_due = None
        if self.media is not None:
            self.media.close()  # a message being left is kept here (see _message_left)
            self.media = None
        if self.voicemail is not None:
            reason = "voicemail" if self.voicemail.seconds is not None else "voicemail_no_message"
        if self.music is not None:
            self.music.stop()
        anchoring.ended(self)
        if self.queued is not None:
            self.controller.dequeue(self)
        parking.leave(self)  # a parked call that ends (its maximum duration) frees its slot
        transfer = self.transferring
        if transfer is not None:
            # The call ends while a transfer rings or is being bridged: its
            # target goes too.
            if transfer.fork is not None:
                transfer.fork.stop([])
            if transfer.leg is not None:
                transfer.leg.session.hangup()
            self.transfer_done(transfer)
        self.disposition, self.hangup_status, self.hangup_side, self.reason = disposition, status, side, reason
        self.ended_at = self.controller.wall()
        cost, transferred = self._cost(self.ended_at), self._transfer_cost(self.ended_at)
        self.cost = None if cost is None and transferred is None else (cost or 0) + (transferred or 0)
        # Its budget reservations go too, and its costs count (a transfer's
        # outside leg against its payer's budgets).
        self.controller.budgets.settle(self.uuid, cost or 0)
        self.controller.budgets.settle(transfer_hold(self.uuid), transferred or 0)
        if self.shared_hold and self.controller.shared_budgets is not None:
            self.controller.shared_budgets.release(self.uuid)
        transfers.release_shared(self)
        # A member it kept busy may be free now for a caller in a queue.
        self.controller.serve_queues()

    def _cost(self, ended_at: float) -> int | None:
        """What the call cost: priced only when a leg through a trunk
        answered (a group member's desk answering costs nothing) and stayed
        (the winner, or the provider's party the caller transferred away),
        on the billsec its CDR will show."""
        winner, answered_at = self.winner, self.answered_at
        priced = (winner if winner is not None and winner.trunk is not None and winner is not self.transfer_leg
                  else self.kept_trunk)
        if priced is not None and priced.member is not None and priced.member in self.member_rates:
            self.rate = self.member_rates[priced.member]  # the CDR names the tariff that priced it
        rate = self.rate
        if rate is None or priced is None or answered_at is None:
            return None
        billsec = whole_seconds(_utc(max(ended_at, answered_at)) - _utc(answered_at))
        return rate.tariff.cost(billsec)

    def _transfer_cost(self, ended_at: float) -> int | None:
        """What the outside leg a blind transfer placed cost, from when it
        joined the call to the end."""
        rate, joined = self.transfer_rate, self.transfer_joined
        if rate is None or joined is None or self.transfer_leg is None:
            return None
        return rate.tariff.cost(whole_seconds(_utc(max(ended_at, joined)) - _utc(joined)))

    def _overflowed(self, condition: Condition) -> bool:
        """A hunt group's call not answered: sent on to the group's
        destination for ``condition``, if it names one."""
        hunt = self.hunt
        if hunt is None or self.state is not CallState.RINGING or (
                hunt.group.overflow.get(condition) is None and not hunt.group.queues_on(condition)):
            return False
        self.controller.overflow(self, hunt.group, condition, hunt.call_class)
        return True

    def _back_to_queue(self) -> bool:
        """The member rung for a caller waiting in a queue did not answer:
        the caller waits on, in its place."""
        if self.queued is None:
            return False
        if self.fork is not None:
            self.fork.stop([])
        self.state, self.ring_due = CallState.LOCAL, None
        self.controller.queue_not_answered(self)
        return True

    def wait_in_queue(self, entry: Waiting, music: str | None, now: float) -> bool:
        """Answer the caller (unless the PBX did already) to wait in a hunt
        group's queue: its place said, then music. False when it cannot be
        answered (the call has ended)."""
        if self.fork is not None and self.state is CallState.RINGING:
            self.fork.stop([])
        self.ring_due = None
        self.language = self.controller.plan.language_for(self.caller)
        media = self.media if self.local else self._answer_locally()
        if media is None:
            return False
        self.state, self.queued = CallState.LOCAL, entry
        queues = self.controller.queues
        media.music(music, language=self.language,
                    announce=lambda: position_phrase(queues.position(entry) or 1),
                    every=float(entry.settings.announce_position_every))
        if self.answered_monotonic is None:
            self.watch(None, now)  # the maximum duration, from now
        return True

    def ring_from_queue(self, action: Ring, now: float) -> None:
        """Ring a member for the caller waiting in a queue; the music goes on
        till one answers (:meth:`_transfer_answered` then moves the caller's
        media to the member)."""
        self._ring(action, now)

    def _forwarded(self, condition: Literal["busy", "no_answer"]) -> bool:
        """The rung extension did not take the call: sent on to its forward
        for ``condition``, if it has one."""
        forward = self.forward_on_fail
        if forward is None or self.state is not CallState.RINGING or self.local:
            return False
        target = forward.busy if condition == "busy" else forward.no_answer
        if target is None:
            return False
        self.forward_on_fail = None
        self.controller.forward_unanswered(self, forward.extension, condition, target)
        return True

    def fail(self, result: Outcome) -> None:
        """Every leg failed: tell the caller the fork's one outcome (a hunt
        group: overflow first, busy when every member said busy; a caller the
        menu transferred hears it said; a caller in a queue waits on)."""
        if self._back_to_queue():
            return
        if self._overflowed("busy" if result.disposition is Disposition.BUSY else "no_answer"):
            return
        if result.disposition in (Disposition.BUSY, Disposition.NO_ANSWER) and self._forwarded(
                "busy" if result.disposition is Disposition.BUSY else "no_answer"):
            return
        if result.disposition in (Disposition.BUSY, Disposition.NO_ANSWER, Disposition.UNAVAILABLE) \
                and self._to_voicemail(result.disposition, self.controller.now):
            return
        if self.local:
            self._transfer_failed(result)
            return
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

    def end_by_pbx(self, reason: str, now: float, *, caller_gone: bool = False, status: int | None = None) -> None:
        """End an answered call from here: BYE to both sides, once the CDR
        saying so is durable. ``caller_gone``: the caller never ACKed, so its
        BYE cannot wait for that ACK."""
        if self.state is not CallState.ANSWERED and not self.local:
            return
        if self.fork is not None and self.state is CallState.RINGING:
            self.fork.stop([])  # a menu's transfer still ringing
        if status is None:
            status = 200 if reason == "max_duration" else 408
        self._ending(Disposition.ANSWERED, status, HangupSide.PBX, reason)
        log.warning("call_ended_by_pbx", call_id=self.a_call_id, uuid=self.uuid, reason=reason,
                    session_interval=self.session_interval, path=self.ivr_path)
        headers: list[Header] = [("reason", f'SIP;cause={status};text="{reason}"')]

        def send_byes() -> None:
            self.a.hangup(headers, wait_for_ack=not caller_gone)
            if self.winner is not None:
                self.winner.session.hangup(headers)
            self.controller.forget(self)

        self.controller.recorder.call_ended(self, send_byes)


ANNOUNCEMENT_LIMIT = 30.0
"""Longest an announcement may hold a refused call before its final response."""
