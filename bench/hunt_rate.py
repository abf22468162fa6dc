"""A ring_all hunt group under SIPp load: calls per second into group 600
of three SIPp members that all answer at once (every call a race won by one
200, the others cancelled with "Call completed elsewhere").

    python bench/hunt_rate.py                       # 50 calls/s for 30 s, SQLite
    python bench/hunt_rate.py --rate 80 --seconds 30 --db postgresql+psycopg://...

Prints one table row: calls placed, SIPp's successful and failed calls and
retransmissions, the CDR rows (ANSWERED, of the group, with the member who
answered) and the leg rows per call. The run is the one tests/test_sipp_hunt.py
makes at 10 calls/s for 5 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.test_sipp_hunt import MEMBERS, run_load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=50, help="calls per second (default 50)")
    parser.add_argument("--seconds", type=int, default=30, help="seconds of calls (default 30)")
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--workdir", type=Path, help="keep the dialplan, logs and statistics here")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hunt-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = args.db or f"sqlite:///{workdir / 'pbx.sqlite3'}"
    result = run_load(workdir, db_url, rate=args.rate, seconds=args.seconds)
    legs = ", ".join(f"{count} calls x {size} legs" for size, count in sorted(result.legs_per_call.items()))
    spread = ", ".join(f"{m}: {result.answered_by.get(m, 0)}" for m in MEMBERS)
    print("| rate | calls | successful | failed | retransmissions | CDR rows | ANSWERED of the group"
          " | with answered_by | legs | answered by |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.rate}/s x {args.seconds} s | {result.calls} | {result.successful} | {result.failed}"
          f" | {result.retransmissions} | {result.rows} | {result.answered_rows} | {result.with_answered_by}"
          f" | {legs} | {spread} |")
    ok = (result.failed == 0 and result.successful == result.calls and result.answered_rows == result.calls
          and result.with_answered_by == result.calls)
    print("held" if ok else "NOT held: " + result.context[-1500:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
