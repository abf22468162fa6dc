"""The controller's clocks, on a hand-held clock: session expiry (RFC 4028
§10), maximum duration, a 2xx never ACKed (RFC 3261 §13.3.1.4), and a BYE
held back until the caller's ACK (§15). Minutes pass in microseconds."""

from __future__ import annotations

from pbx.routing.dialplan import CallSettings
from pbx.sip import digest
from pbx.sip.message import Request

from .harness import (
    ALICE,
    BOB,
    DOMAIN,
    AnsweredCall,
    Harness,
    ack_text,
    answer_call,
    in_dialog_text,
    invite_text,
    requests,
    response_text,
    responses,
)

TIMER = ["Supported: timer"]


def byes(h: Harness) -> tuple[int, int]:
    """How many distinct BYEs (not retransmissions) went to Alice and Bob."""
    to_alice, to_bob = (len({m.top_via.branch for m in requests(h.take(peer), "BYE")}) for peer in (ALICE, BOB))
    return to_alice, to_bob


def refresh_from_alice(h: Harness, call: AnsweredCall, method: str, cseq: int, headers: list[str]) -> Request:
    """Alice sends a refresh; Bob answers it 200 with the same session headers."""
    h.deliver(in_dialog_text(method, target="sip:127.0.0.1:5060", call_id="c1",
                             from_=f"<sip:2001@{DOMAIN}>;tag=alice", to=call.a_ok.get("to") or "", cseq=cseq,
                             source=ALICE, headers=[f"Contact: <sip:2001@{ALICE.host}:{ALICE.port}>", *headers]), ALICE)
    relayed = requests(h.take(BOB), method)[0]
    answer_headers = [h for h in headers if h.lower().startswith("session-expires")]
    h.deliver(response_text(relayed, 200, to_tag="bob", headers=answer_headers, contact=BOB), BOB)
    assert [r.status for r in responses(h.take(ALICE), method)] == [200]
    return relayed


def test_a_missed_refresh_ends_the_call_60_s_after_the_last_one() -> None:
    h = Harness(CallSettings())
    call = answer_call(h, a_headers=[*TIMER, "Session-Expires: 90"],
                       b_headers=["Require: timer", "Session-Expires: 90;refresher=uac"])
    h.deliver(ack_text(call), ALICE)
    h.advance(40.0)
    refresh_from_alice(h, call, "UPDATE", 3, [*TIMER, "Session-Expires: 90;refresher=uac"])
    h.advance(59.5)  # t = 99.5: the first expiry (t = 60) has passed, the new one not
    assert byes(h) == (0, 0)
    h.advance(1.0)
    assert byes(h) == (1, 1)
    ended = h.recorder.ended[-1]
    assert (ended.disposition, ended.hangup_side, ended.reason, ended.hangup_status) == (
        "ANSWERED", "pbx", "session_expired", 408)


def test_a_refresh_that_drops_timers_leaves_the_maximum_duration() -> None:
    h = Harness(CallSettings(max_call_seconds=200))
    call = answer_call(h, a_headers=[*TIMER, "Session-Expires: 90"],
                       b_headers=["Require: timer", "Session-Expires: 90;refresher=uac"])
    h.deliver(ack_text(call), ALICE)
    h.advance(30.0)
    refresh_from_alice(h, call, "UPDATE", 3, [])  # no Session-Expires either way: timers off
    h.advance(140.0)  # t = 170: well past the old session expiry (t = 60 then 90)
    assert byes(h) == (0, 0)
    h.advance(31.0)  # t = 201: the maximum counts from the answer at t = 0
    assert byes(h) == (1, 1)
    assert h.recorder.ended[-1].reason == "max_duration"


def test_a_2xx_never_acked_ends_the_call_at_timer_l() -> None:
    h = Harness(CallSettings())
    answer_call(h, a_headers=[], b_headers=[])
    h.take(BOB)
    h.advance(31.0)
    assert len(responses(h.take(ALICE), "INVITE")) > 3  # the 2xx, retransmitted
    assert byes(h) == (0, 0)
    h.advance(2.0)  # 64 * T1 = 32 s
    assert byes(h) == (1, 1)
    ended = h.recorder.ended[-1]
    assert (ended.disposition, ended.hangup_side, ended.reason) == ("ANSWERED", "pbx", "no_ack")


def test_callee_bye_waits_for_the_callers_ack_or_timer_l() -> None:
    h = Harness(CallSettings())
    call = answer_call(h, a_headers=[], b_headers=[])
    h.take(BOB)
    h.deliver(in_dialog_text("BYE", target=f"sip:{BOB.host}:5060", call_id=call.b_invite.call_id,
                             from_=f"<sip:2002@{DOMAIN}>;tag=bob", to=call.b_invite.get("from") or "", cseq=1,
                             source=BOB), BOB)
    assert [r.status for r in responses(h.take(BOB), "BYE")] == [200]
    assert h.recorder.ended[-1].hangup_side == "callee"
    h.advance(20.0)
    assert byes(h) == (0, 0)  # §15: not before the ACK ...
    h.advance(13.0)
    assert byes(h) == (1, 0)  # ... or the end of the 2xx retransmissions


def test_bye_in_the_callers_early_dialog_cancels_the_call() -> None:
    h = Harness(CallSettings())
    h.deliver(invite_text(call_id="c9", cseq=1, branch="z9hG4bKe1", headers=[]), ALICE)
    challenge = responses(h.take(ALICE), "INVITE")[-1]
    value = digest.choose_challenge(challenge.get_all("proxy-authenticate"))
    assert value is not None
    authorization = digest.answer_challenge(value, username="2001", password="alice-secret-2001",
                                            method="INVITE", uri="sip:2002@127.0.0.1:5060", cnonce="c", nc=1)
    h.deliver(invite_text(call_id="c9", cseq=2, branch="z9hG4bKe2", headers=[], authorization=authorization), ALICE)
    b_invite = requests(h.take(BOB), "INVITE")[0]
    h.deliver(response_text(b_invite, 180, to_tag="bob", contact=BOB), BOB)
    ringing = [r for r in responses(h.take(ALICE), "INVITE") if r.status == 180][0]
    h.deliver(in_dialog_text("BYE", target="sip:127.0.0.1:5060", call_id="c9", from_=f"<sip:2001@{DOMAIN}>;tag=alice",
                             to=ringing.get("to") or "", cseq=3, source=ALICE), ALICE)
    sent = h.take(ALICE)
    assert [r.status for r in responses(sent, "BYE")] == [200]
    assert 487 in [r.status for r in responses(sent, "INVITE")]
    assert len(requests(h.take(BOB), "CANCEL")) == 1
    ended = h.recorder.ended[-1]
    assert (ended.disposition, ended.hangup_side) == ("CANCELLED", "caller")
