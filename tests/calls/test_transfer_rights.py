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
    Harness,
    ack_text,
    answer_call,
    from_bob,
    place_call,
    requests,
    responses,
)

GATEWAY = Peer("udp", "127.0.0.1", 5080)
MOBILE = "0912345678"
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
