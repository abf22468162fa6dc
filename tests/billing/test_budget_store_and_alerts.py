"""Budget spend in the store and the warning alert, on SQLite and
PostgreSQL, with the webhook a real HTTP server started by the test.

Two ledgers stand for two PBX nodes sharing the database. Covered: settled
costs add up in ``budget_spend`` and come back to the other node on
refresh; reaching 80 % sends exactly one alert per budget and period (the
receiver fails the first POST: it is retried), whichever node gets there
and however far past 80 % the spend goes; spend lost from the store is
counted again from the CDRs.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine, delete

from pbx.billing.alerts import WebhookSender
from pbx.billing.keeper import BudgetKeeper
from pbx.calls.budgets import BudgetLedger, Charge
from pbx.cdr.records import CallAnswer, CallEnd, CallStart, Disposition, HangupSide
from pbx.cdr.writer import CdrWriter
from pbx.routing.budgets import Budget, parse_period
from pbx.routing.dialplan import Dialplan
from pbx.routing.loader import load_dialplan
from pbx.store import budgets as store
from pbx.store.writer import BackgroundWriter
from tests.cdr.conftest import db_url, engine, migrated

__all__ = ["db_url", "engine", "migrated"]

NOW = datetime(2026, 12, 10, 2, 0, tzinfo=UTC)


class Receiver:
    """A webhook: an HTTP server on 127.0.0.1 that answers 500 to the
    first ``failures`` POSTs and 204 after, keeping each JSON body."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[dict[str, Any]] = []
        self.accepted = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                failing = outer.failures > 0
                outer.failures -= 1
                outer.bodies.append(body)
                self.send_response(500 if failing else 204)
                self.end_headers()
                if not failing:
                    outer.accepted.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/budget?token=secret-token"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(failures=1)
    yield found
    found.close()


@pytest.fixture
def background(migrated: Engine) -> Iterator[BackgroundWriter]:
    writer = BackgroundWriter(migrated, retries=2, backoff=0.0, max_backoff=0.0)
    yield writer
    writer.close(timeout=10)


class Loop:
    """`notify`: callbacks handed to "the event loop", run by the test."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []
        self.lock = threading.Lock()

    def __call__(self, callback: Callable[[], None]) -> None:
        with self.lock:
            self.callbacks.append(callback)

    def run(self, writer: BackgroundWriter) -> None:
        assert writer.flush(timeout=30)
        with self.lock:
            callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


def make_plan(tmp_path: Path, webhook: str) -> Dialplan:
    path = tmp_path / "plan.yaml"
    path.write_text(f"""\
domain: pbx.example.com
timezone: Asia/Ho_Chi_Minh
departments:
  sales: {{name: Sales}}
extensions:
  1001: {{name: An, department: sales, password: an-secret-1001}}
billing: {{currency: VND}}
budgets:
  webhook: "{webhook}"
  departments: {{sales: "10000"}}
""")
    return load_dialplan(path)


SALES = Budget(kind="department", name="sales", limit=10000)
CHARGES = (Charge(budget=SALES, period="2026-12", warn_level=8000),)


def node(plan: Dialplan, writer: BackgroundWriter, loop: Loop, alerts: WebhookSender) -> BudgetKeeper:
    return BudgetKeeper(BudgetLedger(), writer, loop, plan, alerts, wall_clock=NOW.timestamp)


def spend(keeper: BudgetKeeper, cost: int) -> None:
    call = uuid.uuid4().hex
    assert keeper.ledger.admit(call, CHARGES, 100) is None
    keeper.ledger.settle(call, cost)


def test_eighty_percent_fires_exactly_one_webhook_across_two_nodes(
        tmp_path: Path, migrated: Engine, background: BackgroundWriter, receiver: Receiver) -> None:
    plan = make_plan(tmp_path, receiver.url)
    loop = Loop()
    alerts = WebhookSender(attempts=3, backoff=0.05, timeout=5)
    try:
        a, b = node(plan, background, loop, alerts), node(plan, background, loop, alerts)
        with structlog.testing.capture_logs() as logs:
            spend(a, 7000)
            b.refresh()
            loop.run(background)
            assert b.ledger.spent(SALES.key, "2026-12") == 7000  # node b sees what a spent
            spend(b, 1500)   # 8,500: b crosses 80 % and claims the alert
            loop.run(background)
            a.refresh()
            loop.run(background)
            spend(a, 1000)   # 9,500 on a, which has not warned yet: the store says it is claimed
            spend(a, 2000)   # past 100 %: still no second alert
            loop.run(background)
            assert receiver.accepted.wait(timeout=10)
        alerts.close(timeout=5)
    finally:
        alerts.close(timeout=5)
    # One alert, POSTed twice: the receiver failed the first attempt.
    assert len(receiver.bodies) == 2 and receiver.bodies[0] == receiver.bodies[1]
    assert receiver.bodies[0] == {
        "event": "budget_warning", "who": "sales", "kind": "department", "budget": "department:sales",
        "rule": "budgets.departments.sales", "period": "2026-12", "spent": 8500, "limit": 10000, "percent": 85,
        "warn_percent": 80, "currency": "VND", "minor_unit": 0,
        "text": "budgets.departments.sales: 8,500 VND of 10,000 VND used in 2026-12",
    }
    warnings = [e for e in logs if e["event"] == "budget_warning"]
    assert [(e["budget"], e["spent"], e["percent"]) for e in warnings] == [("department:sales", 8500, 85)]
    with migrated.connect() as conn:
        assert store.read_spend("2026-12", conn) == ({(SALES.key, "2026-12"): 11500}, {(SALES.key, "2026-12")})
    failed = [e for e in logs if e["event"] == "budget_alert_failed"]
    assert [(e["outcome"], e["webhook"]) for e in failed] == [
        ("status_500", f"http://127.0.0.1:{receiver.server.server_address[1]}")]  # the token is not logged


def test_spend_lost_from_the_store_is_counted_again_from_the_cdrs(
        tmp_path: Path, migrated: Engine, background: BackgroundWriter) -> None:
    plan = make_plan(tmp_path, "http://127.0.0.1:9/unused")
    loop = Loop()
    writer = CdrWriter(background, "pbx-a", notify=loop)
    costs = [1200, 0, 3600]
    for index, cost in enumerate(costs):
        call = uuid.uuid4()
        start = NOW + timedelta(minutes=index)
        writer.started(CallStart(call_uuid=call, call_id=f"c{index}", started_at=start, caller_number="1001",
                                 caller_name=None, dialed_number="0912345678", caller_department="sales"))
        writer.answered(CallAnswer(call_uuid=call, answered_at=start, destination="+84912345678"))
        writer.ended(CallEnd(call_uuid=call, ended_at=start + timedelta(seconds=30), disposition=Disposition.ANSWERED,
                             hangup_side=HangupSide.CALLER, cost_minor=cost, currency="VND", tariff="t"))
    keeper = node(plan, background, loop, WebhookSender())
    keeper.recount_missing()
    loop.run(background)
    with migrated.begin() as conn:
        assert store.read_spend("2026-12", conn)[0] == {(SALES.key, "2026-12"): 4800}
        conn.execute(delete(store.SPEND))
        store.add_spend([(SALES.key, "2026-12")], 5, NOW, conn)  # a row that exists is left alone
    keeper.recount_missing()
    keeper.refresh()
    loop.run(background)
    assert keeper.ledger.spent(SALES.key, "2026-12") == 5
    with migrated.begin() as conn:
        counted = store.recount([SALES], parse_period("2026-12", plan.timezone), NOW, conn)
    assert counted == {SALES.key: 4800}
    keeper.refresh()
    loop.run(background)
    assert keeper.ledger.spent(SALES.key, "2026-12") == 4800
