"""Hunt groups in the call controller, on the in-memory wire of
tests/trunks/test_trunk_calls.py (real SIP messages, a hand-held clock for
the timers): five members as scripted phones, ten calls per strategy, the
exact order they ring in and who answers; ring_all's CANCELs with the
Reason; members skipped at once; each overflow condition to its own
destination; the agent codes.
"""

from __future__ import annotations

import random
import secrets
import time
from pathlib import Path

import pytest

from pbx.calls.call import Call
from pbx.calls.fork import COMPLETED_ELSEWHERE
from pbx.calls.hunt_state import HuntState, Record
from pbx.routing.dialplan import Dialplan
from pbx.routing.loader import load_dialplan
from pbx.sip.address import Peer
from pbx.sip.message import Request, Response, make_request, make_response
from tests.calls.test_member_calls import register
from tests.trunks.test_trunk_calls import GW1, PHONE, Wire, authenticated_call

MEMBERS = ["2101", "2102", "2103", "2104", "2105"]
PEERS = {number: Peer("udp", f"192.0.2.{100 + index}", 5062) for index, number in enumerate(MEMBERS, start=1)}
RECEPTION = Peer("udp", "192.0.2.99", 5062)
NIGHT = Peer("udp", "192.0.2.98", 5062)

PLAN = """\
domain: pbx.example.com
registrar: {auth_algorithms: [MD5]}
departments:
  desk: {name: Desk, class_of_service: outside, caller_id: "02873000300"}
extensions:
  1001: {name: An Nguyen, department: desk, password: an-secret-1001}
  1099: {name: Reception, department: desk, password: reception-secret-1099}
  1098: {name: Night, department: desk, password: night-secret-1098}
  2101: {name: M1, department: desk, password: m1-secret-2101}
  2102: {name: M2, department: desk, password: m2-secret-2102}
  2103: {name: M3, department: desk, password: m3-secret-2103}
  2104: {name: M4, department: desk, password: m4-secret-2104}
  2105: {name: M5, department: desk, password: m5-secret-2105}
number_plans:
  vietnam:
    - {pattern: "0ZXXXXXXX.", class: national}
classes_of_service:
  outside: {allow: [national]}
trunks:
  viettel:
    gateways: [{host: 198.51.100.1, port: 5070}]
    caller_id: "02873000000"
    rewrites: [{match: "0", strip: 1, prepend: "+84"}]
routes:
  - {name: vn-national, pattern: "0ZXXXXXXX.", trunk: viettel}
hunt_groups:
  "700": {name: Linear, strategy: linear, members: [MEMBERS], member_seconds: 5, total_seconds: 120}
  "701": {name: Circular, strategy: circular, members: [MEMBERS], member_seconds: 5}
  "702": {name: Sales, strategy: ring_all, members: [MEMBERS], member_seconds: 30}
  "703": {name: Idle, strategy: longest_idle, members: [MEMBERS], member_seconds: 5}
  "704":
    name: Tiers
    strategy: ring_all
    members:
      - {extension: "2101", tier: 1}
      - {extension: "2102", tier: 1}
      - {extension: "2103", tier: 2, ring_seconds: 8}
      - {extension: "2104", tier: 2}
    member_seconds: 4
  "705": {name: Fewest, strategy: fewest_calls, members: [MEMBERS], member_seconds: 5}
  "706": {name: Random, strategy: random, members: [{extension: "2101", weight: 50}, "2102", "2103"]}
  "707":
    name: Support
    strategy: linear
    members: ["2101", "2102"]
    member_seconds: 5
    total_seconds: 12
    skip_busy: true
    overflow:
      no_answer: {extension: "1099"}
      busy: {hunt_group: "708"}
      nobody_logged_in: {extension: "1098"}
      none_registered: {number: "0912000009"}
    department: desk
  "708": {name: Backup, members: ["2105"]}
  "709": {name: Outside, strategy: linear, members: [{number: "0912000001"}, "2102"], department: desk}
""".replace("[MEMBERS]", "[" + ", ".join(f'"{m}"' for m in MEMBERS) + "]")

@pytest.fixture
def plan(tmp_path: Path) -> Dialplan:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return load_dialplan(path)


@pytest.fixture
def wire(plan: Dialplan) -> Wire:
    wire = Wire(plan)
    wire.controller.rng = random.Random(11)
    for number in MEMBERS:
        register(wire, number, PEERS[number])
    register(wire, "1099", RECEPTION)
    register(wire, "1098", NIGHT)
    return wire


class Phones:
    """The members' phones, each answering by its behaviour; the order their
    INVITEs arrived in."""

    def __init__(self, wire: Wire, behaviours: dict[str, str]) -> None:
        self.wire, self.behaviours = wire, behaviours
        self.rang: list[str] = []
        self.invites: dict[str, list[Request]] = {}
        self.cancels: dict[str, list[Request]] = {}
        self.answered: tuple[str, Request] | None = None

    def step(self) -> None:
        """Answer what arrived: each phone as it was told."""
        for number, peer in {**PEERS, "1099": RECEPTION, "1098": NIGHT}.items():
            for message in self.wire.take(peer):
                if not isinstance(message, Request):
                    continue
                if message.method == "INVITE":
                    self.rang.append(number)
                    self.invites.setdefault(number, []).append(message)
                    what = self.behaviours.get(number, "ring")
                    if what == "busy":
                        self.wire.deliver(make_response(message, 486, to_tag=f"t{number}"), peer)
                    else:
                        self.wire.deliver(make_response(message, 180, to_tag=f"t{number}"), peer)
                    if what == "answer" and self.answered is None:
                        self.answered = (number, message)
                        self.wire.deliver(make_response(
                            message, 200, to_tag=f"t{number}", headers=[("contact", f"<sip:{number}@{peer.host}>")],
                            body=b"v=0\r\n"), peer)
                elif message.method == "CANCEL":
                    self.cancels.setdefault(number, []).append(message)
                    self.wire.deliver(make_response(message, 200), peer)
                    invite = next((i for i in self.invites.get(number, []) if i.call_id == message.call_id), None)
                    if invite is not None:  # else a CANCEL of an earlier call's leg: the 200 does
                        self.wire.deliver(make_response(invite, 487, to_tag=f"t{number}"), peer)
                elif message.method == "BYE":
                    self.wire.deliver(make_response(message, 200), peer)


def final(wire: Wire) -> Response | None:
    finals = [r for r in wire.responses_to(PHONE) if r.status >= 200 and r.cseq.method == "INVITE"]
    return finals[-1] if finals else None


def call_group(wire: Wire, number: str, behaviours: dict[str, str], *, hang_up: bool = True,
               limit: float = 200.0) -> tuple[Phones, Response]:
    """Call ``number`` from 1001; step the phones and the clock until the
    caller has a final answer; hang up an answered call."""
    wire.take(PHONE)
    invite = authenticated_call(wire, number)
    phones = Phones(wire, behaviours)
    waited = 0.0
    while (answer := final(wire)) is None:
        phones.step()
        if final(wire) is not None:
            break
        assert waited < limit, "the caller never got a final answer"
        wire.advance(0.5)
        waited += 0.5
    answer = final(wire)
    assert answer is not None
    if answer.status == 200 and hang_up:
        end_call(wire, invite, answer)
        phones.step()
    return phones, answer


def end_call(wire: Wire, invite: Request, ok: Response) -> None:
    def request(method: str, cseq: str) -> Request:
        return make_request(method, "sip:pbx@192.0.2.1:5060", [
            ("via", f"SIP/2.0/UDP {PHONE.host}:{PHONE.port};branch=z9hG4bK{secrets.token_hex(6)};rport"),
            ("max-forwards", "70"), ("from", invite.get("from") or ""), ("to", ok.get("to") or ""),
            ("call-id", invite.call_id), ("cseq", cseq)], b"")
    wire.deliver(request("ACK", "2 ACK"), PHONE)
    wire.deliver(request("BYE", "3 BYE"), PHONE)


def last_call(wire: Wire) -> Call:
    return wire.recorder.started[-1]


# ---------------------------------------------------------------- strategies


def test_linear_rings_top_down_every_time(wire: Wire) -> None:
    # M1 and M2 never answer, M3 does: every call rings M1, M2 (5 s each), M3.
    for _ in range(10):
        phones, answer = call_group(wire, "700", {"2103": "answer"})
        assert answer.status == 200
        assert phones.rang == ["2101", "2102", "2103"]
        call = last_call(wire)
        assert (call.hunt_group, call.answered_by, call.destination) == ("700", "2103", "2103")
        assert [leg.target for leg in call.legs] == ["2101", "2102", "2103"]


def test_linear_gives_each_member_its_ring_time_and_cancels_it(wire: Wire) -> None:
    wire.take(PHONE)
    authenticated_call(wire, "700")
    phones = Phones(wire, {})
    phones.step()
    assert phones.rang == ["2101"]
    wire.advance(4.9)
    phones.step()
    assert phones.rang == ["2101"] and not phones.cancels
    wire.advance(0.2)
    phones.step()
    assert phones.rang == ["2101", "2102"]
    assert "reason" not in {name for name, _ in phones.cancels["2101"][0].headers}, "a plain CANCEL: a missed call"


def test_circular_continues_after_whoever_took_the_last_call(wire: Wire) -> None:
    everyone = {number: "answer" for number in MEMBERS}
    answered = []
    for _ in range(10):
        phones, answer = call_group(wire, "701", everyone)
        assert answer.status == 200 and len(phones.rang) == 1
        answered.append(last_call(wire).answered_by)
    assert answered == MEMBERS + MEMBERS
    # M3 does not answer now: the call after M2's goes M3, then M4 takes it,
    # and the next starts after M4.
    phones, _ = call_group(wire, "701", {**everyone, "2103": "ring"})
    assert phones.rang == ["2101"]
    phones, _ = call_group(wire, "701", {**everyone, "2103": "ring"})
    assert phones.rang == ["2102"]
    phones, _ = call_group(wire, "701", {**everyone, "2103": "ring"})
    assert phones.rang == ["2103", "2104"]
    phones, _ = call_group(wire, "701", everyone)
    assert phones.rang == ["2105"]


def test_circular_position_survives_a_new_controller_through_the_state(plan: Dialplan) -> None:
    saved: list[Record] = []
    first = Wire(plan)
    first.controller.hunts = HuntState(save=saved.append)
    for number in MEMBERS:
        register(first, number, PEERS[number])
    for _ in range(3):
        call_group(first, "701", {number: "answer" for number in MEMBERS})
    # A restarted node: a fresh cache filled from what was saved.
    second = Wire(plan)
    second.controller.hunts.merge(saved)
    for number in MEMBERS:
        register(second, number, PEERS[number])
    phones, _ = call_group(second, "701", {number: "answer" for number in MEMBERS})
    assert phones.rang == ["2104"]


def test_ring_all_rings_everyone_and_cancels_the_others_with_the_reason(wire: Wire) -> None:
    for index in range(10):
        winner = MEMBERS[index % 5]
        phones, answer = call_group(wire, "702", {winner: "answer"})
        assert answer.status == 200
        assert sorted(phones.rang) == MEMBERS
        assert last_call(wire).answered_by == winner
        for number in MEMBERS:
            if number == winner:
                assert number not in phones.cancels
                continue
            (cancel,) = phones.cancels[number]
            assert ("reason", COMPLETED_ELSEWHERE[1]) in cancel.headers


def test_members_see_the_group_and_the_caller(wire: Wire) -> None:
    phones, _ = call_group(wire, "702", {"2101": "answer"})
    invite = phones.invites["2102"][0]
    assert invite.from_.display == "Sales: 1001"
    assert invite.from_.uri == "sip:1001@pbx.example.com"


def test_longest_idle_rings_whoever_finished_longest_ago(wire: Wire) -> None:
    everyone = {number: "answer" for number in MEMBERS}
    order = []
    for _ in range(5):  # nobody has taken a call yet: plan order
        call_group(wire, "703", everyone)
        order.append(last_call(wire).answered_by)
        time.sleep(0.002)  # the wall clock tells the ends apart
    assert order == MEMBERS
    # M2 takes a long call now (still up while M4 and M5 take theirs ...).
    wire.take(PHONE)
    phones, answer = call_group(wire, "703", {"2101": "ring", **{n: "answer" for n in MEMBERS[1:]}},
                                hang_up=False)
    assert phones.rang == ["2101", "2102"] and last_call(wire).answered_by == "2102"
    long_call = last_call(wire)
    order = []
    for _ in range(4):
        time.sleep(0.002)
        phones, _ = call_group(wire, "703", everyone)
        order.append(last_call(wire).answered_by)
    # M1 (idle since its first call), then M3, M4, M5; M2 answered last and
    # is still on that call: it is not idle at all, so it comes last.
    assert order == ["2101", "2103", "2104", "2105"]
    assert long_call.answered_by == "2102"


def test_tiers_ring_tier_one_together_then_tier_two(wire: Wire) -> None:
    for _ in range(10):
        wire.take(PHONE)
        invite = authenticated_call(wire, "704")
        phones = Phones(wire, {"2104": "answer"})
        phones.step()
        assert sorted(phones.rang) == ["2101", "2102"]
        wire.advance(3.9)
        phones.step()
        assert sorted(phones.rang) == ["2101", "2102"]
        wire.advance(0.2)
        phones.step()
        assert sorted(phones.rang[2:]) == ["2103", "2104"]
        ok = final(wire)
        assert ok is not None and ok.status == 200
        assert last_call(wire).answered_by == "2104"
        phones.step()  # 2103's CANCEL
        assert phones.cancels["2103"]
        end_call(wire, invite, ok)
        phones.step()


def test_fewest_calls_today_first(wire: Wire) -> None:
    everyone = {number: "answer" for number in MEMBERS}
    answered = []
    for _ in range(10):
        call_group(wire, "705", everyone)
        answered.append(last_call(wire).answered_by)
    assert answered == MEMBERS + MEMBERS


def test_random_prefers_the_heavier_member(wire: Wire) -> None:
    first = []
    for _ in range(10):
        phones, _ = call_group(wire, "706", {"2101": "answer", "2102": "answer", "2103": "answer"})
        first.append(phones.rang[0])
    assert first.count("2101") >= 8, first  # weight 50 against 1 and 1


# ---------------------------------------------------------------- skipping and overflow


def test_busy_unregistered_and_logged_out_members_are_skipped_at_once(wire: Wire, plan: Dialplan) -> None:
    wire.bindings.remove("2101", f"sip:2101@{PEERS['2101'].host}:{PEERS['2101'].port}")
    wire.controller.hunts.set_login("700", "2102", False, time.time())
    wire.take(PHONE)
    authenticated_call(wire, "700")
    phones = Phones(wire, {})
    phones.step()
    assert phones.rang == ["2103"]  # at once, no ring time spent on 2101 and 2102


def test_a_member_on_a_call_is_busy_for_a_skip_busy_group(wire: Wire) -> None:
    # 2101 takes a call of group 702 and stays on it.
    call_group(wire, "702", {"2101": "answer"}, hang_up=False)
    wire.take(PHONE)
    authenticated_call(wire, "707")
    phones = Phones(wire, {})
    phones.step()
    assert phones.rang == ["2102"]


def test_no_answer_overflows_after_the_group_time(wire: Wire) -> None:
    phones, answer = call_group(wire, "707", {"1099": "answer"})
    assert answer.status == 200
    # 5 s each, round again, until 12 s: 2101, 2102, 2101, then reception.
    assert phones.rang == ["2101", "2102", "2101", "1099"]
    call = last_call(wire)
    assert call.destination == "1099" and call.answered_by is None
    assert [leg.target for leg in call.legs] == ["2101", "2102", "2101", "1099"]


def test_every_member_busy_overflows_to_the_busy_destination(wire: Wire) -> None:
    phones, answer = call_group(wire, "707", {"2101": "busy", "2102": "busy", "2105": "answer"})
    assert answer.status == 200
    assert phones.rang[-1] == "2105" and set(phones.rang[:-1]) == {"2101", "2102"}
    assert last_call(wire).hunt_group == "708" and last_call(wire).answered_by == "2105"


def test_nobody_logged_in_overflows_to_its_destination(wire: Wire) -> None:
    for number in ("2101", "2102"):
        wire.controller.hunts.set_login("707", number, False, time.time())
    phones, answer = call_group(wire, "707", {"1098": "answer"})
    assert answer.status == 200 and phones.rang == ["1098"]


def test_none_registered_overflows_to_an_outside_number_with_the_groups_rights(wire: Wire) -> None:
    for number in ("2101", "2102"):
        wire.bindings.remove(number, f"sip:{number}@{PEERS[number].host}:{PEERS[number].port}")
    wire.take(PHONE)
    authenticated_call(wire, "707")
    (invite,) = wire.requests_to(GW1, "INVITE")
    assert invite.uri == "sip:+84912000009@127.0.0.1" or invite.uri.startswith("sip:+84912000009@")
    assert invite.from_.uri.startswith("sip:02873000300@")  # the group's department's caller ID


def test_without_a_destination_the_caller_is_told(wire: Wire) -> None:
    for number in MEMBERS:
        wire.controller.hunts.set_login("701", number, False, time.time())
    _, answer = call_group(wire, "701", {})
    assert answer.status == 480
    assert last_call(wire).reason == "hunt_nobody_logged_in"


def test_an_outside_member_rings_through_the_trunk(wire: Wire) -> None:
    wire.take(PHONE)
    authenticated_call(wire, "709")
    (invite,) = wire.requests_to(GW1, "INVITE")
    assert invite.uri.startswith("sip:+84912000001@")
    assert invite.from_.uri.startswith("sip:02873000300@")


# ---------------------------------------------------------------- agent codes


@pytest.mark.parametrize(("dialled", "status", "phrase", "states"), [
    ("*45700", 480, "Logged In 700", {"700": True, "701": True}),
    ("*46700", 480, "Logged Out 700", {"700": False, "701": True}),
    ("*46", 480, "Logged Out 700,701,702,703,704,705", {"700": False, "701": False}),
    ("*45", 480, "Logged Out 700,701,702,703,704,705", {"700": False, "701": False}),
    ("*45799", 404, None, {"700": True}),
    ("*46707", 403, None, {"707": True}),
])
def test_agent_codes(wire: Wire, dialled: str, status: int, phrase: str | None,
                     states: dict[str, bool]) -> None:
    wire.take(PHONE)
    authenticated_call(wire, dialled, user="2104", password="m4-secret-2104")
    answer = final(wire)
    assert answer is not None and answer.status == status
    if phrase is not None:
        assert answer.reason == phrase
    for group, logged_in in states.items():
        assert wire.controller.hunts.logged_in(group, "2104") is logged_in


def test_star_45_alone_toggles_back_in(wire: Wire) -> None:
    authenticated_call(wire, "*46", user="2104", password="m4-secret-2104")
    wire.take(PHONE)
    authenticated_call(wire, "*45", user="2104", password="m4-secret-2104")
    answer = final(wire)
    assert answer is not None and answer.reason == "Logged In 700,701,702,703,704,705"
    assert wire.controller.hunts.logged_in("703", "2104")


def test_the_next_member_never_rings_while_the_one_before_still_does(wire: Wire) -> None:
    # The server wakes up a little after a deadline (it gathers timers):
    # 2102 starts at 5.01 instead of 5.0, so its ring time runs to 10.01.
    # 2103's stage was planned for 10.0, but must wait for 2102 to end.
    wire.take(PHONE)
    authenticated_call(wire, "700")
    phones = Phones(wire, {})
    phones.step()
    for late in (5.01, 10.0):
        wire.timers.now = late
        wire.controller.on_timer(late)
        wire.pump()
        phones.step()
    assert phones.rang == ["2101", "2102"]
    wire.advance(0.02)
    phones.step()
    assert phones.rang == ["2101", "2102", "2103"]
    assert phones.cancels["2102"], "2102 was cancelled before 2103 rang"
