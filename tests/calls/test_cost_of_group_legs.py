"""The cost of trunk legs nobody's budget pays for: a hunt group's outside
member answering is priced by that member's tariff and the CDR carries it
(before, a hunt group's mobile leg cost the company money and the CDR
said nothing). On the in-memory wire of tests/calls/test_outside_call_limits.py
(real SIP messages, a hand-held wall clock), the CDR written by the real
writer to SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine

from pbx.calls.cdr_adapter import CdrRecorder
from pbx.cdr.writer import CdrWriter
from pbx.routing.loader import load_dialplan
from pbx.store.writer import BackgroundWriter
from tests.calls.test_cost_and_budgets import Pending, WallClock, background, hang_up, plan_text
from tests.calls.test_outside_call_limits import LimitWire, dial, final
from tests.cdr.conftest import all_calls, db_url, engine, migrated
from tests.trunks.test_trunk_calls import GW1, answer_200

__all__ = ["background", "db_url", "engine", "migrated"]

HUNT = """\
hunt_groups:
  "709":
    name: Field sales
    strategy: linear
    department: sales
    members: [{number: "0912000001"}]
"""


def test_a_hunt_groups_outside_member_answering_is_priced_on_the_cdr(
        tmp_path: Path, migrated: Engine, background: BackgroundWriter) -> None:
    path = tmp_path / f"plan-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(plan_text(increment="30/6", per_minute="1200") + HUNT)
    clock, pending = WallClock(), Pending()
    recorder = CdrRecorder(CdrWriter(background, "pbx-test", notify=pending))
    wire = LimitWire(load_dialplan(path), wall_clock=clock, recorder=recorder)
    invite = dial(wire, "709")
    (placed,) = wire.to_gateway()
    assert placed.uri.startswith("sip:+84912000001@")
    wire.deliver(answer_200(placed), GW1)
    ok = final(wire, invite)
    assert ok is not None and ok.status == 200
    clock.now += 61
    hang_up(wire, invite, ok)
    pending.run(background, wire)
    (row,) = all_calls(migrated)
    # 61 s at 30/6: 66 s billed at 1,200 a minute.
    assert (row["disposition"], row["hunt_group"], row["billsec"], row["trunk"]) == ("ANSWERED", "709", 61, "viettel")
    assert (row["cost_minor"], row["cost"], row["currency"], row["tariff"]) == (1320, Decimal(1320), "VND",
                                                                                "vn-national")
