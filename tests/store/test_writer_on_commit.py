"""BackgroundWriter.submit(op, on_commit): told after the commit, or after the
drop (loudly), never before; a bad callback does not stop the writer."""

from __future__ import annotations

import threading
import time
import weakref
from datetime import timedelta
from functools import partial

from sqlalchemy import Connection, Engine, insert
from structlog.testing import capture_logs

from pbx.store.blocks import BLOCKS, BlockStore
from pbx.store.db import make_engine
from pbx.store.writer import BackgroundWriter

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


def refused_by_the_database(conn: Connection) -> None:
    conn.execute(
        insert(BLOCKS).values(
            source="192.0.2.66", blocked_until=NOW, reason="bad", failures=-1, created_at=NOW
        )
    )


def block(source: str, conn: Connection) -> None:
    BlockStore(conn.engine).block(source, NOW + timedelta(hours=1), "scan", 3, conn=conn)


def test_on_commit_runs_after_the_commit_is_visible(db_url: str, migrated: Engine) -> None:
    writer = BackgroundWriter(migrated)
    seen: list[dict[str, object]] = []
    told = threading.Event()

    def on_commit() -> None:
        fresh = make_engine(db_url)  # another connection, as another process would
        try:
            seen.append(dict(ends(BlockStore(fresh).active(NOW))))
        finally:
            fresh.dispose()
        told.set()

    gate = Gate()
    writer.submit(gate)
    assert gate.entered.wait(timeout=10)
    writer.submit(partial(block, "192.0.2.7"), on_commit)
    assert not told.wait(timeout=0.2)  # queued behind the open transaction
    gate.release.set()
    assert told.wait(timeout=30)
    assert seen == [{"192.0.2.7": NOW + timedelta(hours=1)}]
    assert writer.close(timeout=10)


def test_flush_waits_for_the_callbacks_too(migrated: Engine) -> None:
    writer = BackgroundWriter(migrated)
    order: list[str] = []
    for n in range(20):
        writer.submit(partial(block, f"192.0.2.{n + 1}"), partial(order.append, str(n)))
    assert writer.flush(timeout=30)
    assert order == [str(n) for n in range(20)]  # all called, in submission order
    assert writer.close(timeout=10)


def test_a_dropped_op_still_calls_back_and_says_so(migrated: Engine) -> None:
    writer = BackgroundWriter(migrated, retries=1, backoff=0.0, max_backoff=0.0)
    called: list[str] = []
    with capture_logs() as logs:
        writer.submit(refused_by_the_database, partial(called.append, "refused"))
        writer.submit(partial(block, "192.0.2.8"), partial(called.append, "fine"))
        assert writer.close(timeout=30)
    assert called == ["refused", "fine"]
    assert {"event": "db_op_dropped", "op": "refused_by_the_database", "log_level": "error"} in logs
    assert [e for e in logs if e["event"] == "db_op_dropped"] == [
        {"event": "db_op_dropped", "op": "refused_by_the_database", "log_level": "error"}
    ]
    assert (writer.stats().committed, writer.stats().failed) == (1, 1)
    assert list(ends(BlockStore(migrated).active(NOW))) == ["192.0.2.8"]


def test_a_failing_callback_does_not_stop_the_writer(migrated: Engine) -> None:
    writer = BackgroundWriter(migrated)
    called: list[str] = []

    def broken() -> None:
        raise RuntimeError("callback bug")

    with capture_logs() as logs:
        writer.submit(partial(block, "192.0.2.9"), broken)
        writer.submit(partial(block, "192.0.2.10"), partial(called.append, "next"))
        assert writer.close(timeout=30)
    assert called == ["next"]
    assert "db_on_commit_error" in [e["event"] for e in logs]
    assert sorted(ends(BlockStore(migrated).active(NOW))) == ["192.0.2.10", "192.0.2.9"]


class _Watched:
    """An op or a callback whose lifetime the test follows (a weak reference)."""

    def __init__(self, source: str | None = None) -> None:
        self.source = source

    def __call__(self, conn: Connection | None = None) -> None:
        if self.source is not None and conn is not None:
            block(self.source, conn)


def test_a_done_op_and_its_callback_are_not_kept_while_the_writer_waits(migrated: Engine) -> None:
    # A CDR op's callback closes over its call: kept by the idle writer
    # thread until the next batch, a quiet server held its last calls.
    writer = BackgroundWriter(migrated)
    op, told = _Watched("192.0.2.11"), _Watched()
    watched = [weakref.ref(op), weakref.ref(told)]
    writer.submit(op, told)
    assert writer.flush(timeout=10)
    del op, told
    deadline = time.monotonic() + 10  # the thread lets go just after flush() returns
    while any(ref() is not None for ref in watched) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [ref() for ref in watched] == [None, None]
    assert writer.close(timeout=10)
