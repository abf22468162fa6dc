"""Music on hold: the party a phone puts on hold hears the PBX's music.

Calls run with direct media (the phones send RTP to each other). When one
side (the holder) sends a re-INVITE whose offer holds the stream
(``sendonly`` or ``inactive``, or the old ``c=0.0.0.0``, RFC 3264 §8.4),
the PBX does not relay it:

- it answers the holder itself: what the holder last saw from us, every
  stream ``inactive`` (RFC 3264 §6.1 allows it for any offered
  direction), so the holder sends nothing anywhere;
- it opens a media session of its own and re-INVITEs the held party to it
  (``sendonly``), and once that is answered plays the music, round and
  round;
- the holder's next offer that holds nothing is the resume: relayed to the
  held party as usual (the held party's media goes back to the holder's:
  direct media again), and the music stops.

Every description the PBX puts into a dialog keeps that dialog's o= line
with the next version (RFC 3264 §8; :func:`in_dialog`), and once a call
had music on hold, relayed descriptions get the same treatment.

While the music plays, the held party's own offers (its hold, a session
refresh) are the music session's to answer; either party's offer while
our re-INVITE is out gets 491 (RFC 3261 §14.1: try again later). A re-INVITE
the PBX answers itself still refreshes the session timer (RFC 4028): the
answer names the interval and the holder as refresher, and re-arms the
call's expiry watch.

The decision (:func:`decide`) is a table of the phase and who offers
what; the rest carries it out on the call's sessions and its
:class:`pbx.calls.local.CallMedia`. Nothing here reads a clock or a file.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import structlog

from pbx.calls.local import SDP_TYPE, CallMedia, MediaUnavailable
from pbx.calls.media_policy import local_encryption
from pbx.media.sdp import Direction, MediaDescription, Origin, SdpError, SessionDescription, parse_sdp
from pbx.sip import session_timer
from pbx.sip.message import Header, Request
from pbx.sip.session import AckIn, InviteSession, RequestIn, ResponseIn

if TYPE_CHECKING:
    from pbx.calls.call import Call, Side

log = structlog.get_logger("pbx.calls")

HOLD_ADDRESSES = frozenset({"0.0.0.0", "::"})
_DIRECTIONS = frozenset(d.value for d in Direction)


# ---------------------------------------------------------------- SDP, pure


def _audio(description: SessionDescription) -> MediaDescription | None:
    return next((m for m in description.media if m.media == "audio" and m.port != 0), None)


def is_hold(body: bytes) -> bool:
    """``body`` is an offer that puts the other side on hold: its audio
    stream sendonly or inactive, or its address 0.0.0.0 (RFC 2543's way)."""
    try:
        description = parse_sdp(body)
    except SdpError:
        return False
    audio = _audio(description)
    if audio is None:
        return False
    direction = audio.direction(description.direction)
    address = audio.connection or description.connection
    return direction in (Direction.SENDONLY, Direction.INACTIVE) or address in HOLD_ADDRESSES


def in_dialog(body: bytes, previous: bytes) -> bytes:
    """``body`` as the next description of a dialog that last saw
    ``previous``: under ``previous``'s o= line, version raised (RFC 3264
    §8). Unchanged when it already continues it (same session, higher
    version), when ``previous`` is empty, or when either is not SDP."""
    if not previous or not body:
        return body
    try:
        description, before = parse_sdp(body), parse_sdp(previous)
    except SdpError:
        return body
    old, new = before.origin, description.origin
    if (new.username, new.session_id, new.address) == (old.username, old.session_id, old.address) \
            and new.version > old.version:
        return body
    origin = Origin(username=old.username, session_id=old.session_id, version=old.version + 1, address=old.address)
    return replace(description, origin=origin).serialise().encode()


def inactive_answer(offer: bytes, previous: bytes) -> bytes | None:
    """Our answer to the holder's hold ``offer``: the streams it last saw
    from us (``previous``), each ``inactive``, o= version raised. None when
    ``previous`` does not describe the offer's streams (another count or
    kind of stream): the offer is then relayed as any other."""
    try:
        description, before = parse_sdp(offer), parse_sdp(previous)
    except SdpError:
        return None
    if [m.media for m in description.media] != [m.media for m in before.media]:
        return None
    media = []
    for offered, last in zip(description.media, before.media):
        kept = _crypto_for(offered.attributes, last.attributes)
        if kept is None:
            return None
        media.append(replace(last, attributes=(*kept, (Direction.INACTIVE.value, None))))
    origin = replace(before.origin, version=before.origin.version + 1)
    attributes = tuple((k, v) for k, v in before.attributes if k not in _DIRECTIONS)
    return SessionDescription(origin=origin, name=before.name, connection=before.connection,
                              attributes=attributes, media=tuple(media)).serialise().encode()


Attribute = tuple[str, str | None]


def _crypto_for(offered: tuple[Attribute, ...], last: tuple[Attribute, ...]) -> list[Attribute] | None:
    """``last``'s attributes without its direction, and with one SRTP key
    (RFC 4568 ``a=crypto``) that answers the new offer: the first of
    ``last``'s keys whose suite the offer has, under the tag of the offered
    line (an answer takes one line and carries its tag, §5.1.2; what we
    last sent the holder may have been an offer with several, and a phone's
    re-offer may number its lines anew). None when ``last`` had keys and
    none of their suites is offered.

    Lines are matched by suite name, not read with
    :func:`pbx.media.sdes.parse_crypto`: these are the phones' own keys,
    passed end to end, and may be of suites the PBX does not speak itself
    (pjsua offers AES_256_CM first)."""
    tags: dict[str, str] = {}
    for name, value in offered:
        if name == "crypto" and value:
            tag, _, rest = value.partition(" ")
            tags.setdefault(rest.split(" ", 1)[0], tag)
    kept: list[Attribute] = []
    keys = [value.partition(" ")[2] for name, value in last if name == "crypto" and value]
    for name, value in last:
        if name not in _DIRECTIONS and name != "crypto":
            kept.append((name, value))
    if not keys:
        return kept
    for rest in keys:
        answer_tag = tags.get(rest.split(" ", 1)[0])
        if answer_tag is not None:
            return [*kept, ("crypto", f"{answer_tag} {rest}")]
    return None


# ---------------------------------------------------------------- the decision, pure


class Phase(enum.Enum):
    STARTING = "starting"    # our re-INVITE moving the held party to the music is out
    PLAYING = "playing"      # the held party hears the music
    SILENT = "silent"        # the held party refused the music: held without it
    RESUMED = "resumed"      # over; relayed descriptions still keep each dialog's o= line


class Verdict(enum.Enum):
    RELAY = "relay"          # pass the offer on, as without music on hold
    START = "start"          # answer the holder, move the held party to the music
    REFRESH = "refresh"      # the holder holds again (a session refresh): answer it ourselves
    WAIT = "wait"            # 491: our re-INVITE is out, try again later
    RESUME = "resume"        # the holder resumes: relay it, stop the music
    LOCAL = "local"          # the held party's offer: the music session answers it


def decide(phase: Phase | None, *, from_holder: bool, hold: bool, can_play: bool) -> Verdict:
    """What to do with an offer in an answered call. ``phase``: where music
    on hold is (None or RESUMED: not on hold); ``from_holder``: the offer
    comes from the side that put the other on hold (any side when not on
    hold); ``hold``: it holds (:func:`is_hold`); ``can_play``: the PBX can
    answer calls itself (and no transfer is under way)."""
    if phase is None or phase is Phase.RESUMED:
        return Verdict.START if hold and can_play else Verdict.RELAY
    if phase is Phase.STARTING:
        return Verdict.REFRESH if from_holder and hold else Verdict.WAIT
    if from_holder:
        return Verdict.REFRESH if hold else Verdict.RESUME
    return Verdict.LOCAL if phase is Phase.PLAYING else Verdict.RELAY


def answer_timer_headers(request: Request, *, session_expires: int, floor: int,
                         peer_floor: int | None = None) -> tuple[list[Header], int | None]:
    """Session timer headers of our own 2xx to a re-INVITE we answer
    (RFC 4028 §9), and the interval it sets: what we would have relayed,
    the requester refreshing. None (no timer) when it asked us to refresh:
    the PBX never does."""
    relayed = session_timer.request_headers(request, session_expires=session_expires, floor=floor,
                                            peer_floor=peer_floor)
    asked = session_timer.parse_session_expires(dict(relayed).get("session-expires"))
    if asked is None or asked.refresher == "uas":
        return [], None
    chosen = session_timer.SessionExpires(asked.interval, "uac")
    return [("session-expires", str(chosen)), ("require", session_timer.TIMER_TAG)], asked.interval


# ---------------------------------------------------------------- carrying it out


@dataclass(slots=True, eq=False)
class HoldOffer:
    """Ref of our re-INVITE moving the held party to the music."""

    request: Request | None = None


@dataclass(slots=True, eq=False)
class MusicOnHold:
    """A call's music on hold (kept once used: see :class:`Phase`)."""

    holder: Side
    phase: Phase
    media: CallMedia | None = None
    offer: HoldOffer | None = None
    music: str | None = None
    """The file played (None: the shipped tune)."""

    def stop(self) -> None:
        """The music ends (resume, transfer, the call's end)."""
        media, self.media = self.media, None
        if media is not None:
            media.close()
        if self.phase is not Phase.RESUMED:
            self.phase = Phase.RESUMED


def on_offer(call: Call, side: Side, session: InviteSession, event: RequestIn, now: float) -> bool:
    """A re-INVITE or UPDATE from ``side`` of an answered call: True when
    it was handled here, False to relay it (its body then goes through
    :func:`relayed_body`)."""
    request = event.request
    held = call.music
    phase = held.phase if held is not None else None
    holding = phase is not None and phase is not Phase.RESUMED
    from_holder = not holding or (held is not None and held.holder is side)
    can_play = call.controller.media is not None and call.transferring is None and request.method == "INVITE"
    verdict = decide(phase, from_holder=from_holder, hold=bool(request.body) and is_hold(request.body),
                     can_play=can_play)
    if verdict in (Verdict.START, Verdict.REFRESH, Verdict.LOCAL) and \
            call.controller.relay.refuse_short_interval(session, event.key, request):
        return True  # 422 (RFC 4028 §8.1): as if relayed
    match verdict:
        case Verdict.RELAY:
            return False
        case Verdict.WAIT:
            session.answer(event.key, request, 491)
            return True
        case Verdict.START:
            return _start(call, side, session, event, now)
        case Verdict.REFRESH:
            return _answer_holder(call, session, event, now)
        case Verdict.RESUME:
            assert held is not None
            held.stop()
            log.info("hold_resumed", call_id=call.a_call_id, uuid=call.uuid, holder=side.value)
            return False
        case Verdict.LOCAL:
            assert held is not None
            return _answer_held(call, held, session, event, now)


def relayed_body(call: Call, target: InviteSession, body: bytes) -> bytes:
    """A description relayed to ``target``'s dialog: once the PBX put its
    own descriptions into the call's dialogs, made to continue what that
    dialog last saw (:func:`in_dialog`)."""
    if call.music is None or not body:
        return body
    return in_dialog(body, target.sdp_sent)


def _answer_holder(call: Call, session: InviteSession, event: RequestIn, now: float) -> bool:
    request = event.request
    answer = inactive_answer(request.body, session.sdp_sent)
    if answer is None:
        return False
    answer_locally(call, session, event, answer, now)
    return True


def answer_locally(call: Call, session: InviteSession, event: RequestIn, body: bytes, now: float) -> None:
    """Our own 2xx to an offer (with our session timer: the call's expiry
    watch re-armed by it, as by a relayed refresh)."""
    settings = call.controller.settings
    headers, interval = answer_timer_headers(event.request, session_expires=settings.session_expires,
                                             floor=settings.min_se)
    session.answer(event.key, event.request, 200, headers=[SDP_TYPE, *headers], body=body)
    call.watch(interval, now)


def _start(call: Call, side: Side, session: InviteSession, event: RequestIn, now: float) -> bool:
    if inactive_answer(event.request.body, session.sdp_sent) is None:
        return False
    return play_music(call, side, before=lambda: _answer_holder(call, session, event, now))


def play_music(call: Call, side: Side, *, before: Callable[[], bool] = lambda: True) -> bool:
    """Move the party opposite ``side`` to the PBX's music (our re-INVITE,
    ``sendonly``), as if ``side`` held it; ``before`` runs once the offer
    is made (answering the holder), False from it gives up. False when the
    music cannot be had (no media service, no port)."""
    other = call.session_of(side.other)
    service = call.controller.media
    if other is None or service is None:
        return False
    try:
        held_party = call.party(side.other)
        # A phone talking RTP/SAVP now gets an RTP/SAVP offer: one that insists
        # on SRTP refuses best-effort (RTP/AVP + a=crypto) offers.
        setting = "required" if b"RTP/SAVP" in other.sdp_sent else (
            held_party.media_encryption if held_party is not None else None)
        encryption = local_encryption(setting,
                                      on_tls=other.dest.transport == "tls",
                                      allow_plain_signalling=call.controller.plan.security.sdes_over_plain_signalling)
        media = service.open(lambda work: call.controller.act(call, work), encryption)
    except MediaUnavailable as err:
        log.warning("hold_music_unavailable", call_id=call.a_call_id, uuid=call.uuid, error=str(err))
        return False
    try:
        offer = in_dialog(media.offer(send_only=True), other.sdp_sent)
    except SdpError as err:
        log.warning("hold_music_unavailable", call_id=call.a_call_id, uuid=call.uuid, error=str(err))
        media.close()
        return False
    if not before():
        media.close()
        return False
    plan = call.controller.plan
    music = plan.music_on_hold(call.party(side), call.party(side.other))
    held = call.music = MusicOnHold(holder=side, phase=Phase.STARTING, media=media, music=music)
    ref = held.offer = HoldOffer()
    ref.request = other.send("INVITE", headers=[SDP_TYPE], body=offer, ref=ref, retry_glare=True)
    log.info("hold_started", call_id=call.a_call_id, uuid=call.uuid, holder=side.value, music=music or "shipped")
    return True


def on_response(call: Call, ref: HoldOffer, event: ResponseIn) -> None:
    """The held party answered our re-INVITE moving it to the music."""
    held, other = call.music, None
    if held is None or held.offer is not ref:
        return
    other = call.session_of(held.holder.other)
    held.offer = None
    response, media = event.response, held.media
    if response is not None and 200 <= event.status < 300 and ref.request is not None:
        if other is not None:
            other.ack_reinvite(ref.request)
        if media is not None and held.phase is Phase.STARTING:
            try:
                media.accept(response.body)
            except SdpError as err:
                log.warning("hold_music_refused", call_id=call.a_call_id, uuid=call.uuid, error=str(err))
            else:
                held.phase = Phase.PLAYING
                media.music(held.music)
                return
    else:
        log.info("hold_music_refused", call_id=call.a_call_id, uuid=call.uuid, status=event.status)
    if held.phase is Phase.STARTING:
        held.stop()
        held.phase = Phase.SILENT


def _answer_held(call: Call, held: MusicOnHold, session: InviteSession, event: RequestIn, now: float) -> bool:
    """The held party's own offer while the music plays: the music session answers."""
    media, request = held.media, event.request
    if media is None:
        return False
    try:
        sdp = media.answer(request.body) if request.body else media.offer(send_only=True)
    except SdpError as err:
        session.answer(event.key, request, 488, headers=[("warning", f'399 {call.controller.plan.domain}'
                                                                     f' "{str(err)[:200]}"')])
        return True
    answer_locally(call, session, event, sdp, now)
    return True


def on_ack(call: Call, session: InviteSession, event: AckIn) -> bool:
    """An ACK that answers an offer of the music session (to an offer-less
    re-INVITE of the held party); True when it was that."""
    held = call.music
    if held is None or held.media is None or held.phase is not Phase.PLAYING or not event.request.body:
        return False
    if session is not call.session_of(held.holder.other):
        return False
    try:
        held.media.accept(event.request.body)
    except SdpError as err:
        log.info("sdp_answer_refused", call_id=call.a_call_id, uuid=call.uuid, error=str(err))
    return True
