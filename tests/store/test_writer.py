"""BackgroundWriter: group commit, flush, durability, failure isolation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, insert
from structlog.testing import capture_logs

from pbx.store.bindings import BindingStore
from pbx.store.blocks import BLOCKS, BlockStore
from pbx.store.db import make_engine, migrate
from pbx.store.writer import BackgroundWriter, WriterClosed

from .conftest import NOW, MakeBinding, ends


class Gate:
    """An op that holds the writer thread inside its transaction until
    released, so the test decides exactly what queues up behind it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: Connection) -> None:
        self.entered.set()
        if not self.release.wait(timeout=30):
            raise TimeoutError("gate never released")


def insert_negative_failures(conn: Connection) -> None:
    """Breaks ck_blocked_sources_failures: the database refuses it."""
    conn.execute(
        insert(BLOCKS).values(
            source="192.0.2.66", blocked_until=NOW, reason="bad", failures=-1, created_at=NOW
        )
    )


def test_group_commit_flush_and_restart(
    db_url: str, migrated: Engine, make_binding: MakeBinding
) -> None:
    store = BindingStore(migrated)
    writer = BackgroundWriter(migrated)
    gate = Gate()
    writer.submit(gate)
    assert gate.entered.wait(timeout=10)
    records = [make_binding(aor=f"{2000 + i}", cseq=i) for i in range(500)]
    for record in records:
        writer.submit(partial(store.upsert, record))
    assert not writer.flush(timeout=0.05)  # held at the gate: nothing committed yet
    gate.release.set()
    assert writer.flush(timeout=30)
    stats = writer.stats()
    # The gate's batch, then all 500 upserts in a single transaction.
    assert (stats.submitted, stats.committed, stats.failed, stats.batches) == (501, 501, 0, 2)
    assert stats.queued == 0 and stats.max_queued == 500
    assert writer.close(timeout=10)
    migrated.dispose()

    fresh = make_engine(db_url)  # as after a restart: new pool, new connections
    try:
        assert BindingStore(fresh).load_active(NOW) == records
    finally:
        fresh.dispose()


def test_ops_run_in_submission_order(migrated: Engine, make_binding: MakeBinding) -> None:
    store = BindingStore(migrated)
    writer = BackgroundWriter(migrated)
    for cseq in range(1, 51):
        writer.submit(partial(store.upsert, make_binding(cseq=cseq)))
    writer.submit(partial(store.delete, "1001", make_binding().contact))
    writer.submit(partial(store.upsert, make_binding(cseq=99)))
    assert writer.close(timeout=30)
    assert [r.cseq for r in store.load_active(NOW)] == [99]


def test_bad_op_does_not_lose_the_rest_of_its_batch(
    migrated: Engine, make_binding: MakeBinding
) -> None:
    bindings = BindingStore(migrated)
    blocks = BlockStore(migrated)
    writer = BackgroundWriter(migrated, retries=2, backoff=0.0, max_backoff=0.0)
    gate = Gate()
    with capture_logs() as logs:
        writer.submit(gate)
        assert gate.entered.wait(timeout=10)
        good = [make_binding(aor=f"{3000 + i}") for i in range(10)]
        for record in good[:5]:
            writer.submit(partial(bindings.upsert, record))
        writer.submit(insert_negative_failures)
        writer.submit(partial(blocks.block, "192.0.2.7", NOW + timedelta(hours=1), "scan", 3))
        for record in good[5:]:
            writer.submit(partial(bindings.upsert, record))
        gate.release.set()
        assert writer.close(timeout=30)
    stats = writer.stats()
    assert (stats.committed, stats.failed) == (12, 1)
    assert bindings.load_active(NOW) == good
    assert ends(blocks.active(NOW)) == {"192.0.2.7": NOW + timedelta(hours=1)}

    events = [entry["event"] for entry in logs]
    assert "db_batch_split" in events
    assert [e for e in logs if e["event"] == "db_op_failed"] == [
        {"event": "db_op_failed", "op": "insert_negative_failures", "log_level": "error"}
    ]
    failures = [e for e in logs if e["event"] == "db_batch_failed"]
    assert failures and {e["error"] for e in failures} == {"IntegrityError"}
    # Values (which may be secrets elsewhere) never reach the log.
    assert "192.0.2.66" not in repr(logs)


def test_an_outage_loses_nothing(tmp_path: Path, make_binding: MakeBinding) -> None:
    # The database "file" is a directory: every connection attempt fails, as
    # when PostgreSQL is down.  The op must wait, not be blamed and dropped.
    path = tmp_path / "pbx.sqlite3"
    path.mkdir()
    engine = make_engine(f"sqlite:///{path}")
    # Between rmdir and rename below, a connection may create an empty file
    # and see "no such table": that connection is discarded, and the next
    # retry opens the file that has been moved into place.
    writer = BackgroundWriter(engine, retries=50, backoff=0.01, max_backoff=0.05)
    record = make_binding()
    with capture_logs() as logs:
        writer.submit(partial(BindingStore(engine).upsert, record))
        assert not writer.flush(timeout=0.5)
        assert writer.stats().failed == 0
        assert "db_unreachable" in [entry["event"] for entry in logs]

        # The database comes back: prepare it aside, then move it into place
        # in one step so the writer never sees a half-made one.
        ready = tmp_path / "ready.sqlite3"
        helper = make_engine(f"sqlite:///{ready}")
        migrate(helper)
        helper.dispose()
        path.rmdir()
        ready.rename(path)

        assert writer.flush(timeout=30)
        assert writer.close(timeout=10)
    assert (writer.stats().committed, writer.stats().failed) == (1, 0)
    assert BindingStore(engine).load_active(NOW) == [record]
    assert "db_op_failed" not in [entry["event"] for entry in logs]
    engine.dispose()


def test_a_failed_connection_is_not_reused_by_the_next_try(
    tmp_path: Path, make_binding: MakeBinding
) -> None:
    # The writer's connection opens an empty file (no tables), then a ready
    # database replaces that file.  The old connection still reads the file
    # it opened, so a retry on it fails forever; each try after a failure
    # must open a fresh one.  (CI once saw this as an outage test losing
    # its op: a connection made in the instant between rmdir and rename.)
    path = tmp_path / "pbx.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    writer = BackgroundWriter(engine, retries=1, backoff=0.0, max_backoff=0.0)
    first, second = make_binding(aor="201"), make_binding(aor="202")
    with capture_logs() as logs:
        writer.submit(partial(BindingStore(engine).upsert, first))
        assert writer.flush(timeout=10)
        assert (writer.stats().committed, writer.stats().failed) == (0, 1)

        ready = tmp_path / "ready.sqlite3"
        helper = make_engine(f"sqlite:///{ready}")
        migrate(helper)
        helper.dispose()
        ready.rename(path)

        writer.submit(partial(BindingStore(engine).upsert, second))
        assert writer.flush(timeout=10)
        assert writer.close(timeout=10)
    assert (writer.stats().committed, writer.stats().failed) == (1, 1)
    assert BindingStore(engine).load_active(NOW) == [second]
    assert [entry["op"] for entry in logs if entry["event"] == "db_op_failed"] == ["BindingStore.upsert"]
    engine.dispose()


def test_close_gives_up_on_a_dead_database_in_time(
    tmp_path: Path, make_binding: MakeBinding
) -> None:
    path = tmp_path / "pbx.sqlite3"
    path.mkdir()
    engine = make_engine(f"sqlite:///{path}")
    writer = BackgroundWriter(engine, backoff=0.01, max_backoff=0.05)
    with capture_logs() as logs:
        writer.submit(partial(BindingStore(engine).upsert, make_binding()))
        writer.submit(partial(BindingStore(engine).upsert, make_binding(aor="1002")))
        assert not writer.close(timeout=0.3)
    abandoned = [e for e in logs if e["event"] == "db_writer_abandoned"]
    assert sum(e["dropped"] for e in abandoned) == 2
    with pytest.raises(WriterClosed):
        writer.submit(partial(BindingStore(engine).upsert, make_binding()))
    engine.dispose()


def test_submit_after_close_is_refused(migrated: Engine, make_binding: MakeBinding) -> None:
    writer = BackgroundWriter(migrated)
    assert writer.close(timeout=10)
    with pytest.raises(WriterClosed):
        writer.submit(partial(BindingStore(migrated).upsert, make_binding()))
    assert writer.flush(timeout=1)  # nothing pending


@pytest.mark.parametrize(
    "options",
    [{"retries": 0}, {"backoff": -1.0}, {"backoff": 2.0, "max_backoff": 1.0}, {"max_batch": 0}],
)
def test_bad_settings_are_refused(migrated: Engine, options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackgroundWriter(migrated, **options)  # type: ignore[arg-type]


# The child commits through the writer, says so, and is killed with SIGKILL
# before any orderly shutdown (no close(), no engine dispose, no checkpoint).
KILLED_CHILD = """
import os, signal, sys
from datetime import UTC, datetime, timedelta
from functools import partial
from pbx.store.bindings import BindingRecord, BindingStore
from pbx.store.db import make_engine, migrate
from pbx.store.writer import BackgroundWriter

engine = make_engine(sys.argv[1])
migrate(engine)
store = BindingStore(engine)
writer = BackgroundWriter(engine)
now = datetime(2025, 3, 30, tzinfo=UTC)
for i in range(200):
    writer.submit(partial(store.upsert, BindingRecord(
        aor=str(5000 + i), contact=f"sip:{5000 + i}@192.0.2.1", expires_at=now + timedelta(days=1),
        call_id="c", cseq=i, q=None, transport="udp", source_host="192.0.2.1",
        source_port=5060, connection_id=None, node="n", user_agent=None,
        instance_id=None, reg_id=None, updated_at=now)))
assert writer.flush(30)
print("flushed", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_committed_rows_survive_kill_9(db_url: str) -> None:
    root = Path(__file__).resolve().parents[2]
    child = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, db_url],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout == "flushed\n"
    engine = make_engine(db_url)
    try:
        active = BindingStore(engine).load_active(NOW)
        assert [r.aor for r in active] == [str(5000 + i) for i in range(200)]
    finally:
        engine.dispose()


def test_on_commit_runs_after_the_commit_and_for_dropped_ops(
    db_url: str, migrated: Engine, make_binding: MakeBinding
) -> None:
    store = BindingStore(migrated)
    writer = BackgroundWriter(migrated, retries=1, backoff=0.0, max_backoff=0.0)
    seen: list[tuple[str, int]] = []
    observer = make_engine(db_url)  # another connection: sees only committed rows

    def visible_rows(tag: str) -> None:
        seen.append((tag, len(BindingStore(observer).load_active(NOW))))

    with capture_logs() as logs:
        writer.submit(partial(store.upsert, make_binding()), partial(visible_rows, "good"))
        assert writer.flush(timeout=30)
        writer.submit(insert_negative_failures, partial(visible_rows, "bad"))
        assert writer.close(timeout=30)
    observer.dispose()
    assert seen == [("good", 1), ("bad", 1)]
    dropped = [e for e in logs if e["event"] == "db_op_dropped"]
    assert [e["op"] for e in dropped] == ["insert_negative_failures"]


def test_gather_lets_a_burst_share_one_transaction(migrated: Engine, make_binding: MakeBinding) -> None:
    store = BindingStore(migrated)
    writer = BackgroundWriter(migrated, gather=0.5)
    committed: list[int] = []
    for i in range(20):  # microseconds apart: all inside the first op's gather time
        writer.submit(partial(store.upsert, make_binding(aor=f"{3000 + i}", cseq=i)), partial(committed.append, i))
    assert writer.flush(timeout=10)
    stats = writer.stats()
    assert (stats.committed, stats.batches) == (20, 1)
    assert committed == list(range(20))
    assert writer.close(timeout=10)
    with pytest.raises(ValueError):
        BackgroundWriter(migrated, gather=-1.0)
