"""bench/cdr_write_cost.py commits calls' CDR reports in fixed batches and
prints the writer's CPU per call; a short run shows it still works."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.server import REPO_ROOT


def test_the_bench_commits_calls_in_batches_and_prints_their_cost() -> None:
    result = subprocess.run(
        [sys.executable, "-P", str(REPO_ROOT / "bench" / "cdr_write_cost.py"), "--calls", "12", "--batch", "5",
         "--runs", "1"],
        capture_output=True, text=True, errors="replace", timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"12 calls, 5 a transaction: writer CPU µs/call best [0-9.]+, median [0-9.]+", result.stdout), \
        result.stdout


def test_split_runs_end_each_call_in_the_next_transaction() -> None:
    result = subprocess.run(
        [sys.executable, "-P", str(REPO_ROOT / "bench" / "cdr_write_cost.py"), "--calls", "12", "--batch", "5",
         "--runs", "1", "--split"],
        capture_output=True, text=True, errors="replace", timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"12 calls, 5 a transaction, ended in the next: writer CPU µs/call best [0-9.]+", result.stdout), \
        result.stdout
