"""The database writer's CPU per call for the CDR, at a fixed batch size.

Each call's reports are made as the call layer makes them (its start with
its routing, its answer, its end with one leg) through ``CdrWriter``, and
``--batch`` calls' ops are committed in one transaction on SQLite, on this
thread: the work the writer thread does for calls, without the timing that
decides its batches in a live server (``call_inproc.py`` measures those).

    python bench/cdr_write_cost.py                        # 6 calls a transaction
    python bench/cdr_write_cost.py --batch 50 --calls 5000
    python bench/cdr_write_cost.py --split       # each call ended in the next transaction, as live
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out --zero-before=os_getppid \\
        --dump-before=os_getpgrp python -P bench/cdr_write_cost.py --callgrind
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from pbx.cdr.records import (CallAnswer, CallEnd, CallRouted, CallStart, Disposition,  # noqa: E402
                             HangupSide, LegAttempt, LegResult)
from pbx.cdr.writer import CdrWriter  # noqa: E402
from pbx.store.db import make_engine, migrate  # noqa: E402
from pbx.store.writer import BackgroundWriter, Op, OnCommit  # noqa: E402

NOW: Final = datetime(2026, 12, 7, tzinfo=timezone.utc)


class Bench:
    """A ``CdrWriter`` whose ops are kept, to be committed here in batches."""

    def __init__(self, directory: Path) -> None:
        engine = make_engine(f"sqlite:///{directory / 'cdr.sqlite3'}")
        migrate(engine)
        self.writer = BackgroundWriter(engine)
        self.ops: list[Op] = []
        self.cdrs = CdrWriter(_Keep(self.ops), "bench", notify=lambda callback: None)  # type: ignore[arg-type]
        # Older commits report the routing apart from the start.
        self.started_with_routing = len(inspect.signature(self.cdrs.started).parameters) > 1
        self.number = 0
        self.ends: list[Callable[[], None]] = []

    def call(self) -> None:
        n, call = self.number, uuid.uuid4()
        self.number += 1
        start = CallStart(call_uuid=call, call_id=f"{n}-4242@127.0.0.1", started_at=NOW, caller_number="20001",
                          caller_name="Caller 20001", dialed_number="20000", caller_department="bench")
        routing = CallRouted(call_uuid=call, rule="extensions.20000", call_class="internal")
        if self.started_with_routing:
            self.cdrs.started(start, routing)
        else:
            self.cdrs.started(start)
            self.cdrs.routed(routing)
        self.cdrs.answered(CallAnswer(call_uuid=call, answered_at=NOW + timedelta(seconds=1), destination="20000"))
        self.ends.append(partial(self._end, call, n))

    def _end(self, call: uuid.UUID, n: int) -> None:
        self.cdrs.ended(
            CallEnd(call_uuid=call, ended_at=NOW + timedelta(seconds=2), disposition=Disposition.ANSWERED,
                    hangup_side=HangupSide.CALLER, reason="bye"),
            [LegAttempt(target="20000", contact="sip:20000@127.0.0.1:5072", started_at=NOW,
                        ended_at=NOW + timedelta(seconds=2), result=LegResult.ANSWERED, status=200,
                        call_id=f"{n}-leg", answered_at=NOW + timedelta(seconds=1))])

    def run(self, calls: int, batch: int, split: bool = False) -> float:
        """CPU seconds the commits of ``calls`` calls took (not making their
        reports). ``split``: a batch's calls are begun (start, routing,
        answer) in one transaction and ended in the next, as calls that
        last longer than a batch are in a live server: their end is then
        an update of the row the start inserted."""
        spent = 0.0
        for first in range(0, calls, batch):
            for _ in range(min(batch, calls - first)):
                self.call()
                if not split:
                    self.ends.pop()()
            spent += self._commit()
            for end in self.ends:
                end()
            self.ends.clear()
            if split:
                spent += self._commit()
        return spent

    def _commit(self) -> float:
        ops = self.ops[:]
        self.ops.clear()
        started = time.process_time()
        if self.writer._commit(ops) is not None:
            raise RuntimeError("a batch did not commit")
        return time.process_time() - started


class _Keep:
    """In the place of the ``BackgroundWriter``: keeps what is submitted."""

    def __init__(self, ops: list[Op]) -> None:
        self.ops = ops

    def submit(self, op: Op, on_commit: OnCommit | None = None) -> None:
        self.ops.append(op)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--batch", type=int, default=6, help="calls per transaction (default 6)")
    parser.add_argument("--calls", type=int, default=3000, help="calls per run (default 3000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--split", action="store_true",
                        help="end each batch's calls in the next transaction (their end updates the row)")
    parser.add_argument("--callgrind", action="store_true",
                        help="one more run between the marks callgrind --zero-before=os_getppid and "
                             "--dump-before=os_getpgrp count")
    args = parser.parse_args(argv)
    if min(args.batch, args.calls, args.runs) < 1:
        parser.error("--batch, --calls and --runs must be positive")
    with tempfile.TemporaryDirectory(prefix="cdr-write-cost-") as directory:
        bench = Bench(Path(directory))
        bench.run(min(300, args.calls), args.batch, args.split)  # warm-up: statement cache, the connection
        if args.callgrind:
            os.getppid()
            bench.run(args.calls, args.batch, args.split)
            os.getpgrp()
        spent = [bench.run(args.calls, args.batch, args.split) for _ in range(args.runs)]
        bench.writer.close(5.0)
    per_call = sorted(1e6 * seconds / args.calls for seconds in spent)
    how = ", ended in the next" if args.split else ""
    print(f"{args.calls} calls, {args.batch} a transaction{how}: writer CPU µs/call best {per_call[0]:.1f}, "
          f"median {per_call[len(per_call) // 2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
