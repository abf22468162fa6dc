"""How nodes sharing PostgreSQL learn each other's registrations: LISTEN/NOTIFY
or a short TTL (a full re-read every few seconds). Issue 19 asks to measure.

For LISTEN/NOTIFY (what pbx/store/change_events.py does) this prints how long
after a writer's commit another session's listener hears it, and what the
``pg_notify`` adds to a flush of the registrar's write-behind. For a TTL it
prints what one full re-read of every binding costs (``load_active``, as a
node would run it every TTL seconds), for several table sizes: with a TTL
of T seconds a new registration is unknown to the other nodes for T/2 on
average and T at worst, and every node pays that read every T seconds
whether anything changed or not.

    python bench/cluster_bindings.py                       # PostgreSQL at 127.0.0.1:5432, db test
    python bench/cluster_bindings.py --sizes 1000,10000,50000 --notifies 300

Runs in a schema of its own, dropped at the end. Figures are from one
machine shared with other work (2 cores): compare the columns.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import Engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from pbx.store.bindings import BindingRecord, BindingStore  # noqa: E402
from pbx.store.change_events import ChangeListener, StoreChanged, announce  # noqa: E402
from pbx.store.db import make_engine, migrate  # noqa: E402

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def record(n: int, now: datetime) -> BindingRecord:
    return BindingRecord(aor=f"{100000 + n}", contact=f"sip:{100000 + n}@10.0.{n // 250 % 250}.{n % 250 + 1}:5060",
                         expires_at=now + timedelta(hours=1), call_id=f"reg-{n}", cseq=1, q=None, transport="udp",
                         source_host="127.0.0.1", source_port=5060, connection_id=None, node="node-a",
                         user_agent="bench", instance_id=None, reg_id=None, updated_at=now,
                         path="<sip:127.0.0.1:5060;lr;received=sip:10.0.0.1:5060>")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def notify_latency(engine: Engine, count: int) -> tuple[list[float], list[float], list[float]]:
    """(commit-to-heard ms, flush ms without notify, flush ms with notify)."""
    heard: queue.Queue[tuple[float, StoreChanged]] = queue.Queue()
    listener = ChangeListener(engine, "node-b", lambda change: heard.put((time.perf_counter(), change)), lambda: None)
    listener.start()
    listener.listening.wait(10.0)
    store, now = BindingStore(engine), datetime.now(UTC)
    latencies, plain, notified = [], [], []
    try:
        for n in range(count):
            rows = [record(n * 10 + k, now) for k in range(10)]   # one flush: ten refreshes
            started = time.perf_counter()
            with engine.begin() as conn:
                for row in rows:
                    store.upsert(row, conn=conn)
            plain.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            with engine.begin() as conn:
                for row in rows:
                    store.upsert(row, conn=conn)
                announce(conn, "node-a", "bindings", [row.aor for row in rows])
            committed = time.perf_counter()
            notified.append((committed - started) * 1000)
            at, _ = heard.get(timeout=10.0)
            latencies.append((at - committed) * 1000)
    finally:
        listener.close()
    return latencies, plain, notified


def reload_cost(engine: Engine, size: int, runs: int) -> list[float]:
    store, now = BindingStore(engine), datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM registration_bindings"))
        for start in range(0, size, 1000):
            for n in range(start, min(size, start + 1000)):
                store.upsert(record(n, now), conn=conn)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        found = store.load_active(now)
        timings.append((time.perf_counter() - started) * 1000)
        assert len(found) == size
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--notifies", type=int, default=200)
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    schema = f"bench_cluster_{uuid.uuid4().hex[:8]}"
    admin = make_engine(args.db)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(make_url(args.db).update_query_dict({"options": f"-csearch_path={schema}"})
                         .render_as_string(hide_password=False))
    try:
        migrate(engine)
        latencies, plain, notified = notify_latency(engine, args.notifies)
        print(f"LISTEN/NOTIFY, {args.notifies} flushes of 10 bindings")
        print(f"{'':34}{'median':>10}{'p99':>10}")
        print(f"{'commit -> other node hears (ms)':34}{statistics.median(latencies):10.2f}"
              f"{percentile(latencies, 0.99):10.2f}")
        print(f"{'flush without pg_notify (ms)':34}{statistics.median(plain):10.2f}{percentile(plain, 0.99):10.2f}")
        print(f"{'flush with pg_notify (ms)':34}{statistics.median(notified):10.2f}"
              f"{percentile(notified, 0.99):10.2f}")
        print()
        print("TTL: one full re-read of every binding (per node, every TTL seconds)")
        print(f"{'bindings':>10}{'median ms':>12}{'max ms':>10}{'ms/s at TTL 5 s':>18}")
        for size in (int(s) for s in args.sizes.split(",")):
            timings = reload_cost(engine, size, args.runs)
            print(f"{size:>10}{statistics.median(timings):12.1f}{max(timings):10.1f}"
                  f"{statistics.median(timings) / 5:18.1f}")
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
