"""What the CDR heartbeat costs the database writer thread.

Every CDR_HEARTBEAT_INTERVAL seconds (pbx/server/app.py) the server stamps
its node's row in ``cdr_heartbeats`` (`pbx.cdr.writer.mark_node_alive`), so
a crash ends its open calls' rows when they were last known up.  This prints,
for a number of calls in progress, how long that write takes (its own
transaction, commit included) and what it adds per second of traffic, next
to what the CDR upserts of 200 calls per second cost the same thread (each
call's three reports, one transaction per call).  The write does not
depend on the number of calls: that is the point of one row per node
(stamping every open call's own row took 0.6 s a beat for 18,000 calls on
PostgreSQL).

At 200 calls/s, calls of 30 s on average mean 6,000 in progress at once, of
90 s 18,000.  Figures are from one process on a shared machine: compare the
columns, not the absolute numbers.

    python bench/cdr_heartbeat.py                                   # SQLite in a temporary file
    python bench/cdr_heartbeat.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/cdr_heartbeat.py --live 1000,6000,18000 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import Engine, delete  # noqa: E402

from pbx.cdr.records import Disposition, HangupSide  # noqa: E402
from pbx.cdr.writer import CDR, HEARTBEATS, Report, mark_node_alive, upsert_calls  # noqa: E402
from pbx.server.app import CDR_HEARTBEAT_INTERVAL  # noqa: E402
from pbx.store.db import make_engine, migrate  # noqa: E402

NODE = "bench-cdr-heartbeat"
"""Every row the benchmark writes carries this node, and only those are deleted."""
RATE = 200
BASE = datetime(2025, 3, 30, tzinfo=UTC)


def start_row(call_uuid: str, started: datetime) -> dict[str, Any]:
    return {"call_uuid": call_uuid, "node": NODE, "call_id": f"{call_uuid}@192.0.2.4", "started_at": started,
            "caller_number": "1001", "caller_name": "Nguyễn Văn An", "dialed_number": "1002"}


def open_calls(engine: Engine, count: int) -> None:
    """``count`` answered calls in progress on NODE."""
    with engine.begin() as conn:
        conn.execute(delete(CDR).where(CDR.c.node == NODE))
        reports: list[Report] = []
        for n in range(count):
            row = start_row(str(uuid.uuid4()), BASE + timedelta(milliseconds=n))
            row.update(answered_at=row["started_at"] + timedelta(seconds=2), destination="1002")
            reports.append((row, []))
        upsert_calls(conn, reports)


def heartbeat_ms(engine: Engine, runs: int) -> list[float]:
    times = []
    for run in range(runs):
        now = datetime.now(UTC) + timedelta(seconds=run)
        began = time.perf_counter()
        with engine.begin() as conn:
            mark_node_alive(NODE, now, conn)
        times.append((time.perf_counter() - began) * 1000)
    return times


def second_of_calls_ms(engine: Engine) -> float:
    """The CDR writes of RATE calls: start, answer and end of each, one
    transaction per call (the writer gathers what 5 ms bring)."""
    began = time.perf_counter()
    start = datetime.now(UTC)
    for _ in range(RATE):
        call_uuid = str(uuid.uuid4())
        row = start_row(call_uuid, start)
        answered = dict(row, answered_at=start + timedelta(seconds=1), destination="1002")
        ended = dict(answered, ended_at=start + timedelta(seconds=30), duration=30, billsec=29,
                     disposition=Disposition.ANSWERED, hangup_side=HangupSide.CALLER)
        with engine.begin() as conn:
            upsert_calls(conn, [(row, []), (answered, []), (ended, [])])
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="database URL (default: SQLite in a temporary directory)")
    parser.add_argument("--live", default="1000,6000,18000", help="calls in progress, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = args.db or f"sqlite:///{Path(directory) / 'bench.sqlite3'}"
        engine = make_engine(url)
        migrate(engine)
        try:
            baseline = statistics.median(second_of_calls_ms(engine) for _ in range(3))
            print(f"database: {engine.dialect.name}; heartbeat every {CDR_HEARTBEAT_INTERVAL:g} s")
            print(f"CDR upserts of {RATE} calls (1 s of traffic at {RATE}/s): {baseline:.0f} ms of writer time")
            print(f"{'in progress':>12} {'stamp ms (min/median/max)':>28} {'ms per s':>9} {'vs calls':>9}")
            for live in (int(n) for n in args.live.split(",")):
                open_calls(engine, live)
                times = heartbeat_ms(engine, args.runs)
                per_second = statistics.median(times) / CDR_HEARTBEAT_INTERVAL
                spread = f"{min(times):.1f} / {statistics.median(times):.1f} / {max(times):.1f}"
                print(f"{live:>12} {spread:>28} {per_second:>9.2f} {per_second / baseline:>8.1%}")
        finally:
            with engine.begin() as conn:  # only what the benchmark wrote
                conn.execute(delete(CDR).where(CDR.c.node == NODE))
                conn.execute(delete(HEARTBEATS).where(HEARTBEATS.c.node == NODE))
            engine.dispose()


if __name__ == "__main__":
    main()
