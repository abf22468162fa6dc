"""Who pays for a call its caller did not take out: a forward to an
outside number is paid by the extension that forwards. On the in-memory
wire of tests/trunks/test_trunk_calls.py with the real CDR writer on
SQLite and PostgreSQL: the row keeps the caller as caller and names the
forwarding extension in ``billed_to``; the cost report by extension and a
budget recount from the CDRs count the cost there, not at the caller."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from pbx.calls.cdr_adapter import CdrRecorder
from pbx.cdr.reports import usage_report
from pbx.cdr.writer import CdrWriter
from pbx.routing.budgets import Budget, period_of
from pbx.routing.loader import load_dialplan
from pbx.store.budgets import spend_from_cdr
from pbx.store.writer import BackgroundWriter
from tests.calls.test_cost_and_budgets import NATIONAL, START, Pending, WallClock, background, plan_text, talk
from tests.calls.test_outside_call_limits import LimitWire
from tests.cdr.conftest import all_calls, db_url, engine, migrated

__all__ = ["background", "db_url", "engine", "migrated"]


def test_a_forward_out_is_billed_to_the_forwarding_extension(tmp_path: Path, migrated: Engine,
                                                             background: BackgroundWriter) -> None:
    text = plan_text().replace("password: binh-secret-1002}",
                               f"password: binh-secret-1002, forward: {{always: '{NATIONAL}'}}}}")
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    plan = load_dialplan(path)
    clock, pending = WallClock(), Pending()
    wire = LimitWire(plan, wall_clock=clock, recorder=CdrRecorder(CdrWriter(background, "pbx-test", notify=pending)))
    talk(wire, clock, 61, number="1002")  # 1001 calls 1002, forwarded to the mobile, 61 s
    pending.run(background, wire)
    (row,) = all_calls(migrated)
    assert (row["caller_number"], row["dialed_number"], row["transfer"]) == (
        "1001", "1002", f"forward always 1002 -> {NATIONAL}")
    assert (row["billed_to"], row["billed_department"], row["cost_minor"]) == ("1002", "sales", 2400)
    period = period_of(datetime.fromtimestamp(START, UTC), "month", plan.timezone)
    report = usage_report(migrated, "extension", period)
    assert [(usage.key, usage.cost) for usage in report.rows] == [("1002", 2400)]
    assert usage_report(migrated, "extension", period, extension="1001").total.calls == 0
    budgets = [Budget(kind="extension", name=number, limit=100_000) for number in ("1001", "1002")]
    with migrated.connect() as conn:
        assert spend_from_cdr(budgets, period, conn) == {"extension:1001": 0, "extension:1002": 2400}
