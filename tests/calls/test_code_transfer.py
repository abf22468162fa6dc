"""Rights follow the call (issue 10): a call placed with an account code
and then transferred keeps the code's rights and its billing, never the
phone's own rights on top.

On the trunk tests' in-memory wire (real SIP messages, no sockets), with
the real code store on SQLite; only the store's thread hop is left out
(:class:`SyncChecker`). Reception (1001, ``restricted``, its own class of
service local and mobile) dials abroad with a code given before the
number (international, not mobile); the provider answers; reception
transfers the provider's party on:

- to another number abroad: the code allows it, so the PBX places it
  (before, the transfer was checked as reception's own call, which would
  need a code no one can key mid-transfer, and refused);
- to a mobile number: reception itself may dial it, the code may not, so
  it is refused with 403 and the call stays (before, it was placed with
  reception's rights and billed to the code's owner).

The call's CDR keeps the code's id and owner throughout.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pbx.accountcodes.codes import StoredCode
from pbx.accountcodes.lockout import LockoutPolicy
from pbx.calls.codes import Verification
from pbx.routing.loader import load_dialplan
from pbx.sip.message import Request, Response, make_request
from pbx.store.codes import CodeStore
from pbx.store.db import make_engine, migrate
from tests.trunks.test_trunk_calls import GW1, PHONE, Wire, answer_200, authenticated_call

CODE, OWNER = "483948", "Trần Thị Bích"
KEY = bytes(range(32))

PLAN = """\
domain: pbx.example.com
registrar: {auth_algorithms: [MD5]}
account_codes: {length: 6}
departments:
  office: {name: Office, class_of_service: nearby, caller_id: "02873000100"}
extensions:
  1001: {name: Reception, department: office, password: an-secret-1001, account_codes: restricted}
number_plans:
  vietnam:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    area_code: "28"
    entries:
      - {pattern: "11[345]", class: emergency}
      - {pattern: "00 .", class: international}
      - {pattern: "0[35789] XXXX XXXX", class: mobile}
      - {pattern: "[2-9] XXX XXXX", class: local}
classes_of_service:
  nearby: {allow: [local, mobile]}
  abroad: {allow: [local, international]}
trunks:
  viettel:
    gateways: [{host: 198.51.100.1, port: 5070}]
    username: "02873000000"
    password: trunk-secret
    domain: sip.provider.example
    rewrites:
      - {match: "00", strip: 2, prepend: "+"}
      - {match: "0", strip: 1, prepend: "+84"}
      - {match: "", prepend: "+8428"}
routes:
  - {name: out, pattern: "X.", trunk: viettel}
"""


class SyncChecker:
    """:class:`pbx.server.codes.StoreChecker` without the thread: the real
    store answers at once (the in-memory wire has no event loop)."""

    def __init__(self, store: CodeStore) -> None:
        self.store = store
        self.policy = LockoutPolicy()

    def locked(self, source: str, then: Callable[[bool], None]) -> None:
        then(self.store.locked(source, datetime.now(UTC)))

    def verify(self, digits: str, source: str, then: Callable[[Verification], None]) -> None:
        found = self.store.verify(digits, source, datetime.now(UTC), self.policy)
        then(Verification(outcome=found.outcome, code=found.code, reason=found.reason))

    def refused(self, code: StoredCode, source: str) -> None:
        self.store.refused(code.id, datetime.now(UTC), self.policy)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path / 'codes.sqlite3'}")
    migrate(made)
    yield made
    made.dispose()


@pytest.fixture
def wire(tmp_path: Path, engine: Engine) -> Wire:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    made = Wire(load_dialplan(path))
    store = CodeStore(engine, KEY)
    store.add(CODE, owner=OWNER, class_of_service="abroad", now=datetime.now(UTC))
    made.controller.codes = SyncChecker(store)
    return made


def refer(ok: Response, cseq: int, target: str) -> Request:
    """Reception's REFER in its dialog with the PBX (the 200 ``ok`` set the To tag)."""
    return make_request("REFER", str(ok.get("contact") or "").strip("<>"), [
        ("via", f"SIP/2.0/UDP {PHONE.host}:{PHONE.port};branch=z9hG4bK{secrets.token_hex(6)};rport"),
        ("max-forwards", "70"),
        ("from", ok.get("from") or ""),
        ("to", ok.get("to") or ""),
        ("call-id", ok.call_id),
        ("cseq", f"{cseq} REFER"),
        ("contact", f"<sip:1001@{PHONE.host}:{PHONE.port}>"),
        ("refer-to", f"<sip:{target}@pbx.example.com>"),
        ("referred-by", "<sip:1001@pbx.example.com>"),
    ], b"")


def sipfrags(wire: Wire) -> list[bytes]:
    return [m.body for m in wire.take(PHONE) if isinstance(m, Request) and m.method == "NOTIFY"]


def test_a_transferred_code_call_keeps_the_codes_rights_and_owner(wire: Wire) -> None:
    invite = authenticated_call(wire, f"*11{CODE}%230081312345678")
    (to_provider,) = wire.requests_to(GW1, "INVITE")
    assert to_provider.uri == "sip:+81312345678@sip.provider.example"
    wire.take(GW1)
    wire.deliver(answer_200(to_provider), GW1)
    (ok,) = [r for r in wire.responses_to(PHONE) if r.status == 200]
    wire.take(PHONE)
    ack = make_request("ACK", str(ok.get("contact") or "").strip("<>"), [
        ("via", f"SIP/2.0/UDP {PHONE.host}:{PHONE.port};branch=z9hG4bK{secrets.token_hex(6)};rport"),
        ("max-forwards", "70"), ("from", ok.get("from") or ""), ("to", ok.get("to") or ""),
        ("call-id", invite.call_id), ("cseq", "2 ACK")], b"")
    wire.deliver(ack, PHONE)

    # A mobile number: reception may dial it, the code may not; the code's
    # rights are the call's, never more.
    wire.deliver(refer(ok, 3, "0912345678"), PHONE)
    frags = sipfrags(wire)
    assert frags[-1] == b"SIP/2.0 403 Forbidden\r\n", frags
    assert wire.requests_to(GW1, "INVITE") == []

    # Abroad again: the code allows it, so the transfer goes to the provider.
    wire.deliver(refer(ok, 4, "0044207946000"), PHONE)
    assert b"SIP/2.0 100 Trying\r\n" in sipfrags(wire)
    placed = [r for r in wire.requests_to(GW1, "INVITE") if r.call_id != to_provider.call_id]
    assert [r.uri for r in placed] == ["sip:+44207946000@sip.provider.example"]

    (call,) = wire.recorder.started
    assert call.account is not None and (call.account.owner, call.account.class_of_service) == (OWNER, "abroad")
