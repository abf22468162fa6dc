"""Media anchoring on the calling path: which calls the PBX puts its own
media endpoint into, and the SDP each leg sees then.

Calls between phones run with direct media. A call is anchored instead
(the PBX relays its RTP, :mod:`pbx.media.anchor`) when:

- it may be recorded (:func:`pbx.recording.policy.decide` gives ``always``
  or ``on_demand``), or
- its legs cannot talk directly: the caller offered SRTP keys over TLS
  and a callee leg is not on TLS (its keys would cross plain signalling,
  :mod:`pbx.calls.media_policy`). Each leg then gets what it can do: the
  caller SRTP, the callee plain RTP, the PBX decrypting on one side and
  encrypting on the other.

Only a caller's INVITE with an offer is anchored (a delayed offer goes on
with direct media, logged). The caller's offer is answered by the anchor
at once (which fixes the codec), every callee leg is offered that codec
from the anchor's B side, and each 18x/2xx to the caller carries the
anchor's answer. A call the PBX answered itself first (an auto attendant's
transfer, a hunt group's queue, an account code prompt) is anchored when
it rings on: the re-INVITE that takes the caller off the PBX's own media
points it at the anchor instead of at the callee. Re-INVITEs and UPDATEs with an offer from either side
are answered by the anchor for that leg alone: a phone that holds or moves
changes its own leg, the other is not disturbed; while a phone holds, the
anchor plays the other party music on hold (the same file
:mod:`pbx.calls.hold` would). A transfer (REFER)
of an anchored call gives the target the transferor's leg of the anchor
(:mod:`pbx.calls.transfer`): the recording goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import structlog

from pbx.calls import hold
from pbx.calls.fork import ContactTarget, TrunkTarget
from pbx.calls.local import MediaUnavailable
from pbx.calls.media_policy import local_encryption, offer_keys
from pbx.media.dtmf_info import DtmfInfoError, parse_dtmf_info
from pbx.media.relay import Leg
from pbx.media.sdes import MediaEncryption
from pbx.media.sdp import SdpError
from pbx.recording.policy import CallRecording, Party, RecordingMode, decide
from pbx.registrar.destination import destination
from pbx.routing.dialplan import Extension
from pbx.sip.message import Request
from pbx.sip.session import InviteSession, RequestIn

if TYPE_CHECKING:
    from pbx.calls.call import Call, Side
    from pbx.calls.plan import Ring

log = structlog.get_logger("pbx.calls")

BRIDGED_REFUSALS = frozenset({"callee_not_on_tls"})
"""Refusals of :func:`pbx.calls.media_policy.check_offer` an anchor cures
(not ``callee_srtp_required``: an extension that requires SRTP wants its
caller's media encrypted end to end, and a plain offer gets 488)."""


class Anchor(Protocol):
    """One anchored call's media (:class:`pbx.media.anchor.MediaAnchor`)."""

    a_answer: bytes | None
    recorded: str | None

    def answer_a(self, offer: bytes, encryption: MediaEncryption) -> bytes: ...

    def offer_b(self, encryption: MediaEncryption) -> bytes: ...

    def accept_b(self, answer: bytes) -> None: ...

    def answer_leg(self, leg: Leg, offer: bytes, encryption: MediaEncryption, *, new_party: bool = False) -> bytes: ...

    def offer_leg(self, leg: Leg, encryption: MediaEncryption) -> bytes: ...

    def start(self) -> None: ...

    def hold(self, leg: Leg, holding: bool, music: str | None) -> bool: ...

    def key(self, leg: Leg, digit: str, at: float) -> None: ...

    def close(self) -> str | None: ...


class Anchors(Protocol):
    def open(self, call_uuid: str, recording: CallRecording, language: str) -> Anchor:
        """:class:`MediaUnavailable` when no ports are free."""
        ...


def _party(extension: Extension | None) -> Party:
    return Party() if extension is None else Party(extension=extension.number, department=extension.department)


def recording_for(call: Call, action: Ring) -> CallRecording:
    plan = call.controller.plan
    callee: Extension | None = None
    for target in action.targets:
        if isinstance(target, ContactTarget):
            callee = plan.extension(target.extension)
            break
    route = call.rule.removeprefix("routes.") if call.rule and call.rule.startswith("routes.") else None
    hunt = action.hunt.group.number if action.hunt is not None else None
    return decide(plan.recording, caller=_party(call.caller), callee=_party(callee), route=route, hunt_group=hunt)


def _leg_on_tls(call: Call, target: ContactTarget | TrunkTarget) -> bool:
    if isinstance(target, TrunkTarget):
        return target.dialling.gateway.transport == "tls"
    extension = call.controller.plan.extension(target.extension)
    return destination(target.binding, extension.nat if extension is not None else "auto").peer.transport == "tls"


def _needs_bridge(call: Call, action: Ring) -> bool:
    """The caller's SRTP cannot reach a callee leg as it is (see the module)."""
    if call.bridge_srtp:
        return True
    if call.a.dest.transport != "tls":
        return False
    keys = offer_keys(call.a_request.body)
    if keys is None or not keys.usable:
        return False
    if call.controller.plan.security.sdes_over_plain_signalling:
        return False
    return any(not _leg_on_tls(call, target) for target in action.targets)


def encryption(call: Call, *, on_tls: bool, party: Extension | None) -> MediaEncryption:
    """SRTP towards one leg's phone, as for the PBX's own media
    (:func:`pbx.calls.media_policy.local_encryption`)."""
    return local_encryption(party.media_encryption if party is not None else None, on_tls=on_tls,
                            allow_plain_signalling=call.controller.plan.security.sdes_over_plain_signalling)


def prepare(call: Call, action: Ring) -> None:
    """Before the fork rings: anchor the call if it must be (see the module)."""
    anchors = call.controller.anchors
    if call.anchor is not None or anchors is None:
        return
    recording = recording_for(call, action)
    bridge = _needs_bridge(call, action)
    if recording.mode is RecordingMode.NEVER and not bridge:
        return
    if not call.a_request.body:
        log.info("anchor_skipped", call_id=call.a_call_id, uuid=call.uuid, reason="delayed_offer")
        return
    try:
        anchor = anchors.open(call.uuid, recording, call.controller.plan.language_for(call.caller))
    except MediaUnavailable as err:
        log.warning("anchor_unavailable", call_id=call.a_call_id, uuid=call.uuid, error=str(err))
        return
    try:
        anchor.answer_a(call.a_request.body, encryption(call, on_tls=call.a.dest.transport == "tls", party=call.caller))
    except SdpError as err:
        log.info("anchor_skipped", call_id=call.a_call_id, uuid=call.uuid, reason="sdp", error=str(err))
        anchor.close()
        return
    call.anchor = anchor
    log.info("call_anchored", call_id=call.a_call_id, uuid=call.uuid, recording=recording.mode.value,
             why=recording.why, srtp_bridge=bridge, announce=recording.announce)


def leg_offer(call: Call, anchor: Anchor, *, on_tls: bool, callee: Extension | None) -> bytes:
    """What a callee leg is offered: the anchor's B side."""
    return anchor.offer_b(encryption(call, on_tls=on_tls, party=callee))


def to_caller(call: Call, body: bytes, *, final: bool) -> bytes:
    """The body of an 18x/2xx relayed to the caller: the anchor's answer
    (the callee's answer goes to the anchor's B side)."""
    anchor = call.anchor
    if anchor is None:
        return body
    if body:
        try:
            anchor.accept_b(body)
        except SdpError as err:
            log.warning("anchor_answer_refused", call_id=call.a_call_id, uuid=call.uuid, error=str(err))
    if final:
        anchor.start()
    return anchor.a_answer or b""


def on_offer(call: Call, side: Side, session: InviteSession, event: RequestIn, now: float) -> bool:
    """A re-INVITE or UPDATE in an anchored call: answered for that leg here."""
    anchor = call.anchor
    if anchor is None:
        return False
    request = event.request
    if call.controller.relay.refuse_short_interval(session, event.key, request):
        return True
    leg = leg_of(call, side)
    srtp = encryption(call, on_tls=session.dest.transport == "tls", party=call.party(side))
    try:
        body = anchor.answer_leg(leg, request.body, srtp) if request.body else anchor.offer_leg(leg, srtp)
    except SdpError as err:
        session.answer(event.key, request, 488,
                       headers=[("warning", f'399 {call.controller.plan.domain} "{str(err)[:200]}"')])
        return True
    hold.answer_locally(call, session, event, body, now)
    if request.body:
        # Music on hold from the anchor: the other leg hears it while this one holds.
        holding = hold.is_hold(request.body)
        if anchor.hold(leg, holding, call.controller.plan.music_on_hold(call.party(side), call.party(side.other))):
            log.info("hold_started" if holding else "hold_resumed", call_id=call.a_call_id, uuid=call.uuid,
                     holder=side.value, anchored=True)
    return True


def leg_of(call: Call, side: Side) -> Leg:
    """The anchor's leg of a side of the call: A's is leg A, until a
    transfer by the caller made the callee the call's A side (the anchor's
    legs stay where they are)."""
    from pbx.calls.call import Side

    return Leg.A if (side is Side.A) != call.anchor_swapped else Leg.B


def answer_target(call: Call, side: Side, session: InviteSession, offer: bytes) -> bytes | None:
    """A transfer target's offer, answered on the leg of ``side`` (the
    transferor's, whose place the target takes); None when unusable (logged)."""
    anchor = call.anchor
    assert anchor is not None
    leg = leg_of(call, side)
    try:
        answer = anchor.answer_leg(leg, offer, encryption(call, on_tls=session.dest.transport == "tls", party=None),
                                   new_party=True)
    except SdpError as err:
        log.info("anchor_answer_refused", call_id=call.a_call_id, uuid=call.uuid, leg=leg.name, error=str(err))
        return None
    anchor.hold(leg, False, None)   # a transferor who held the transferee: the target talks now
    return answer


def answer_picker(call: Call, session: InviteSession, picker: Extension,
                  offer: bytes) -> tuple[bytes, bytes] | None:
    """Call pickup of an anchored ringing call: the picker's offer answered
    on the anchor's callee leg; (the caller's answer, the picker's), None
    when the picker's offer is unusable (the pickup does not happen)."""
    anchor = call.anchor
    assert anchor is not None
    if not offer or anchor.a_answer is None:
        return None
    try:
        to_picker = anchor.answer_leg(Leg.B, offer, encryption(call, on_tls=session.dest.transport == "tls",
                                                                party=picker), new_party=True)
    except SdpError as err:
        log.info("anchor_answer_refused", call_id=call.a_call_id, uuid=call.uuid, leg="B", error=str(err))
        return None
    anchor.start()
    return anchor.a_answer, to_picker


def on_info(call: Call, side: Side, request: Request, now: float) -> None:
    """A key in a SIP INFO (relayed to the other side as usual): ``*1``
    counts for on-demand recording as when sent in the media."""
    anchor = call.anchor
    if anchor is None or not request.body:
        return
    try:
        digit = parse_dtmf_info(request.get("content-type") or "", request.body, now)
    except DtmfInfoError:
        return   # another INFO package: not ours to read
    anchor.key(leg_of(call, side), digit.digit, now)


def on_ack(call: Call, side: Side, body: bytes) -> None:
    """The ACK answering our offer in a re-INVITE without one."""
    anchor = call.anchor
    if anchor is None or not body:
        return
    try:
        if leg_of(call, side) is Leg.B:
            anchor.accept_b(body)
    except SdpError as err:
        log.info("sdp_answer_refused", call_id=call.a_call_id, uuid=call.uuid, error=str(err))


def ended(call: Call) -> None:
    anchor, call.anchor = call.anchor, None
    if anchor is not None:
        call.recording_file = anchor.close()

