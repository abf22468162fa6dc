"""Budget reservations and outside-call caps in the shared store, for
several nodes.

The edge of :class:`pbx.calls.budgets.SharedHold`: a reservation is one
transaction on its own connection, in a worker thread (the event loop never
waits on SQL), whose answer comes back to the loop; a release is a writer
op queued after the call's spend (``BudgetKeeper.settled`` queues that
first), so the two usually commit together and a budget's room is never
counted neither spent nor held.

When the store cannot be reached the call is let through on this node's own
count (logged as ``budget_store_unreachable``): a database outage must not
stop the telephones; the spend still counts once the store is back.

Only for PostgreSQL: on SQLite there is one node and its ledger is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial

import structlog
from sqlalchemy import Engine

from pbx.calls.budgets import BudgetHit, SharedHold
from pbx.calls.limits import LimitHit
from pbx.store import budgets as store
from pbx.store.writer import BackgroundWriter, WriterClosed

log = structlog.get_logger("pbx.billing")


class StoreReservations:
    """``SharedReservations`` on ``engine``'s ``budget_reservations``."""

    def __init__(self, engine: Engine, writer: BackgroundWriter, node: str, wall_clock: Callable[[], float]) -> None:
        self._engine, self._writer, self._node, self._wall = engine, writer, node, wall_clock
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def applies(engine: Engine) -> bool:
        return engine.dialect.name == "postgresql"

    def recover(self) -> int:
        """At start: drop what this node's calls held before it stopped
        (blocking; call it from a thread). Rows removed."""
        with self._engine.begin() as conn:
            return store.release_node(self._node, datetime.fromtimestamp(self._wall(), timezone.utc), conn)

    def reserve(self, call: str, hold: SharedHold, done: Callable[[BudgetHit | LimitHit | None], None]) -> None:
        task = self._loop.create_task(self._reserve(call, hold, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reserve(self, call: str, hold: SharedHold, done: Callable[[BudgetHit | LimitHit | None], None]) -> None:
        now = datetime.fromtimestamp(self._wall(), timezone.utc)
        try:
            refused = await asyncio.to_thread(self._reserve_now, call, hold, now)
        except Exception as error:
            log.warning("budget_store_unreachable", uuid=call, error=type(error).__name__)
            refused = None
        done(refused)

    def _reserve_now(self, call: str, hold: SharedHold, now: datetime) -> BudgetHit | LimitHit | None:
        """The caps first, then the budgets, in one transaction: a refusal
        of either leaves nothing held."""
        with self._engine.connect() as conn, conn.begin() as transaction:
            refused: BudgetHit | LimitHit | None = None
            outside = hold.outside
            if outside is not None:
                capped = store.admit_outside(call, outside.extension, outside.limits.simultaneous.value,
                                             outside.limits.per_minute.value, self._node, now, conn)
                if capped is not None:
                    refused = outside.hit(*capped)
            if refused is None and hold.charges:
                short = store.reserve(call, hold.limits(), hold.amount, self._node, now, conn)
                if short is not None:
                    refused = hold.hit(*short)
            if refused is not None:
                transaction.rollback()
            return refused

    def release(self, call: str) -> None:
        try:
            self._writer.submit(partial(store.release, call, datetime.fromtimestamp(self._wall(), timezone.utc)))
        except WriterClosed:
            log.error("budget_reservation_kept", uuid=call, reason="writer_closed")
