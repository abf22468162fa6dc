"""A transfer or a forward the PBX places for someone, to a number that
person could only dial with an account code: nobody can key a code in
the middle of it, so it is refused as a number they may not dial (403:
the transferor's NOTIFY sipfrag, the caller's final), never placed
without the code. On the in-memory wire, with a plan whose department
calls out with codes only (``account_codes: restricted``, no outside
classes of its own) and a trunk to a gateway that must hear nothing.
"""

from __future__ import annotations

from pathlib import Path

from pbx.routing.dialplan import CallSettings
from pbx.routing.loader import load_dialplan
from pbx.sip.address import Peer
from pbx.sip.message import Message

from .harness import (
    ALICE,
    BOB,
    DOMAIN,
    PASSWORDS,
    SDP,
    AnsweredCall,
    Harness,
    ack_text,
    answer_call,
    from_alice,
    from_bob,
    place_call,
    requests,
    response_text,
    responses,
)
from .test_transfer import bob_calls

GATEWAY = Peer("udp", "127.0.0.1", 5080)
MOBILE = "0912345678"
SDP_MOBILE = SDP.replace(b"o=- 1 1", b"o=gw 3 3").replace(b"40000", b"40600")
PLAN = f"""\
domain: {DOMAIN}
voicemail: {{enabled: false}}
number_plans:
  vn:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    entries:
      - {{pattern: "00 .", class: international}}
      - {{pattern: "0[35789] XXXX XXXX", class: mobile}}
classes_of_service:
  internal_only: {{description: "No outside calls"}}
departments:
  ops: {{name: Ops, class_of_service: internal_only, account_codes: restricted}}
extensions:
  2001: {{name: Alice, department: ops, password: {PASSWORDS["2001"]}}}
  2002: {{name: Bob, department: ops, password: {PASSWORDS["2002"]}}}
trunks:
  provider:
    gateways: [{{host: {GATEWAY.host}, port: {GATEWAY.port}}}]
routes:
  - {{name: out, pattern: "0X.", trunk: provider}}
"""


def harness(tmp_path: Path, plan: str = PLAN) -> Harness:
    path = tmp_path / "plan.yaml"
    path.write_text(plan)
    h = Harness(CallSettings())
    h.plan = load_dialplan(path)
    h.controller.use_plan(h.plan)
    h.controller.auth.use_plan(h.plan)
    return h


def sipfrags(messages: list[Message]) -> list[bytes]:
    return [m.body for m in requests(messages, "NOTIFY")]


def test_a_target_that_would_need_a_code_is_refused_403(tmp_path: Path) -> None:
    # Alice calls Bob; Bob, who may only call out with a code, transfers
    # her to a mobile: no code can be keyed now, so no.
    h = harness(tmp_path)
    call = answer_call(h, a_headers=[], b_headers=[])
    h.deliver(ack_text(call), ALICE)
    h.take(ALICE)
    h.take(BOB)
    h.deliver(from_bob("REFER", call.b_invite, 1, headers=[f"Refer-To: <sip:{MOBILE}@{DOMAIN}>"]), BOB)
    to_bob = h.take(BOB)
    assert sipfrags(to_bob) == [b"SIP/2.0 100 Trying\r\n", b"SIP/2.0 403 Forbidden\r\n"]
    assert requests(h.take(GATEWAY), "INVITE") == []
    assert h.take(ALICE) == []


def test_a_forward_that_would_need_a_code_is_refused_403(tmp_path: Path) -> None:
    # Bob forwards every call to a mobile (set while he could, or by an
    # admin); his calls out need a code now: the caller hears 403, nothing
    # goes out, and the CDR says why.
    h = harness(tmp_path, PLAN.replace(f"2002: {{name: Bob, department: ops,",
                                       f"2002: {{name: Bob, department: ops, forward: {{always: '{MOBILE}'}},"))
    place_call(h)
    assert [r.status for r in responses(h.take(ALICE), "INVITE") if r.status >= 200] == [403]
    assert requests(h.take(GATEWAY), "INVITE") == [] and requests(h.take(BOB), "INVITE") == []
    (ended,) = h.recorder.ended
    assert ended.reason == "forward_mobile_not_allowed"
    assert ended.transfers == [f"forward always 2002 -> {MOBILE}"]


PRICED = PLAN.replace(
    "  ops: {name: Ops, class_of_service: internal_only, account_codes: restricted}",
    "  ops: {name: Ops, class_of_service: mobiles}",
).replace(
    '  internal_only: {description: "No outside calls"}',
    '  internal_only: {description: "No outside calls"}\n  mobiles: {allow: [mobile]}',
) + """\
billing:
  currency: VND
  tariffs:
    - {id: mobile, classes: [mobile], per_minute: "1200", increment: 60/60}
budgets: {reserve_seconds: 180, extensions: {"2002": "BUDGET"}}
"""


def bob_transfers_alice_to_a_mobile(h: Harness) -> tuple[list[Message], AnsweredCall]:
    call = answer_call(h, a_headers=[], b_headers=[])
    h.deliver(ack_text(call), ALICE)
    h.take(ALICE)
    h.take(BOB)
    h.deliver(from_bob("REFER", call.b_invite, 1, headers=[f"Refer-To: <sip:{MOBILE}@{DOMAIN}>"]), BOB)
    return h.take(BOB), call


def test_a_transfer_out_is_held_to_the_transferors_budget(tmp_path: Path) -> None:
    # Bob may dial mobiles, but his budget has no room for one (a mobile
    # call holds 3 minutes, 3,600, against 1,000): his transfer of Alice
    # to a mobile must not place it on nobody's bill.
    h = harness(tmp_path, PRICED.replace("BUDGET", "1000"))
    to_bob, _ = bob_transfers_alice_to_a_mobile(h)
    assert sipfrags(to_bob) == [b"SIP/2.0 100 Trying\r\n", b"SIP/2.0 403 Forbidden\r\n"]
    assert requests(h.take(GATEWAY), "INVITE") == []


def test_a_transfer_out_is_priced_from_the_targets_answer_and_charged_to_the_transferor(tmp_path: Path) -> None:
    h = harness(tmp_path, PRICED.replace("BUDGET", "100000"))
    h.advance(600)  # Alice and Bob talk ten minutes first: internal, free
    to_bob, call = bob_transfers_alice_to_a_mobile(h)
    assert sipfrags(to_bob) == [b"SIP/2.0 100 Trying\r\n"]
    (placed,) = requests(h.take(GATEWAY), "INVITE")
    h.deliver(response_text(placed, 200, to_tag="gw", body=SDP_MOBILE, contact=GATEWAY), GATEWAY)
    (reinvite,) = requests(h.take(ALICE), "INVITE")
    h.deliver(response_text(reinvite, 200, to_tag="alice", body=SDP, contact=ALICE), ALICE)
    h.take(BOB)
    h.advance(61)  # Alice talks to the mobile for 61 s: two minutes at 60/60
    h.deliver(from_alice("BYE", call.a_ok, 3), ALICE)
    (ended,) = h.recorder.ended
    assert ended.transfers == [f"blind 2002 -> {MOBILE}"]
    assert ended.cost == 2400 and ended.rate is not None and ended.rate.tariff.id == "mobile"
    assert ended.billed_to is not None and ended.billed_to.number == "2002"  # the CDR's billed_to
    budget = h.plan.budgets.find("extension", "2002")
    assert budget is not None
    assert sum(h.controller.budgets.spent(budget.key, period) for period in _periods(h)) == 2400


def _periods(h: Harness) -> set[str]:
    from datetime import datetime, timezone

    from pbx.routing.budgets import period_of

    wall = h.controller.wall()
    return {period_of(datetime.fromtimestamp(wall, timezone.utc), h.plan.budgets.period, h.plan.timezone).label}



def test_an_attended_transfer_to_a_mobile_is_priced_for_the_rest_of_the_call(tmp_path: Path) -> None:
    # Alice calls Bob (internal, free); Bob consults a mobile (his own call,
    # priced on its own row up to the join) and joins Alice to it: the rest
    # of Alice's call is the mobile's, priced from the join and billed to
    # Bob. Both count against Bob's budget.
    h = harness(tmp_path, PRICED.replace("BUDGET", "100000"))
    call = answer_call(h, a_headers=[], b_headers=[])
    h.deliver(ack_text(call), ALICE)
    h.take(ALICE)
    h.take(BOB)
    h.advance(300)
    consult = bob_calls(h, MOBILE, GATEWAY, SDP_MOBILE, from_tag="bobm")
    h.advance(120)  # Bob talks to the mobile two minutes, Alice on hold
    replaces = f"{consult.call_id}%3Bto-tag%3D{consult.pbx_tag}%3Bfrom-tag%3Dbobm"
    h.deliver(from_bob("REFER", call.b_invite, 1, headers=[f"Refer-To: <sip:{MOBILE}@{DOMAIN}?Replaces={replaces}>"]),
              BOB)
    (fetch,) = requests(h.take(GATEWAY), "INVITE")
    h.deliver(response_text(fetch, 200, to_tag="gw", body=SDP_MOBILE, contact=GATEWAY), GATEWAY)
    (reinvite,) = requests(h.take(ALICE), "INVITE")
    h.deliver(response_text(reinvite, 200, to_tag="alice", body=SDP, contact=ALICE), ALICE)
    h.take(BOB)
    h.advance(61)
    h.deliver(from_alice("BYE", call.a_ok, 3), ALICE)
    main = [c for c in h.recorder.ended if c.a_call_id == "c1"][0]
    assert main.transfers == [f"attended 2002 -> {MOBILE}"]
    assert main.cost == 2400 and main.billed_to is not None and main.billed_to.number == "2002"
    consultation = [c for c in h.recorder.ended if c.a_call_id == "c2"][0]
    assert consultation.reason == "transferred" and consultation.cost == 2400  # Bob's own two minutes
    budget = h.plan.budgets.find("extension", "2002")
    assert budget is not None
    assert sum(h.controller.budgets.spent(budget.key, period) for period in _periods(h)) == 2400 + 2400
