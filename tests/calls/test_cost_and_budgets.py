"""The cost of outside calls and the budgets they are charged to, in the
call controller on the in-memory wire of tests/trunks/test_trunk_calls.py
(real SIP messages, hand-held clocks), with the CDR written by the real
writer to SQLite and PostgreSQL where the row is what is checked.

Covered: each billing increment rule at 0, 1, 60 and 61 s lands on the CDR
row (cost in minor units, the exact decimal, currency, tariff); a desk
answering a member call costs nothing; a budget with room for three
reservations places three of twenty calls started at once; at 100 % the
next paid call is refused 403 with the budget named while a free-phone and
an emergency call pass; a call in progress is never cut; a reload's prices
apply to new calls only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
from sqlalchemy import Engine

from pbx.calls.cdr_adapter import CdrRecorder
from pbx.cdr.writer import CdrWriter
from pbx.routing.dialplan import Dialplan
from pbx.routing.loader import load_dialplan
from pbx.sip.message import Request, Response
from pbx.store.writer import BackgroundWriter
from tests.calls.test_outside_call_limits import LimitWire, dial, final, for_call, phone_request
from tests.cdr.conftest import all_calls, db_url, engine, migrated
from tests.trunks.test_trunk_calls import GW1, PHONE, answer_200

__all__ = ["db_url", "engine", "migrated"]

START = datetime(2026, 12, 10, 2, 0, tzinfo=UTC).timestamp()  # 09:00 in Ho Chi Minh City
NATIONAL = "0912345678"


def plan_text(*, increment: str = "60/60", per_minute: str = "1200", budget: str | None = None,
              reserve_seconds: int = 180) -> str:
    budgets = (f"budgets: {{reserve_seconds: {reserve_seconds}, extensions: {{'1001': '{budget}'}}}}\n"
               if budget is not None else "")
    return f"""\
domain: pbx.example.com
registrar: {{auth_algorithms: [MD5]}}
calls: {{max_call_seconds: 7200}}
timezone: Asia/Ho_Chi_Minh
security: {{outside_calls: {{simultaneous: 100, per_minute: 1000}}}}
departments:
  sales: {{name: Sales, class_of_service: outside}}
extensions:
  1001: {{name: An Nguyen, department: sales, password: an-secret-1001, project: expo}}
  1002: {{name: Binh Tran, department: sales, password: binh-secret-1002}}
  1003: {{name: Chau Le, department: sales, password: chau-secret-1003}}
number_plans:
  vietnam:
    - {{pattern: "11[345]", class: emergency}}
    - {{pattern: "1800XXXX", class: toll_free}}
    - {{pattern: "0ZXXXXXXX.", class: national}}
classes_of_service:
  outside: {{allow: [national, toll_free]}}
trunks:
  viettel:
    gateways:
      - {{host: 198.51.100.1, port: 5070}}
      - {{host: 198.51.100.2, port: 5072}}
    username: "02873000000"
    password: trunk-secret
    domain: sip.provider.example
    invite_timeout: 4
    rewrites:
      - {{match: "0", strip: 1, prepend: "+84"}}
routes:
  - {{name: vn-emergency, pattern: "11[345]", trunk: viettel}}
  - {{name: vn-free, pattern: "1800XXXX", trunk: viettel}}
  - {{name: vn-national, pattern: "0ZXXXXXXX.", trunk: viettel}}
billing:
  currency: VND
  tariffs:
    - {{id: vn-national, trunk: viettel, classes: [national], per_minute: "{per_minute}", increment: {increment}}}
    - {{id: free-phone, classes: [toll_free], per_minute: 0}}
    - {{id: emergency, classes: [emergency], per_minute: 0}}
groups:
  office:
    members:
      "21": {{name: An, extension: "1001"}}
      "22": {{name: Binh, extension: "1002", mobile: "0912000002"}}
{budgets}"""


class WallClock:
    """The hand-held wall clock CDR times and periods are read from."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def make_plan(tmp_path: Path, **settings: object) -> Dialplan:
    path = tmp_path / f"plan-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(plan_text(**settings))  # type: ignore[arg-type]
    return load_dialplan(path)


class Pending:
    """`notify` for the CDR writer: callbacks are run on the test's thread,
    as the event loop would run them."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def __call__(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)

    def run(self, writer: BackgroundWriter, wire: LimitWire) -> None:
        assert writer.flush(timeout=30)
        while self.callbacks:
            self.callbacks.pop(0)()
        wire.pump()


def hang_up(wire: LimitWire, invite: Request, ok: Response) -> None:
    wire.deliver(phone_request("ACK", invite, ok.get("to") or "", 2), PHONE)
    wire.deliver(phone_request("BYE", invite, ok.get("to") or "", 3), PHONE)


def talk(wire: LimitWire, clock: WallClock, seconds: float, number: str = NATIONAL) -> Request:
    """An outside call answered at once, then ended by the caller after ``seconds``."""
    invite = dial(wire, number)
    (placed,) = wire.to_gateway()
    wire.deliver(answer_200(placed), GW1)
    ok = final(wire, invite)
    assert ok is not None and ok.status == 200
    clock.now += seconds
    hang_up(wire, invite, ok)
    return invite


# ---------------------------------------------------------------- cost on the CDR row


@pytest.fixture
def background(migrated: Engine) -> Iterator[BackgroundWriter]:
    writer = BackgroundWriter(migrated, retries=2, backoff=0.0, max_backoff=0.0)
    yield writer
    writer.close(timeout=10)


@pytest.mark.parametrize(("increment", "costs"), [
    ("60/60", [0, 1200, 1200, 2400]),
    ("30/6", [0, 600, 1200, 1320]),
    ("1/1", [0, 20, 1200, 1220]),
])
def test_each_increment_rule_at_its_edges_lands_on_the_cdr_row(
        tmp_path: Path, migrated: Engine, background: BackgroundWriter, increment: str, costs: list[int]) -> None:
    clock, pending = WallClock(), Pending()
    recorder = CdrRecorder(CdrWriter(background, "pbx-test", notify=pending))
    wire = LimitWire(make_plan(tmp_path, increment=increment), wall_clock=clock, recorder=recorder)
    for seconds in (0, 1, 60, 61):
        talk(wire, clock, seconds)
        pending.run(background, wire)
        clock.now += 5
    rows = all_calls(migrated)
    assert [(r["billsec"], r["cost_minor"], r["cost"], r["currency"], r["tariff"], r["project"]) for r in rows] == [
        (seconds, cost, Decimal(cost), "VND", "vn-national", "expo")
        for seconds, cost in zip((0, 1, 60, 61), costs, strict=True)]


def test_calls_no_tariff_prices_and_calls_that_never_connected_cost_nothing(
        tmp_path: Path, migrated: Engine, background: BackgroundWriter) -> None:
    clock, pending = WallClock(), Pending()
    recorder = CdrRecorder(CdrWriter(background, "pbx-test", notify=pending))
    wire = LimitWire(make_plan(tmp_path), wall_clock=clock, recorder=recorder)
    busy = dial(wire, NATIONAL)
    (placed,) = wire.to_gateway()
    from pbx.sip.message import make_response
    wire.deliver(make_response(placed, 486, to_tag="busy"), GW1)
    pending.run(background, wire)
    internal = dial(wire, "1002")
    assert final(wire, internal) is None
    wire.advance(31)  # 1002's phone never answers
    pending.run(background, wire)
    rows = {r["call_id"]: r for r in all_calls(migrated)}
    assert [(rows[c.call_id]["disposition"], rows[c.call_id]["cost_minor"], rows[c.call_id]["tariff"])
            for c in (busy, internal)] == [("BUSY", None, None), ("NO_ANSWER", None, None)]


# ---------------------------------------------------------------- budgets


def test_twenty_calls_at_once_against_room_for_three_place_three(tmp_path: Path) -> None:
    # 1,200 a minute, 180 s held per call: 3,600 each; 12,000 has room for 3.
    clock = WallClock()
    wire = LimitWire(make_plan(tmp_path, budget="12000"), wall_clock=clock)
    with structlog.testing.capture_logs() as logs:
        invites = [dial(wire, NATIONAL) for _ in range(20)]
    assert len(wire.to_gateway()) == 3
    finals = [final(wire, invite) for invite in invites]
    assert [f is None for f in finals] == [True] * 3 + [False] * 17
    for response in finals[3:]:
        assert response is not None and (response.status, response.reason) == (403, "Budget Exhausted")
        assert response.get("reason") == 'SIP;cause=403;text="budget_exhausted: budgets.extensions.1001"'
        assert response.get("warning") == ('399 pbx.example.com "budgets.extensions.1001: 10,800 VND of'
                                           ' 12,000 VND used in 2026-12 (calls in progress included)"')
    rejected = [c for c in wire.recorder.ended if c.disposition == "REJECTED"]
    assert [(c.reason, c.hangup_status) for c in rejected] == [("budget_exhausted", 403)] * 17
    hits = [e for e in logs if e["event"] == "budget_exhausted"]
    assert len(hits) == 17 and {(e["budget"], e["period"], e["reserved"], e["needed"]) for e in hits} == {
        ("extension:1001", "2026-12", 10800, 3600)}
    assert wire.controller.budgets.reserved("extension:1001", "2026-12") == 10800


def test_at_the_limit_paid_calls_are_refused_free_phone_and_emergency_pass_and_no_call_is_cut(
        tmp_path: Path) -> None:
    clock = WallClock()
    wire = LimitWire(make_plan(tmp_path, budget="3600", reserve_seconds=60), wall_clock=clock)
    talk(wire, clock, 61)  # 2,400 spent
    long_call = dial(wire, NATIONAL)  # 1,200 held: exactly fits
    (placed,) = wire.to_gateway()
    wire.deliver(answer_200(placed), GW1)
    ok = final(wire, long_call)
    assert ok is not None and ok.status == 200
    assert wire.controller.budgets.spent("extension:1001", "2026-12") == 2400
    refused = dial(wire, NATIONAL)
    response = final(wire, refused)
    assert response is not None and response.status == 403 and wire.to_gateway() == []
    for free in ("18001234", "113"):
        passed = dial(wire, free)
        assert final(wire, passed) is None and len(wire.to_gateway()) == 1
    clock.now += 600  # the call in progress runs on far past its reservation: never cut
    assert not [r for r in for_call(wire, long_call.call_id) if r.cseq.method == "BYE"]
    hang_up(wire, long_call, ok)
    assert wire.controller.budgets.spent("extension:1001", "2026-12") == 2400 + 10 * 1200
    assert wire.controller.budgets.reserved("extension:1001", "2026-12") == 0


def test_a_member_call_without_room_rings_the_desk_alone(tmp_path: Path) -> None:
    clock = WallClock()
    wire = LimitWire(make_plan(tmp_path, budget="100"), wall_clock=clock)
    with structlog.testing.capture_logs() as logs:
        both = dial(wire, "22")
    assert final(wire, both) is None and wire.to_gateway() == []
    assert [e["outcome"] for e in logs if e["event"] == "budget_exhausted"] == ["trunk_legs_dropped"]


def test_a_reload_changes_prices_for_new_calls_only(tmp_path: Path) -> None:
    clock = WallClock()
    wire = LimitWire(make_plan(tmp_path, per_minute="1000"), wall_clock=clock)
    first = dial(wire, NATIONAL)
    (placed,) = wire.to_gateway()
    wire.deliver(answer_200(placed), GW1)
    ok = final(wire, first)
    assert ok is not None
    wire.controller.use_plan(make_plan(tmp_path, per_minute="5000"))
    clock.now += 60
    hang_up(wire, first, ok)
    talk(wire, clock, 60)
    assert [(c.rate.tariff.per_minute if c.rate else None, c.cost) for c in wire.recorder.ended] == [
        (1000, 1000), (5000, 5000)]


def test_a_raise_or_the_next_period_lets_paid_calls_through_again(tmp_path: Path) -> None:
    clock = WallClock()
    wire = LimitWire(make_plan(tmp_path, budget="3600", reserve_seconds=60), wall_clock=clock)
    talk(wire, clock, 180)  # 3,600 spent: the budget is used up
    refused = final(wire, dial(wire, NATIONAL))
    assert refused is not None and refused.status == 403 and wire.to_gateway() == []
    wire.controller.use_plan(make_plan(tmp_path, budget="4800", reserve_seconds=60))  # `pbx budget set`, reload
    raised = dial(wire, NATIONAL)
    assert final(wire, raised) is None and len(wire.to_gateway()) == 1
    wire.controller.use_plan(make_plan(tmp_path, budget="3600", reserve_seconds=60))
    clock.now = datetime(2026, 12, 31, 17, 0, tzinfo=UTC).timestamp()  # midnight, 1 January in Ho Chi Minh City
    next_period = dial(wire, NATIONAL)
    assert final(wire, next_period) is None and len(wire.to_gateway()) == 1
    assert wire.controller.budgets.reserved("extension:1001", "2027-01") == 1200
