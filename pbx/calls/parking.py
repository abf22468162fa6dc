"""Call park, carried out on the calls (the slots are the dialplan's
``parking:``, :mod:`pbx.routing.parking`).

Rules it keeps:
- a blind transfer (REFER) to ``*70``, what a phone's park key sends,
  parks the transferee: music, the first free slot; the transferor is told
  ``200 Parked At 701`` in the NOTIFY and its dialog ends;
- ``*70`` dialled parks the call whose other party the caller holds and hears
  the PBX's music on (:mod:`pbx.calls.hold`): the held party stays in
  its call, in the first free slot, the music going on; the parker's
  dialog of that call ends (BYE), and the ``*70`` call hears "your call is
  parked at 7 0 1" (early media), then ends. Nothing held with music:
  "not available", nothing changes;
- dialling the slot picks the call up: the held party is re-INVITEd with
  the picker's offer and its answer goes to the picker in our 200; the
  picker's dialog then becomes the held call's other side (one CDR for the
  parked call, its ``transfer`` column ``park 2001 -> 2003``; the picker's
  own call is linked to it). The picker's rights follow the call from
  then on: a transfer they make is checked against their class of service;
- nobody picks it up within ``ring_back`` seconds: the PBX rings the
  parker's phones (a blind transfer of the held party back to the parker,
  whose rights it is placed with); if that is not answered, the call ends;
- the held party hanging up frees the slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from pbx.calls import hold as holds
from pbx.calls import transfer as transfers
from pbx.calls.fork import Leg, LegState
from pbx.calls.hold import Phase, in_dialog
from pbx.calls.local import SDP_TYPE
from pbx.calls.plan import Action, End
from pbx.cdr.records import Disposition, HangupSide
from pbx.routing.dialplan import Extension
from pbx.routing.engine import Feature
from pbx.routing.feature_codes import PARK
from pbx.sip.message import Request
from pbx.sip.refer import notify_headers, sipfrag
from pbx.sip.session import ByeIn, InviteSession, RequestIn, ResponseIn, SessionEvent

if TYPE_CHECKING:
    from pbx.calls.call import Call, Side
    from pbx.calls.controller import CallController

log = structlog.get_logger("pbx.calls")


@dataclass(slots=True, eq=False)
class _Pickup:
    """Ref of our re-INVITE giving the picker's offer to the held party."""

    picker_call: Call
    picker: Extension
    request: Request | None = None


@dataclass(slots=True, eq=False)
class Parked:
    """A call waiting in a slot."""

    slot: str
    parker: str
    holder: Side
    """The side the parker was on (its dialog is over)."""
    due: float
    """When the parker's phones ring (``ring_back`` after parking)."""
    pickup: _Pickup | None = None


@dataclass(slots=True)
class ParkingLot:
    """Calls by slot (this node's, in memory)."""

    calls: dict[str, Call] = field(default_factory=dict)

    def free(self, slots: tuple[str, ...]) -> str | None:
        return next((slot for slot in slots if slot not in self.calls), None)


def park(controller: CallController, call: Call, decision: Feature) -> Action:
    """``*70`` from ``call``'s caller: park the call they hold."""
    parker, parking = decision.extension, controller.plan.parking
    language = controller.plan.language_for(parker)
    if parking is None:  # the plan changed since routing
        return End(status=501, disposition=Disposition.FAILED, reason="feature_not_available")
    held = _held_by(controller, parker.number)
    if held is None:
        log.info("park_nothing_held", call_id=call.a_call_id, uuid=call.uuid, parker=parker.number)
        return End(status=480, disposition=Disposition.UNAVAILABLE, reason="nothing_to_park",
                   phrase="Nothing To Park", announcement="not_available", language=language)
    slot = controller.parking.free(parking.slots)
    if slot is None:
        return End(status=486, disposition=Disposition.BUSY, reason="parking_full", phrase="Parking Full",
                   announcement="busy", language=language)
    controller.on_behalf(held, lambda: _park(held, slot, parker.number, controller.now + parking.ring_back))
    return End(status=480, disposition=Disposition.UNAVAILABLE, reason="parked", phrase=f"Parked At {slot}",
               announcement=("call_parked", *(f"digit_{digit}" for digit in slot)), language=language)


@dataclass(slots=True)
class _Notify:
    """Ref of the NOTIFY telling a transferor the call is parked (its answer needs nothing)."""


def is_park(call: Call, number: str) -> bool:
    """Does a transfer to ``number`` ask to park the call?"""
    return number == PARK and call.controller.plan.parking is not None


def park_by_transfer(call: Call, side: Side, session: InviteSession, event: RequestIn, now: float) -> None:
    """A REFER from ``side`` to ``*70`` (a phone's blind transfer, or its
    park key): the other party goes to the first free slot with music, the
    transferor is told ``200 Parked At 701`` (NOTIFY) and its dialog ends."""
    controller, request = call.controller, event.request
    parking, payer, music = controller.plan.parking, call.payer(side), call.music
    holding = music is not None and music.phase is not Phase.RESUMED
    if parking is None or payer is None or (holding and music is not None and music.holder is not side):
        session.answer(event.key, request, 403, "Park Not Allowed")
        return
    slot = controller.parking.free(parking.slots)
    if slot is None:
        session.answer(event.key, request, 486, "Parking Full")
        return
    if not holding and not holds.play_music(call, side):
        session.answer(event.key, request, 503, "Music Unavailable")
        return
    session.answer(event.key, request, 202, "Accepted")
    session.send("NOTIFY", headers=notify_headers(200), body=sipfrag(200, f"Parked At {slot}"), ref=_Notify())
    _park(call, slot, payer.number, now + parking.ring_back)


def _held_by(controller: CallController, number: str) -> Call | None:
    """The answered call in which extension ``number`` holds the other
    party, who hears the music."""
    for call in controller.calls():
        music = call.music
        if call.parked is None and call.transferring is None and music is not None \
                and music.phase is Phase.PLAYING:
            holder = call.party(music.holder)
            if holder is not None and holder.number == number:
                return call
    return None


def _park(call: Call, slot: str, parker: str, due: float) -> None:
    music = call.music
    assert music is not None
    session = call.session_of(music.holder)
    if session is not None:
        call.retire(session)
        session.hangup()
    call.parked = Parked(slot=slot, parker=parker, holder=music.holder, due=due)
    call.controller.parking.calls[slot] = call
    presence = call.controller.presence
    call.on_call = presence.release(call.on_call)
    held = call.party(music.holder.other)
    if held is not None:
        call.on_call = presence.hold(call.on_call, held.number)
    log.info("call_parked", call_id=call.a_call_id, uuid=call.uuid, slot=slot, parker=parker)


def pick_up(controller: CallController, call: Call, decision: Feature) -> Action | None:
    """``call`` dialled a slot: None while the parked party is being
    re-INVITEd (the call waits; :func:`on_event` finishes it), else what
    to tell the caller."""
    slot, picker = decision.dialled.code, decision.extension
    parked_call = controller.parking.calls.get(slot)
    parked = parked_call.parked if parked_call is not None else None
    if parked_call is None or parked is None:
        return End(status=404, disposition=Disposition.UNAVAILABLE, reason="nothing_parked",
                   phrase="Nothing Parked", announcement="not_available",
                   language=controller.plan.language_for(picker))
    if parked.pickup is not None or parked_call.transferring is not None:
        return End(status=486, disposition=Disposition.BUSY, reason="park_pickup_in_progress")
    held = parked_call.session_of(parked.holder.other)
    offer = call.a_request.body
    if held is None or not offer:
        return End(status=488, disposition=Disposition.FAILED, reason="pickup_needs_an_offer")
    ref = parked.pickup = _Pickup(picker_call=call, picker=picker)
    body = in_dialog(offer, held.sdp_sent)

    def send() -> None:
        ref.request = held.send("INVITE", headers=[SDP_TYPE], body=body, ref=ref, retry_glare=True)

    controller.on_behalf(parked_call, send)
    log.info("park_pickup", call_id=parked_call.a_call_id, uuid=parked_call.uuid, slot=slot, picker=picker.number)
    return None


def on_event(call: Call, session: InviteSession, event: SessionEvent, now: float) -> bool:
    """An event of a parked call that parking handles; True when it did."""
    parked = call.parked
    if parked is None:
        return False
    if isinstance(event, ResponseIn) and isinstance(event.ref, _Pickup):
        _answered(call, parked, session, event, now)
        return True
    if isinstance(event, ByeIn) and session is call.session_of(parked.holder.other):
        leave(call)  # the held party hung up; the call ends as usual
    return False


def _answered(call: Call, parked: Parked, session: InviteSession, event: ResponseIn, now: float) -> None:
    from pbx.calls.call import CallState

    ref = event.ref
    assert isinstance(ref, _Pickup)
    if parked.pickup is not ref:
        return
    parked.pickup = None
    picker_call = ref.picker_call
    waiting = picker_call.state is CallState.ROUTING
    response = event.response
    if response is None or not 200 <= event.status < 300 or ref.request is None or not waiting:
        if response is not None and 200 <= event.status < 300 and ref.request is not None:
            session.ack_reinvite(ref.request)  # the picker gave up meanwhile: the music goes on
        log.info("park_pickup_failed", call_id=call.a_call_id, uuid=call.uuid, status=event.status)
        if waiting:
            picker_call.end_unanswered(480, Disposition.UNAVAILABLE, "park_pickup_failed", HangupSide.PBX)
        return
    session.ack_reinvite(ref.request)
    controller = call.controller
    picker = picker_call.a
    leg = Leg(contact=picker.dialog.remote_target, session=picker, started_at=picker_call.started_at,
              target=ref.picker.number, state=LegState.ANSWERED)
    picker_call.answered_at = controller.wall()
    picker.respond(200, None, [SDP_TYPE], response.body)
    controller.recorder.call_answered(picker_call)
    controller.adopt(call, picker)
    picker_call.hand_over(picker, into=call, reason="picked_up_parked")
    leave(call)
    call.transfer_legs += (leg,)
    call.transferred("park", parked.holder, parked.parker, ref.picker.number, leg)
    log.info("call_unparked", call_id=call.a_call_id, uuid=call.uuid, slot=parked.slot, picker=ref.picker.number)


def leave(call: Call) -> None:
    """``call`` is no longer parked (picked up, rung back, ended): its slot is free."""
    from pbx.calls.call import CallState

    parked = call.parked
    if parked is None:
        return
    call.parked = None
    controller = call.controller
    if controller.parking.calls.get(parked.slot) is call:
        del controller.parking.calls[parked.slot]
    pickup, parked.pickup = parked.pickup, None
    if pickup is not None and pickup.picker_call.state is CallState.ROUTING:
        # Ended while someone was picking it up: they hear it is gone.
        picker = pickup.picker_call
        controller.on_behalf(picker, lambda: picker.end_unanswered(480, Disposition.UNAVAILABLE,
                                                                    "parked_call_ended", HangupSide.PBX))


def due(call: Call) -> float | None:
    parked = call.parked
    return parked.due if parked is not None and parked.pickup is None else None


def on_timer(call: Call, now: float) -> None:
    """Nobody picked the call up in time: ring the parker back."""
    parked = call.parked
    if parked is None or parked.pickup is not None or now < parked.due:
        return
    parker = call.session_of(parked.holder)
    leave(call)
    log.info("park_ring_back", call_id=call.a_call_id, uuid=call.uuid, slot=parked.slot, parker=parked.parker)
    if parker is None:
        call.end_by_pbx("park_ring_back_failed", now, status=200)
        return
    transfers.ring_back(call, parked.holder, parker, parked.parker, now)
