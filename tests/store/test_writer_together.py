"""BackgroundWriter and `Together` ops: the items of one function queued in
one transaction reach it in one call, in order; a batch that fails is split
and each item is written (or dropped) alone, as any op would be."""

from __future__ import annotations

import threading
from datetime import timedelta
from functools import partial

from sqlalchemy import Connection, Engine, insert
from structlog.testing import capture_logs

from pbx.store.blocks import BLOCKS, BlockStore
from pbx.store.writer import BackgroundWriter, Together

from .conftest import NOW, ends


class Gate:
    """Holds the writer thread inside its transaction until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: Connection) -> None:
        self.entered.set()
        if not self.release.wait(timeout=30):
            raise TimeoutError("gate never released")


class BlockMany:
    """A run_many: blocks each source given, recording how it was called."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, conn: Connection, sources: list[str]) -> None:
        self.calls.append(list(sources))
        for source in sources:
            if source == "bad":  # the database refuses a negative failure count
                conn.execute(insert(BLOCKS).values(
                    source="192.0.2.66", blocked_until=NOW, reason="bad", failures=-1, created_at=NOW
                ))
            else:
                BlockStore(conn.engine).block(source, NOW + timedelta(hours=1), "scan", 3, conn=conn)


def test_items_queued_together_reach_their_function_in_one_call(migrated: Engine) -> None:
    writer = BackgroundWriter(migrated)
    many = BlockMany()
    order: list[str] = []
    gate = Gate()
    writer.submit(gate)
    assert gate.entered.wait(timeout=10)
    writer.submit(Together(many, "192.0.2.1"), partial(order.append, "1"))
    writer.submit(lambda conn: order.append("plain"))  # an ordinary op between them
    writer.submit(Together(many, "192.0.2.2"), partial(order.append, "2"))
    writer.submit(Together(many, "192.0.2.3"), partial(order.append, "3"))
    gate.release.set()
    assert writer.close(timeout=30)
    assert many.calls == [["192.0.2.1", "192.0.2.2", "192.0.2.3"]]
    assert order == ["plain", "1", "2", "3"]  # callbacks after the commit, in submission order
    stats = writer.stats()
    assert (stats.committed, stats.failed, stats.batches) == (5, 0, 2)
    assert sorted(ends(BlockStore(migrated).active(NOW))) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]


def test_a_bad_item_costs_only_itself(migrated: Engine) -> None:
    writer = BackgroundWriter(migrated, retries=1, backoff=0.0, max_backoff=0.0)
    many = BlockMany()
    called: list[str] = []
    gate = Gate()
    writer.submit(gate)
    assert gate.entered.wait(timeout=10)
    with capture_logs() as logs:
        for source in ("192.0.2.4", "bad", "192.0.2.5"):
            writer.submit(Together(many, source), partial(called.append, source))
        gate.release.set()
        assert writer.close(timeout=30)
    # Tried together once, then each alone in a list of one.
    assert many.calls == [["192.0.2.4", "bad", "192.0.2.5"], ["192.0.2.4"], ["bad"], ["192.0.2.5"]]
    assert called == ["192.0.2.4", "bad", "192.0.2.5"]  # the dropped one is told too
    assert {"event": "db_op_dropped", "op": "BlockMany", "log_level": "error"} in logs
    assert (writer.stats().committed, writer.stats().failed) == (3, 1)  # the gate, two good items
    assert sorted(ends(BlockStore(migrated).active(NOW))) == ["192.0.2.4", "192.0.2.5"]
