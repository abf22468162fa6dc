"""Call transfer performed by the PBX: REFER from either side of a call.

A phone in an answered call (the transferor) sends REFER naming a target.
The PBX does the transfer itself, as a B2BUA: it answers 202, reports
progress in NOTIFYs with sipfrag bodies (:mod:`pbx.sip.refer`), and:

- blind (RFC 3515): places a new leg to the target on the transferor's
  behalf, routed and checked like a call the person who pays would dial
  (:meth:`pbx.calls.call.Call.payer`: rights follow the call, never more);
  the leg goes out without SDP, so the target's 2xx holds an offer, which
  a re-INVITE gives to the transferee; its answer goes back in the ACK;
- attended (RFC 3891, ``Replaces`` in the Refer-To): the target is already
  talking to the transferor in another call; that call gives its dialog
  with the target to this one and ends, an offer-less re-INVITE asks the
  target for a fresh offer, and the transferee gets it as above.

In an anchored call (recorded, or SRTP-bridged) the target's offer is
answered by the PBX's anchor on the transferor's leg, and the transferee,
whose media already goes to the anchor, is not re-INVITEd at all: the
recording goes on, the target in the transferor's channel.

Once the transferee's re-INVITE is answered, the transferor is told
``200 OK`` and sent BYE; the transferee and the target are the call's two
sides from then on (one CDR row: the destination becomes the target, the
``transfer`` column says who transferred to whom). Until then nothing of
the original call changes: a refusal (403 sipfrag for a target the payer
may not dial) or a target that does not answer leaves it as it was. A
transferor who hangs up first (usual after a blind transfer) leaves the
transferee waiting for the target; if that fails, the call ends.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import structlog

from pbx.calls import anchoring
from pbx.calls.budgets import BudgetHit, transfer_hold
from pbx.calls.fork import Fork, Leg, LegState, Outcome
from pbx.calls.local import SDP_TYPE
from pbx.calls.limits import LimitHit
from pbx.calls.plan import Caller, End, Ring
from pbx.routing.rights import check_number
from pbx.sip.message import Request
from pbx.sip.refer import BadRefer, ReferTarget, notify_headers, parse_refer_to, sipfrag
from pbx.sip.session import (Answered, ByeIn, Failed, InviteSession, Provisional, RequestIn, ResponseIn,
                             SessionEvent)

if TYPE_CHECKING:
    from pbx.calls.call import Call, Side

log = structlog.get_logger("pbx.calls")

Kind = Literal["blind", "attended"]


@dataclass(slots=True)
class _Notify:
    """Ref of a NOTIFY we sent (its answer needs nothing)."""


@dataclass(slots=True)
class _Fetch:
    """Ref of our offer-less re-INVITE to the target (attended)."""

    request: Request | None = None


@dataclass(slots=True)
class _Bridge:
    """Ref of our re-INVITE giving the target's offer to the transferee."""

    request: Request | None = None


@dataclass(slots=True, eq=False)
class CallTransfer:
    """One transfer in progress on a call."""

    kind: Kind
    side: Side
    """The transferor's side of the call."""
    transferor: InviteSession
    transferee: InviteSession
    transferor_number: str
    target: str
    fork: Fork | None = None
    leg: Leg | None = None
    """The target's leg: answered (blind) or taken over (attended)."""
    ring_due: float | None = None
    transferor_gone: bool = False
    fetch: _Fetch | None = None
    taken: Leg | None = None
    """Attended: the target's leg taken over from the other call."""

    @property
    def legs(self) -> list[Leg]:
        legs = list(self.fork.legs) if self.fork is not None else []
        return [*legs, self.taken] if self.taken is not None else legs

    def deadline(self) -> float | None:
        due = [t for t in (self.ring_due, self.fork.deadline() if self.fork is not None else None)
               if t is not None]
        return min(due, default=None)


# ---------------------------------------------------------------- the REFER


def on_refer(call: Call, side: Side, session: InviteSession, event: RequestIn, now: float) -> None:
    """A REFER from ``side``: answer it, and start the transfer or say why not."""
    from pbx.calls.call import CallState, Side as Sides

    request = event.request
    if call.state is not CallState.ANSWERED or call.winner is None:
        session.answer(event.key, request, 403, "Transfer Of Answered Calls Only")
        return
    if call.transferring is not None:
        session.answer(event.key, request, 491, "Transfer In Progress")
        return
    try:
        target = parse_refer_to(request.get("refer-to"))
    except BadRefer as err:
        session.answer(event.key, request, 400, err.phrase)
        return
    from pbx.calls import parking

    if target.replaces is None and parking.is_park(call, target.number):
        parking.park_by_transfer(call, side, session, event, now)
        return
    payer = call.payer(side)
    if payer is None:
        # A party from a trunk has no rights here: nothing is placed for it.
        log.warning("transfer_refused", call_id=call.a_call_id, uuid=call.uuid, side=side.value,
                    reason="no_rights", target=target.number)
        session.answer(event.key, request, 403, "Transfer Not Allowed")
        return
    transferee = call.session_of(side.other)
    assert transferee is not None
    session.answer(event.key, request, 202, "Accepted")
    _notify(session, 100)
    transfer = CallTransfer(kind="attended" if target.replaces else "blind", side=side, transferor=session,
                        transferee=transferee, transferor_number=payer.number, target=target.number)
    call.transferring = transfer
    log.info("transfer_requested", call_id=call.a_call_id, uuid=call.uuid, kind=transfer.kind,
             transferor=payer.number, target=target.number, side=side.value)
    if target.replaces is not None:
        _attended(call, transfer, target, now)
    else:
        _blind(call, transfer, _transferee_caller(call, side is Sides.B), now)


def ring_back(call: Call, side: Side, transferor: InviteSession, number: str, now: float) -> None:
    """The PBX itself transfers the party opposite ``side`` to ``number``,
    placed with ``side``'s rights (a parked call ringing its parker back):
    a blind transfer whose transferor has gone already, so a target that
    does not answer ends the call."""
    from pbx.calls.call import Side as Sides

    transferee = call.session_of(side.other)
    assert transferee is not None
    transfer = CallTransfer(kind="blind", side=side, transferor=transferor, transferee=transferee,
                            transferor_number=number, target=number, transferor_gone=True)
    call.transferring = transfer
    _blind(call, transfer, _transferee_caller(call, side is Sides.B), now)


def _transferee_caller(call: Call, transferee_is_a: bool) -> Caller:
    """Who the target sees calling: the transferee."""
    if transferee_is_a:
        return Caller(number=call.caller_number, name=call.caller_name, extension=call.caller,
                      from_trunk=call.trunk)
    winner = call.winner
    assert winner is not None
    number = winner.target or call.destination or call.dialled
    extension = call.controller.plan.extension(number) if winner.trunk is None else None
    return Caller(number=number, name=extension.name if extension is not None else None, extension=extension,
                  from_trunk=None)


def _notify(session: InviteSession, status: int, reason: str | None = None) -> None:
    session.send("NOTIFY", headers=notify_headers(status), body=sipfrag(status, reason), ref=_Notify())


def _blind(call: Call, transfer: CallTransfer, transferee: Caller, now: float) -> None:
    payer = call.payer(transfer.side)
    assert payer is not None
    action = call.controller.plan_transfer(call, payer, transferee, transfer.target)
    if isinstance(action, End):
        _refused(call, transfer, action.status, action.reason)
        return
    if not isinstance(action, Ring):
        _refused(call, transfer, 488, "not_a_transfer_target")
        return
    shared = call.controller.shared_budgets
    if action.hold is not None and shared is not None:
        # Several nodes share the payer's budgets and outside-call caps: as
        # for a call the payer places, nothing rings until the store holds
        # the transfer's leg too (Call._ring does the same for calls).
        call.transfer_shared_hold = True
        controller = call.controller
        shared.reserve(transfer_hold(call.uuid), action.hold,
                       lambda hit: controller.act(call, lambda: _held(call, transfer, action, hit)))
        return
    _ring(call, transfer, action, now)


def _ring(call: Call, transfer: CallTransfer, action: Ring, now: float) -> None:
    transfer.ring_due = now + action.ring_timeout
    transfer.fork = Fork(action.targets, call.controller.dialer(call, delayed_offer=True),
                         wall=call.controller.wall, unreachable=action.unreachable)
    result = transfer.fork.start(now)
    if result is not None:
        _failed(call, transfer, result, now)


def _held(call: Call, transfer: CallTransfer, action: Ring, hit: BudgetHit | LimitHit | None) -> None:
    """The store answered the transfer's hold (budgets, outside-call slot)."""
    controller = call.controller
    from pbx.calls.call import CallState

    if call.transferring is not transfer or call.state in (CallState.ENDING, CallState.ENDED):
        release_shared(call)  # the call or the transfer went meanwhile: a late hold must not stay
        return
    if hit is None:
        _ring(call, transfer, replace(action, hold=None), controller.now)
        return
    hold = action.hold
    assert hold is not None
    if isinstance(hit, LimitHit):
        log.warning("call_limit_hit", call_id=call.a_call_id, uuid=call.uuid, extension=transfer.transferor_number,
                    limit=hit.limit, value=hit.value, current=hit.current, rule=hit.rule, outcome="transfer_refused")
        _refused(call, transfer, 486, "outside_call_limit")
        return
    refusal = hold.refuse(hit)
    _refused(call, transfer, refusal.status if isinstance(refusal, End) else 403, "budget_exhausted")


def release_shared(call: Call) -> None:
    """Drop what the store holds for the leg a transfer of ``call`` placed
    (it did not join, or the call ended)."""
    shared = call.controller.shared_budgets
    if call.transfer_shared_hold and shared is not None:
        call.transfer_shared_hold = False
        shared.release(transfer_hold(call.uuid))


def _attended(call: Call, transfer: CallTransfer, target: ReferTarget, now: float) -> None:
    replaces = target.replaces
    assert replaces is not None
    controller = call.controller
    found = controller.dialog_for(replaces.call_id, replaces.to_tag, replaces.from_tag)
    if found is None or found[0] is call:
        _refused(call, transfer, 481, "replaced_dialog_unknown")
        return
    other, mine = found  # the transferor's session in the other call
    from pbx.calls.call import CallState

    if other.state is not CallState.ANSWERED or other.winner is None or other.local:
        _refused(call, transfer, 481, "replaced_dialog_not_answered")
        return
    if mine is other.a:
        leg = other.winner
        number = leg.target or other.destination or other.dialled
        placed = True
    elif mine is other.winner.session:
        # The target called the transferor: it becomes a leg of this call.
        leg = Leg(contact=other.a.dialog.remote_target, session=other.a, started_at=other.started_at,
                  target=other.caller_number, state=LegState.ANSWERED)
        number, placed = other.caller_number, False
    else:
        _refused(call, transfer, 481, "replaced_dialog_unknown")
        return
    mine_party, party = other.party_of(mine), call.party(transfer.side)
    if mine_party is None or party is None or mine_party.number != party.number:
        # Only the transferor's own call may be taken over.
        _refused(call, transfer, 403, "replaced_dialog_not_yours")
        return
    payer = call.payer(transfer.side)
    assert payer is not None
    if placed:
        verdict = check_number(controller.plan, payer, number, controller.at())
        if not verdict.allowed:
            log.info("transfer_barred", call_id=call.a_call_id, uuid=call.uuid, target=number,
                     reason=verdict.reason, rule=verdict.rule)
            _refused(call, transfer, 403, verdict.reason)
            return
        refused = controller.take_over_priced(call, other, payer)
        if refused is not None:
            _refused(call, transfer, refused.status, refused.reason)
            return
    transfer.target = number
    transfer.leg = transfer.taken = leg
    controller.adopt(call, leg.session)
    other.hand_over(leg.session, into=call)
    fetch = transfer.fetch = _Fetch()
    fetch.request = leg.session.send("INVITE", ref=fetch, retry_glare=True)


def _refused(call: Call, transfer: CallTransfer, status: int, reason: str) -> None:
    """The transfer cannot be done: the transferor hears why, the call goes on."""
    log.info("transfer_refused", call_id=call.a_call_id, uuid=call.uuid, kind=transfer.kind, status=status,
             reason=reason, target=transfer.target)
    if transfer.taken is None and call.transfer_leg is None:
        # Nothing outside joined: the payer's budgets hold nothing for it.
        call.controller.budgets.settle(transfer_hold(call.uuid), 0)
        call.transfer_rate = None
        release_shared(call)
    call.transfer_done(transfer)
    if not transfer.transferor_gone:
        _notify(transfer.transferor, status)
    else:
        call.end_by_pbx(f"transfer_{reason}", call.controller.now, status=200)


def _failed(call: Call, transfer: CallTransfer, result: Outcome, now: float) -> None:
    transfer.ring_due = None
    _refused(call, transfer, result.status, result.reason)


# ---------------------------------------------------------------- events


def on_event(call: Call, transfer: CallTransfer, session: InviteSession, event: SessionEvent, now: float) -> bool:
    """Events that belong to ``transfer``; False for the call's own."""
    if isinstance(event, ResponseIn) and isinstance(event.ref, _Notify):
        return True
    if isinstance(event, ResponseIn) and isinstance(event.ref, (_Fetch, _Bridge)):
        _reinvite_answered(call, transfer, event.ref, event, now)
        return True
    if session is transfer.transferor and isinstance(event, ByeIn):
        # The transferor leaves before the target answered (RFC 5589 allows
        # it): the transferee waits for the target alone.
        transfer.transferor_gone = True
        session.answer(event.key, event.request, 200)
        call.retire(session)
        log.info("transferor_left", call_id=call.a_call_id, uuid=call.uuid)
        return True
    leg = next((leg for leg in transfer.legs if leg.session is session), None)
    if leg is None:
        return False
    fork = transfer.fork
    match event:
        case Provisional() if fork is not None:
            fork.on_early(leg)
            if event.response.status == 180 and not transfer.transferor_gone:
                _notify(transfer.transferor, 180)
        case Answered() if fork is not None:
            if not fork.on_answered(leg):
                return True
            transfer.leg, transfer.ring_due = leg, None
            if not event.response.body:
                leg.session.hangup()
                _refused(call, transfer, 488, "no_sdp_from_target")
                return True
            _bridge(call, transfer, leg, event.response.body, None)
        case Failed() if fork is not None:
            result = fork.on_failed(leg, event.status, event.reason, now)
            if result is not None and transfer.leg is None:
                _failed(call, transfer, result, now)
        case ByeIn():
            session.answer(event.key, event.request, 200)
            if leg is transfer.leg:
                _abandon(call, transfer, "target_left")
        case _:
            pass
    return True


def _bridge(call: Call, transfer: CallTransfer, leg: Leg, offer: bytes, fetched: Request | None) -> None:
    """The target's ``offer`` (in its 2xx, or in the 2xx to our offer-less
    re-INVITE ``fetched``) goes to the transferee in a re-INVITE; in an
    anchored call the anchor answers it on the transferor's leg instead, and
    the transferee's media is not touched (pbx.calls.anchoring)."""
    if call.anchor is None:
        bridge = _Bridge()
        bridge.request = transfer.transferee.send("INVITE", headers=[SDP_TYPE], body=offer, ref=bridge,
                                                  retry_glare=True)
        return
    answer = anchoring.answer_target(call, transfer.side, leg.session, offer)
    if answer is None:
        if fetched is not None:
            leg.session.ack_reinvite(fetched)
        _abandon(call, transfer, "target_media_refused")
        return
    if fetched is not None:
        leg.session.ack_reinvite(fetched, answer, [SDP_TYPE])
    else:
        leg.session.ack(answer, [SDP_TYPE])
    _complete(call, transfer)


def _reinvite_answered(call: Call, transfer: CallTransfer, ref: _Fetch | _Bridge, event: ResponseIn,
                       now: float) -> None:
    leg = transfer.leg
    response = event.response
    ok = response is not None and 200 <= event.status < 300 and ref.request is not None
    if isinstance(ref, _Fetch):
        if leg is None:
            return
        if not ok or response is None or not response.body:
            if ok and ref.request is not None:
                leg.session.ack_reinvite(ref.request)
            _abandon(call, transfer, "target_gave_no_offer")
            return
        _bridge(call, transfer, leg, response.body, ref.request)
        return
    assert ref.request is not None or not ok
    if ok and ref.request is not None and response is not None:
        transfer.transferee.ack_reinvite(ref.request)
        if leg is not None:
            fetch = transfer.fetch
            if fetch is not None and fetch.request is not None:
                leg.session.ack_reinvite(fetch.request, response.body, [SDP_TYPE])
            else:
                leg.session.ack(response.body, [SDP_TYPE])
            _complete(call, transfer)
        return
    log.warning("transfer_reinvite_refused", call_id=call.a_call_id, uuid=call.uuid, status=event.status)
    _abandon(call, transfer, "transferee_refused_media")


def _abandon(call: Call, transfer: CallTransfer, reason: str) -> None:
    """The target was reached but cannot be bridged: let it go."""
    leg = transfer.leg
    if leg is not None:
        leg.session.hangup()
        leg.close(LegState.FAILED, leg.status or 500, call.controller.wall())
    if transfer.fork is not None:
        transfer.fork.stop([])
    _refused(call, transfer, 500, reason)


def _bill_transfer_out(call: Call, transfer: CallTransfer) -> None:
    """The CDR's ``billed_to`` for a transfer out: the transferor, who
    pays for the outside leg (its budgets hold it). A row has one payer,
    so when the call already had an outside leg someone else pays for (a
    forward's), the row stays theirs and the split is logged: the live
    budgets are right, a recount from CDRs would put it all on them."""
    payer = call.payer(transfer.side)
    if payer is None:
        return
    winner = call.winner
    own = call.kept_trunk or (winner if winner is not None and winner.trunk is not None else None)
    paying = call.billed_to or call.caller
    if own is not None and call.rate is not None and (paying is None or paying.number != payer.number):
        log.warning("transfer_billed_split", call_id=call.a_call_id, uuid=call.uuid,
                    billed_to=paying.number if paying is not None else None, transferor=payer.number)
        return
    call.billed_to = payer


def _complete(call: Call, transfer: CallTransfer) -> None:
    leg = transfer.leg
    assert leg is not None
    if not transfer.transferor_gone:
        _notify(transfer.transferor, 200)
        transfer.transferor.hangup()
        call.retire(transfer.transferor)
    call.transfer_done(transfer)
    if leg.trunk is not None:
        _bill_transfer_out(call, transfer)
    call.transferred(transfer.kind, transfer.side, transfer.transferor_number, transfer.target, leg)
    log.info("transfer_completed", call_id=call.a_call_id, uuid=call.uuid, kind=transfer.kind,
             transferor=transfer.transferor_number, target=transfer.target)


def on_timer(call: Call, transfer: CallTransfer, now: float) -> None:
    fork = transfer.fork
    if transfer.ring_due is not None and now >= transfer.ring_due:
        transfer.ring_due = None
        if fork is not None:
            fork.stop([])
        _refused(call, transfer, 480, "no_answer")
        return
    if fork is not None and transfer.leg is None and (due := fork.deadline()) is not None and now >= due:
        result = fork.on_timer(now)
        if result is not None:
            _failed(call, transfer, result, now)

