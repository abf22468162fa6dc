"""The budget ledger's edge: the store and the alerts (glue, as
:mod:`pbx.trunks.client` is for registration).

:class:`BudgetKeeper` listens to the call layer's
:class:`~pbx.calls.budgets.BudgetLedger`: each settled cost becomes an
``add_spend`` op on the store's writer thread; a budget reaching its
warning level is claimed in the store (one node, once per period), then
logged (``budget_warning``) and POSTed to the plan's webhook. Every few
seconds :meth:`refresh` reads the current period's spend back, so what
other nodes spent counts here too. Nothing here runs SQL on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import Any

import structlog
from sqlalchemy import Connection

from pbx.billing.alerts import WebhookSender
from pbx.calls.budgets import BudgetLedger, Charge, Crossed
from pbx.routing.budgets import Budget, Period, period_of
from pbx.routing.dialplan import Dialplan
from pbx.store import budgets as store
from pbx.store.writer import BackgroundWriter, WriterClosed

log = structlog.get_logger("pbx.billing")

Notify = Callable[[Callable[[], None]], object]


def alert_payload(plan: Dialplan, crossed: Crossed) -> dict[str, Any]:
    """The JSON an alert carries."""
    budget, billing = crossed.budget, plan.billing
    return {
        "event": "budget_warning",
        "who": budget.name,
        "kind": budget.kind,
        "budget": budget.key,
        "rule": budget.rule,
        "period": crossed.period,
        "spent": crossed.spent,
        "limit": budget.limit,
        "percent": crossed.spent * 100 // budget.limit if budget.limit else 100,
        "warn_percent": plan.budgets.warn_percent,
        "currency": billing.currency,
        "minor_unit": billing.minor_unit,
        "text": f"{budget.rule}: {billing.money(crossed.spent)} of {billing.money(budget.limit)} used in"
                f" {crossed.period}",
    }


class BudgetKeeper:
    """Keeps ``ledger`` and the store in step; see the module docstring."""

    def __init__(self, ledger: BudgetLedger, writer: BackgroundWriter, notify: Notify, plan: Dialplan,
                 alerts: WebhookSender, wall_clock: Callable[[], float]) -> None:
        self.ledger = ledger
        self.writer = writer
        self.notify = notify
        self.plan = plan
        self.alerts = alerts
        self.wall = wall_clock
        ledger.listener = self

    def use_plan(self, plan: Dialplan) -> None:
        """A reload: a new budget's spend is counted from the CDRs, and all
        are read back now rather than at the next refresh."""
        self.plan = plan
        self.recount_missing()
        self.refresh()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.wall(), timezone.utc)

    def _submit(self, op: Callable[[Connection], object], on_commit: Callable[[], None] | None = None) -> None:
        try:
            self.writer.submit(op, on_commit)
        except WriterClosed:
            log.error("budget_spend_lost", reason="writer_closed")

    # ------------------------------------------------------------ SpendListener

    def settled(self, charges: tuple[Charge, ...], cost: int, crossed: list[Crossed]) -> None:
        now = self._now()
        if cost:
            self._submit(partial(store.add_spend, [(c.budget.key, c.period) for c in charges], cost, now))
        for each in crossed:
            self._claim(each, now)

    def _claim(self, crossed: Crossed, now: datetime) -> None:
        won: list[bool] = []

        def claim(conn: Connection) -> None:
            won.append(store.claim_warning(crossed.budget.key, crossed.period, now, conn))

        def claimed() -> None:  # writer thread, after the commit: hand over to the loop
            if won and won[-1]:
                self.notify(lambda: self._warn(crossed))

        self._submit(claim, claimed)

    def _warn(self, crossed: Crossed) -> None:
        payload = alert_payload(self.plan, crossed)
        webhook = self.plan.budgets.webhook
        log.warning("budget_warning", budget=crossed.budget.key, rule=crossed.budget.rule, period=crossed.period,
                    spent=crossed.spent, limit=crossed.budget.limit, percent=payload["percent"],
                    webhook=webhook is not None)
        if webhook is not None:
            self.alerts.send(webhook, payload)

    # ------------------------------------------------------------ reading back

    def period(self) -> str:
        return period_of(self._now(), self.plan.budgets.period, self.plan.timezone).label

    def refresh(self) -> None:
        """Read the current period's spend (after everything settled so far
        is committed: the writer runs ops in order) into the ledger."""
        if not self.plan.budgets.budgets:
            return
        mark, period = self.ledger.mark(), self.period()
        found: list[tuple[dict[tuple[str, str], int], set[tuple[str, str]]]] = []

        def read(conn: Connection) -> None:
            found.append(store.read_spend(period, conn))

        def loaded() -> None:
            if found:
                spent, warned = found[-1]
                self.notify(lambda: self.ledger.load(spent, mark, warned))

        self._submit(read, loaded)

    def recount_missing(self) -> None:
        """Spend rows lost from the store (or never written: a new budget)
        are counted again from the CDRs; rows that exist are left alone."""
        budgets: list[Budget] = list(self.plan.budgets.budgets.values())
        if not budgets:
            return
        period = period_of(self._now(), self.plan.budgets.period, self.plan.timezone)
        self._submit(partial(_recount_missing, budgets, period, self._now()))


def _recount_missing(budgets: list[Budget], period: Period, now: datetime, conn: Connection) -> None:
    store.recount(budgets, period, now, conn, only_missing=True)
