"""A call into a meet-me room: the PIN asked, checked and counted, then the
caller put in (the media side does the mixing: :mod:`pbx.conference`).

Rules it keeps:
- a full room is said before the call is answered (early media, then 486:
  :func:`refused`), so nobody keys a PIN for it; a room that filled up
  meanwhile is said after the PIN, then the call ends;
- the PIN prompt is the account code prompt's machine with the room's
  words (``#`` ends an entry, three tries); the moderator PIN makes a
  moderator, the PIN a member; a room with only a moderator PIN lets
  members in with ``#`` alone;
- wrong PINs count per source (:mod:`pbx.conference.pins`); the digits
  are handed to the check and dropped: never logged, never in the CDR
  (its path shows ``(secret)``);
- alone in the room, the caller hears the music on hold (their
  department's, else the plan's, else the shipped tune);
- the CDR's destination is ``conference:<room>``; the call is answered
  when the PBX answers it, and lasts until the caller leaves (or is
  dropped by a moderator: ``conference_dropped``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import structlog

from pbx.accountcodes.prompt import Accepted, CheckCode, CodePrompt, Outcome, Words
from pbx.calls.local import CallMedia
from pbx.calls.plan import AnswerConference, End
from pbx.cdr.records import Disposition
from pbx.ivr.menu import Hangup
from pbx.routing.conferences import Conference

if TYPE_CHECKING:
    from pbx.calls.call import Call
    from pbx.calls.controller import CallController

log = structlog.get_logger("pbx.calls")

PIN_WORDS: Final = Words(enter="conference_enter_pin", invalid="conference_wrong_pin",
                         locked="conference_pin_locked", visit="conference_pin")
PIN_ATTEMPTS: Final = 3


def source_of(call: Call) -> str:
    """Whose wrong PINs count together: the calling extension's, or for a
    call from a trunk the trunk's (its caller ID is the caller's choice)."""
    if call.trunk is not None:
        return f"trunk:{call.trunk}"
    return f"ext:{call.caller_number}"


def refused(controller: CallController, call: Call, action: AnswerConference) -> End | None:
    """Busy (486, "the conference is full") for a room with no place left;
    None to answer the call."""
    if controller.media is None or not controller.media.conference_full(action.room):
        return None
    log.info("conference_full", call_id=call.a_call_id, uuid=call.uuid, room=action.room.key)
    return End(status=486, disposition=Disposition.BUSY, reason="conference_full", phrase="Conference Full",
               announcement="conference_full", language=action.language)


def enter(call: Call, room: Conference, media: CallMedia, language: str) -> None:
    """The PBX has answered ``call`` for ``room``: the PIN, then the room."""
    controller = call.controller
    if not room.asks_pin:
        _join(call, room, media, language, moderator=False)
        return
    chosen: list[bool] = []

    def on_action(action: CheckCode | Accepted | Hangup) -> None:
        match action:
            case CheckCode():
                verdict = controller.conference_pins.check(room, action.digits, source_of(call), controller.at())
                outcome: Outcome = "valid" if verdict in ("member", "moderator") else \
                    "locked" if verdict == "locked" else "invalid"
                if outcome == "valid":
                    chosen.append(verdict == "moderator")
                else:
                    log.warning("conference_pin_refused", call_id=call.a_call_id, uuid=call.uuid, room=room.key,
                                source=source_of(call), outcome=outcome)
                media.code_checked(outcome)
            case Accepted():
                _join(call, room, media, language, moderator=bool(chosen and chosen[-1]))
            case Hangup():
                call.end_by_pbx(action.reason, controller.now, status=200)

    prompt = CodePrompt(attempts=PIN_ATTEMPTS, words=PIN_WORDS, empty_entry=room.pin is None)
    media.run_code_prompt(prompt, language, on_action, call.set_path)


def _join(call: Call, room: Conference, media: CallMedia, language: str, *, moderator: bool) -> None:
    log.info("conference_entering", call_id=call.a_call_id, uuid=call.uuid, room=room.key, moderator=moderator)
    controller = call.controller
    media.join_conference(room, moderator=moderator, language=language,
                          on_end=lambda reason: call.end_by_pbx(reason, controller.now, status=200),
                          music=controller.plan.music_on_hold(call.caller))
