"""Prompted calls under SIPp load: callers on restricted phones dial abroad,
hear the account code prompt, key the code with RFC 4733 events, and are
put through to a SIPp provider behind the trunk (media then moved to it).

    python bench/account_code_rate.py                     # 20 calls/s for 30 s, SQLite
    python bench/account_code_rate.py --rate 40 --db postgresql+psycopg://...

Prints one table row: calls placed, SIPp's successful and failed calls and
retransmissions, the CDR rows and those ANSWERED with the code's id and
owner, and the server's CPU per call (user + system, its whole process
group, over the run: the prompt, the code look-up, the trunk leg, the
re-INVITE and the CDR). The run is the one tests/test_sipp_account_codes.py
makes at 5 calls/s for 5 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from procfs import cpu_ticks, group_members  # noqa: E402

from tests.test_sipp_account_codes import run_load  # noqa: E402


def group_cpu_seconds(pid: int) -> float:
    return cpu_ticks(group_members(pid)) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=20, help="calls per second (default 20)")
    parser.add_argument("--seconds", type=int, default=30, help="seconds of calls (default 30)")
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--workdir", type=Path, help="keep the dialplan, logs and statistics here")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="codes-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = args.db or f"sqlite:///{workdir / 'pbx.sqlite3'}"
    result = run_load(workdir, db_url, rate=args.rate, seconds=args.seconds, cpu=group_cpu_seconds)
    print("| rate | calls | successful | failed | retransmissions | CDR rows | ANSWERED with the code's owner"
          " | server CPU | CPU per call |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.rate}/s x {args.seconds} s | {result.calls} | {result.successful} | {result.failed}"
          f" | {result.retransmissions} | {result.rows} | {result.with_owner} | {result.cpu_seconds:.2f} s"
          f" | {result.cpu_ms_per_call:.1f} ms |")
    ok = result.failed == 0 and result.successful == result.calls and result.with_owner == result.calls
    print("held" if ok else "NOT held: " + result.context[-1500:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
