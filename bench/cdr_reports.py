"""How long `pbx report` takes on a year of CDRs.

Fills the ``cdr`` table with ROWS rows (default 1,000,000) spread evenly
over 2026, as a busy office would leave them (departments with Vietnamese
and Chinese names, most calls answered, costs on the outside ones), then
times each report for one month (about 83,000 calls) and for the whole
year, on each database given, and prints a table. The aim is under 2 s
for a month on a million rows.

    python bench/cdr_reports.py                                  # SQLite in a temporary file
    python bench/cdr_reports.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/cdr_reports.py --rows 200000 --runs 3

Rows are inserted in batches of 20,000 (a minute or two per million); on
PostgreSQL they go into a schema of their own, dropped at the end, and a
SQLite file is deleted. Figures are from one process on a shared machine:
the median of --runs is printed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
import zoneinfo
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import Engine, insert, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from pbx.cdr.reports import REPORT_BY, traffic_report, usage_report  # noqa: E402
from pbx.cdr.writer import CDR  # noqa: E402
from pbx.routing.budgets import parse_period  # noqa: E402
from pbx.store.db import make_engine, migrate  # noqa: E402

ZONE = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
YEAR_START = datetime(2026, 1, 1, tzinfo=ZONE).astimezone(UTC)
SECONDS_IN_YEAR = 365 * 24 * 3600
DEPARTMENTS = ["Kế toán", "Kinh doanh", "Hỗ trợ kỹ thuật", "台北辦公室", "Xưởng Bình Dương", None]
CLASSES = ["internal", "internal", "mobile", "national", "local", "international", "toll_free", "inbound"]
BATCH = 20_000


def make_rows(count: int, seed: int) -> Callable[[int], list[dict[str, Any]]]:
    rng = random.Random(seed)

    def batch(size: int) -> list[dict[str, Any]]:
        rows = []
        for _ in range(size):
            started = YEAR_START + timedelta(seconds=rng.randrange(SECONDS_IN_YEAR))
            department = rng.choice(DEPARTMENTS)
            call_class = "inbound" if department is None else rng.choice(CLASSES[:-1])
            answered = rng.random() < 0.8
            wait = rng.randrange(1, 25)
            billsec = rng.randrange(5, 900) if answered else 0
            duration = wait + billsec
            priced = answered and call_class not in ("internal", "inbound", "toll_free")
            rows.append({
                "call_uuid": str(uuid.UUID(int=rng.getrandbits(128))), "node": "bench", "call_id": uuid.uuid4().hex,
                "started_at": started, "answered_at": started + timedelta(seconds=wait) if answered else None,
                "ended_at": started + timedelta(seconds=duration), "duration": duration, "billsec": billsec,
                "caller_number": str(1000 + rng.randrange(300)), "caller_department": department,
                "dialed_number": "0912345678", "disposition": "ANSWERED" if answered else "NO_ANSWER",
                "hangup_side": "caller", "call_class": call_class,
                "trunk": None if call_class == "internal" else rng.choice(["viettel", "cht"]),
                "project": rng.choice([None, None, None, "expo", "erp-rollout"]),
                "account_code": rng.choice([None, None, "4711", "4712"]),
                "cost_minor": (billsec + 59) // 60 * 1200 if priced else None,
                "currency": "VND" if priced else None,
            })
        return rows

    del count
    return batch


def fill(engine: Engine, count: int) -> float:
    started = time.perf_counter()
    batch = make_rows(count, seed=13)
    done = 0
    while done < count:
        size = min(BATCH, count - done)
        with engine.begin() as conn:
            conn.execute(insert(CDR), batch(size))
        done += size
        print(f"\r  inserted {done:,} rows", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE cdr"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


def timed(run: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench(url: str, rows: int, runs: int) -> list[tuple[str, str, float]]:
    engine = make_engine(url)
    try:
        migrate(engine)
        seconds = fill(engine, rows)
        results = [("insert", f"{rows:,} rows", seconds)]
        month, year = parse_period("2026-12", ZONE), parse_period("2026", ZONE)
        for span in (month, year):
            for by in REPORT_BY:
                results.append((f"--by {by}", span.label,
                                timed(lambda: usage_report(engine, by, span), runs)))  # type: ignore[arg-type]
            results.append(("--extension 1003", span.label,
                             timed(lambda: usage_report(engine, "class", span, extension="1003"), runs)))
            results.append(("traffic", span.label, timed(lambda: traffic_report(engine, span, ZONE), runs)))
        return results
    finally:
        engine.dispose()


def postgres_schema(url: str) -> tuple[str, Callable[[], None]]:
    schema = f"bench_reports_{uuid.uuid4().hex[:8]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return scoped.render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", action="append", help="database URL (repeatable); default: a SQLite file")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    table: dict[str, list[tuple[str, str, float]]] = {}
    for url in args.db or ["sqlite"]:
        if url == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                print("SQLite:", file=sys.stderr)
                table["SQLite"] = bench(f"sqlite:///{folder}/bench.sqlite3", args.rows, args.runs)
            continue
        scoped, drop = postgres_schema(url)
        try:
            print("PostgreSQL:", file=sys.stderr)
            table["PostgreSQL"] = bench(scoped, args.rows, args.runs)
        finally:
            drop()
    names = list(table)
    print(f"{'report':<20} {'period':<16}" + "".join(f" {name:>12}" for name in names))
    for index, (what, period, _) in enumerate(next(iter(table.values()))):
        cells = "".join(f" {table[name][index][2]:>11.3f}s" for name in names)
        print(f"{what:<20} {period:<16}{cells}")


if __name__ == "__main__":
    main()
