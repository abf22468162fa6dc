"""bench/call_inproc.py runs complete calls through the real server and
prints their cost; a short run shows it still works."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.server import REPO_ROOT


def test_the_bench_makes_complete_calls_and_prints_their_cost() -> None:
    result = subprocess.run(
        [sys.executable, "-P", str(REPO_ROOT / "bench" / "call_inproc.py"), "--runs", "2", "--calls", "5",
         "--warmup", "2", "--callers", "3"],
        capture_output=True, text=True, errors="replace", timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 callers, 5 complete calls per run" in result.stdout, result.stdout
    rows = re.findall(r"(?m)^ +[12] \| +([0-9.]+) \| +([0-9.]+) \| +(-?[0-9.]+) \| +-?[0-9.]+ \| +([0-9]+)$",
                      result.stdout)
    assert len(rows) == 2, result.stdout
    # The phones alone (the replay) did some work, and less than the run;
    # the CDR writer committed.
    assert all(0 < float(phones) < float(cpu) and int(batches) > 0 for cpu, phones, _, batches in rows), result.stdout
    assert re.search(r"server µs/call: best -?[0-9.]+, median -?[0-9.]+; of it the loop's thread: best", result.stdout), \
        result.stdout
