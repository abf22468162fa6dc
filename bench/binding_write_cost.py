"""The writer thread's CPU per refreshed registration binding.

A registration refresh (same AOR and contact, from the same place) reaches
the store as one row of the write-behind's UPDATE executemany
(`pbx.registrar.persist`). This times ``--bindings`` refreshes flushed as
one op on SQLite, through a real `BackgroundWriter`, after a first write of
the rows: what a load of re-registrations costs the writer thread per row.

    python bench/binding_write_cost.py                    # 5 runs of 20,000
    PYTHONPATH=/path/to/other/checkout python bench/binding_write_cost.py   # paired runs
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path and not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(REPO_ROOT))

from pbx.registrar.persist import BindingWriteBehind  # noqa: E402
from pbx.store.bindings import BindingRecord  # noqa: E402
from pbx.store.db import make_engine, migrate  # noqa: E402
from pbx.store.writer import BackgroundWriter  # noqa: E402

NOW: Final = datetime(2026, 12, 7, tzinfo=UTC)


def _record(user: int, at: datetime) -> BindingRecord:
    return BindingRecord(
        aor=f"sip:{user}@pbx.example.com", contact=f"sip:{user}@127.0.0.1:5060", expires_at=at + timedelta(hours=1),
        call_id=f"reg-{user}", cseq=int(at.timestamp()) % 100_000, q=None, transport="udp",
        source_host="127.0.0.1", source_port=5060, connection_id=None, node="bench", user_agent="SIPp",
        instance_id=None, reg_id=None, updated_at=at,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--bindings", type=int, default=20_000, help="refreshed bindings per run (default 20000)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    if min(args.bindings, args.runs) < 1:
        parser.error("--bindings and --runs must be positive")
    per_row: list[float] = []
    with tempfile.TemporaryDirectory(prefix="binding-write-cost-") as directory:
        engine = make_engine(f"sqlite:///{directory}/bindings.sqlite3")
        migrate(engine)
        writer = BackgroundWriter(engine)
        behind = BindingWriteBehind(writer, "bench")
        for run in range(args.runs + 1):  # run 0 writes the rows: not timed
            at = NOW + timedelta(seconds=run)
            for user in range(args.bindings):
                behind.upsert(_record(user, at))
            started = time.process_time()  # the loop thread waits: the CPU is the writer's
            behind.flush()
            if not writer.flush(120.0) or writer.stats().failed:
                raise RuntimeError("the writer did not commit the refreshes")
            if run:
                per_row.append(1e6 * (time.process_time() - started) / args.bindings)
        writer.close(5.0)
        engine.dispose()
    per_row.sort()
    print(f"{args.bindings} refreshed bindings a flush, SQLite: writer CPU µs/row best {per_row[0]:.1f}, "
          f"median {per_row[len(per_row) // 2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
