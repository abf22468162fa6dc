"""Forwarding, do not disturb, call waiting's limit and call pickup
(pbx/calls/features.py, the controller's forwarding and pickup), on the
in-memory wire. Alice (2001) calls Bob (2002); Carol (2003) and Dave
(2004) are where calls go instead."""

from __future__ import annotations

from pbx.routing.dialplan import CallSettings, Forwards
from pbx.sip.address import Peer
from pbx.sip.message import Message

from .harness import (
    ALICE,
    BOB,
    PASSWORDS,
    PBX,
    Harness,
    add_extension,
    place_call,
    requests,
    response_text,
    responses,
)

CAROL = Peer("udp", "127.0.0.1", 5074)
DAVE = Peer("udp", "127.0.0.1", 5075)


def harness(**bob: object) -> Harness:
    h = Harness(CallSettings())
    add_extension(h, "2003", CAROL)
    add_extension(h, "2004", DAVE)
    if bob:
        add_extension(h, "2002", None, **bob)
    return h


def invites(messages: list[Message]) -> int:
    return len(requests(messages, "INVITE"))


def finals(messages: list[Message]) -> list[int]:
    return [r.status for r in responses(messages, "INVITE") if r.status >= 200]


def test_forward_always_rings_the_target_instead_and_the_cdr_says_so() -> None:
    h = harness(forward=Forwards(always="2003"))
    place_call(h)
    assert invites(h.take(BOB)) == 0 and invites(h.take(CAROL)) == 1
    (call,) = h.recorder.started
    assert call.transfers == ["forward always 2002 -> 2003"]


def test_forward_on_busy_when_every_phone_says_busy() -> None:
    h = harness(forward=Forwards(busy="2003"))
    place_call(h)
    (invite,) = requests(h.take(BOB), "INVITE")
    h.deliver(response_text(invite, 486, to_tag="bob"), BOB)
    assert invites(h.take(CAROL)) == 1
    assert 486 not in finals(h.take(ALICE))


def test_forward_on_no_answer_after_the_ring_time() -> None:
    h = harness(forward=Forwards(no_answer="2003"), ring_timeout=5)
    place_call(h)
    (invite,) = requests(h.take(BOB), "INVITE")
    h.deliver(response_text(invite, 180, to_tag="bob"), BOB)
    h.advance(4.9)
    assert invites(h.take(CAROL)) == 0
    h.advance(0.2)
    assert requests(h.take(BOB), "CANCEL") and invites(h.take(CAROL)) == 1


def test_forward_when_unreachable_only_without_registration() -> None:
    h = harness(forward=Forwards(unreachable="2003"))
    h.bindings.remove("2002", f"sip:2002@{BOB.host}:{BOB.port}")
    place_call(h)
    assert invites(h.take(CAROL)) == 1


def test_do_not_disturb_gives_busy_or_the_busy_forward() -> None:
    h = harness(dnd=True)
    place_call(h)
    assert invites(h.take(BOB)) == 0 and finals(h.take(ALICE)) == [486]
    h2 = harness(dnd=True, forward=Forwards(busy="2004"))
    place_call(h2)
    assert invites(h2.take(BOB)) == 0 and invites(h2.take(DAVE)) == 1


def test_a_forward_loop_ends_at_the_chain_limit_with_482_and_the_chain_in_the_cdr() -> None:
    h = harness(forward=Forwards(always="2003"))
    add_extension(h, "2003", None, forward=Forwards(always="2002"))
    place_call(h)
    assert finals(h.take(ALICE)) == [482]
    (ended,) = h.recorder.ended
    assert ended.reason == "forward_limit" and len(ended.transfers) == 6
    assert ended.transfers[:2] == ["forward always 2002 -> 2003", "forward always 2003 -> 2002"]


def test_a_forward_to_a_number_its_owner_may_not_dial_is_refused() -> None:
    h = harness(forward=Forwards(always="0912345678"))
    place_call(h)
    assert finals(h.take(ALICE))[0] in (403, 404)
    (ended,) = h.recorder.ended
    assert ended.reason is not None and ended.reason.startswith("forward_")


def test_beyond_max_calls_callers_get_busy() -> None:
    h = harness(max_calls=1)
    h.controller.presence.hold((), "2002")  # Bob is on a call already
    place_call(h)
    assert invites(h.take(BOB)) == 0 and finals(h.take(ALICE)) == [486]


def _dial(h: Harness, number: str, *, user: str = "2001", phone: Peer = ALICE, call_id: str = "f1") -> None:
    from pbx.sip import digest

    from .harness import invite_text, non_2xx_ack_text

    def invite(cseq: int, authorization: str | None) -> bytes:
        text = invite_text(call_id=call_id, cseq=cseq, branch=f"z9hG4bK{call_id}{cseq}", headers=[],
                           authorization=authorization).decode()
        text = text.replace("sip:2002@", f"sip:{number}@").replace("<sip:2002@", f"<sip:{number}@")
        text = text.replace("<sip:2001@", f"<sip:{user}@").replace(f"{ALICE.host}:{ALICE.port}",
                                                                    f"{phone.host}:{phone.port}")
        return text.encode()

    first = invite(1, None)
    h.deliver(first, phone)
    challenge = [r for r in responses(h.take(phone), "INVITE") if r.status == 407][0]
    h.deliver(non_2xx_ack_text(first, challenge), phone)
    value = digest.choose_challenge(challenge.get_all("proxy-authenticate"))
    assert value is not None
    password = PASSWORDS.get(user, f"secret-{user}")
    authorization = digest.answer_challenge(value, username=user, password=password, method="INVITE",
                                            uri=f"sip:{number}@{PBX[0]}:{PBX[1]}", cnonce="c", nc=1)
    h.deliver(invite(2, authorization), phone)


def test_star_72_sets_an_unconditional_forward_and_star_73_clears_it() -> None:
    h = harness()
    _dial(h, "*722003")
    (final,) = [r for r in responses(h.take(ALICE), "INVITE") if r.status >= 200]
    assert (final.status, final.reason) == (480, "Forwarding always On 2003")
    alice = h.plan.extensions["2001"]
    assert h.controller.features.settings(alice).forward.always == "2003"
    _dial(h, "*73", call_id="f2")
    assert h.controller.features.settings(alice).forward.always is None


def test_star_78_and_79_switch_do_not_disturb() -> None:
    h = harness()
    _dial(h, "*78")
    alice = h.plan.extensions["2001"]
    assert h.controller.features.settings(alice).dnd is True
    _dial(h, "*79", call_id="f2")
    assert h.controller.features.settings(alice).dnd is False


def test_star_72_to_oneself_or_without_a_number_is_refused() -> None:
    h = harness()
    _dial(h, "*722001")
    assert finals(h.take(ALICE)) == [403]
    _dial(h, "*72", call_id="f2")
    assert finals(h.take(ALICE)) == [484]


def test_star_8_picks_up_the_ringing_call_and_the_ringing_phone_stops_with_the_reason() -> None:
    h = harness()
    place_call(h)  # Alice calls Bob; Bob's phone rings
    (invite,) = requests(h.take(BOB), "INVITE")
    h.deliver(response_text(invite, 180, to_tag="bob"), BOB)
    h.take(ALICE)
    _dial(h, "*8", user="2003", phone=CAROL, call_id="p1")
    (cancel,) = requests(h.take(BOB), "CANCEL")
    assert cancel.get("reason") == 'SIP;cause=200;text="Call completed elsewhere"'
    to_carol = [r for r in responses(h.take(CAROL), "INVITE") if r.status == 200]
    to_alice = [r for r in responses(h.take(ALICE), "INVITE") if r.status == 200]
    assert len(to_carol) == 1 and len(to_alice) == 1
    assert b"m=audio 40000" in to_carol[0].body and b"m=audio 40000" in to_alice[0].body


def test_directed_pickup_needs_the_extension_that_rings() -> None:
    h = harness()
    place_call(h)
    (invite,) = requests(h.take(BOB), "INVITE")
    h.deliver(response_text(invite, 180, to_tag="bob"), BOB)
    _dial(h, "**2004", user="2003", phone=CAROL, call_id="p1")
    assert finals(h.take(CAROL)) == [480]  # 2004 does not ring
    _dial(h, "**2002", user="2003", phone=CAROL, call_id="p2")
    assert requests(h.take(BOB), "CANCEL")
    assert 200 in finals(h.take(CAROL))



def test_call_waiting_by_default_two_calls_then_busy() -> None:
    from .harness import SDP

    h = harness()
    assert h.plan.extensions["2002"].max_calls == 2
    for call_id in ("w1", "w2"):  # the second rings Bob's phone too: call waiting
        _dial(h, "2002", call_id=call_id)
        (invite,) = requests(h.take(BOB), "INVITE")
        h.deliver(response_text(invite, 200, to_tag=f"bob{call_id}", body=SDP, contact=BOB), BOB)
        assert 200 in finals(h.take(ALICE))
    _dial(h, "2002", call_id="w3")
    assert invites(h.take(BOB)) == 0 and finals(h.take(ALICE)) == [486]


def test_star_8_picks_up_only_in_the_pickers_group() -> None:
    # Dave is in another department: Bob's ringing call is not his to take,
    # until both share a pickup group.
    from dataclasses import replace

    from pbx.routing.dialplan import Department

    h = harness()
    h.plan = replace(h.plan, departments={**h.plan.departments, "sales": Department(key="sales", name="Sales")})
    add_extension(h, "2004", DAVE, department="sales")
    place_call(h)
    (invite,) = requests(h.take(BOB), "INVITE")
    h.deliver(response_text(invite, 180, to_tag="bob"), BOB)
    h.take(ALICE)
    _dial(h, "*8", user="2004", phone=DAVE, call_id="p1")
    assert finals(h.take(DAVE)) == [480] and requests(h.take(BOB), "CANCEL") == []
    add_extension(h, "2004", None, pickup_group="front")
    add_extension(h, "2002", None, pickup_group="front")
    _dial(h, "*8", user="2004", phone=DAVE, call_id="p2")
    assert requests(h.take(BOB), "CANCEL") and 200 in finals(h.take(DAVE))


def test_star_90_and_92_set_the_busy_and_no_answer_forwards_and_91_93_clear_them() -> None:
    h = harness()
    alice = h.plan.extensions["2001"]
    for code, call_id, phrase in (("*902003", "f1", "Forwarding busy On 2003"),
                                  ("*922004", "f2", "Forwarding no_answer On 2004")):
        _dial(h, code, call_id=call_id)
        assert {(r.status, r.reason) for r in responses(h.take(ALICE), "INVITE") if r.status >= 200} == {
            (480, phrase)}
    forward = h.controller.features.settings(alice).forward
    assert (forward.always, forward.busy, forward.no_answer) == (None, "2003", "2004")
    _dial(h, "*91", call_id="f3")
    _dial(h, "*93", call_id="f4")
    forward = h.controller.features.settings(alice).forward
    assert (forward.busy, forward.no_answer) == (None, None)
