"""What one info line costs: the call events of a call through `pbx.log`.

Each "call" logs the five info lines a routed, answered and ended call
writes (call_routed, call_answered, call_ended and the CDR's two), with the
call's context bound as the controller binds it, through the production
configuration (`pbx.log.configure(json=True)`) into a file. The figure is
the CPU time per line on the thread that logs (the event loop's, in the
server), so it says what logging takes from the loop at a given call rate.

    python bench/log_cost.py                      # 5 runs of 20,000 lines
    python bench/log_cost.py --lines 100000 --runs 3 --out /tmp/log.jsonl
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# PYTHONPATH=<another checkout> times that checkout's pbx (paired runs).
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path and not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(REPO_ROOT))

import structlog  # noqa: E402

from pbx import log  # noqa: E402

CALL_LINES = 5


def log_calls(calls: int) -> None:
    """The info lines of `calls` calls, as the call layer writes them."""
    logger = structlog.get_logger("pbx.calls")
    for n in range(calls):
        call_id = f"{n:08x}-5b1c2a@192.0.2.10"
        with structlog.contextvars.bound_contextvars(call_id=call_id):
            logger.info("call_routed", call_id=call_id, uuid="6f1d0c9e", caller="20001", dialled="20002",
                        decision="ring", targets=1)
            logger.info("call_answered", call_id=call_id, uuid="6f1d0c9e", contact="sip:20002@192.0.2.20:5062",
                        setup_ms=12)
            logger.info("cdr_opened", call_id=call_id, caller="20001", dialled="20002")
            logger.info("call_ended", call_id=call_id, uuid="6f1d0c9e", side="caller")
            logger.info("cdr_closed", call_id=call_id, disposition="answered", duration=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20_000, help="info lines per run (default 20000)")
    parser.add_argument("--runs", type=int, default=5, help="runs; the median is quoted (default 5)")
    parser.add_argument("--out", default=os.devnull, help="where the lines go (default: the null device)")
    args = parser.parse_args(argv)
    calls = max(1, args.lines // CALL_LINES)
    with open(args.out, "w", encoding="utf-8") as sink:
        real_stderr, sys.stderr = sys.stderr, sink
        try:
            log.configure(json=True)
            log_calls(10)  # warm-up: first use caches the bound logger
            times = []
            for _ in range(args.runs):
                start = time.process_time()
                log_calls(calls)
                times.append(time.process_time() - start)
            getattr(log, "flush", lambda: None)()  # the old set-up has none: it writes at once
        finally:
            sys.stderr = real_stderr
    per_line = [t / (calls * CALL_LINES) * 1e6 for t in times]
    print(f"| lines per run | runs | median µs CPU per line | min | max | lines/s of one core |")
    print("|---:|---:|---:|---:|---:|---:|")
    median = statistics.median(per_line)
    print(f"| {calls * CALL_LINES} | {args.runs} | {median:.2f} | {min(per_line):.2f} | {max(per_line):.2f} "
          f"| {1e6 / median:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
