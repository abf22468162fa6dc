"""The small bench scripts still run: the binding write cost on SQLite, and
the grouping of a py-spy profile (on a recording made up here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.server import REPO_ROOT


def test_binding_write_cost_refreshes_bindings_and_prints_their_cost() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "binding_write_cost.py"), "--bindings", "200", "--runs", "2"],
        capture_output=True, text=True, errors="replace", timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"200 refreshed bindings a flush, SQLite: writer CPU µs/row best [0-9.]+", result.stdout), \
        result.stdout


def test_profile_groups_leaves_idle_samples_out_and_groups_by_the_deepest_module(tmp_path: Path) -> None:
    loop = "run (uvloop/__init__.py:105);Runner.run (asyncio/runners.py:118)"
    raw = tmp_path / "server.raw"
    raw.write_text("\n".join([
        f"{loop} 50",  # the loop waiting in its poll: idle
        f"{loop};Server._on_data (pbx/server/app.py:601);parse_message (pbx/sip/parser.py:52) 30",
        f"{loop};Server._on_data (pbx/server/app.py:601);Registrar.handle (pbx/registrar/registrar.py:67);"
        "parse_credentials (pbx/sip/digest.py:327) 10",
        f"{loop};Server._on_data (pbx/server/app.py:601) 5",
        "Thread._bootstrap (threading.py:995);BackgroundWriter._run (pbx/store/writer.py:270);"
        "DefaultDialect.do_executemany (sqlalchemy/engine/default.py:921) 5",
        "Thread._bootstrap (threading.py:995);BackgroundWriter._run (pbx/store/writer.py:270);"
        "Condition.wait (threading.py:327) 100",  # the writer waiting: idle
    ]) + "\n", encoding="utf-8")
    result = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "profile_groups.py"), str(raw)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = dict(re.findall(r"^\| ([^|]+?) \| ([0-9.]+) % \|$", result.stdout, re.MULTILINE))
    assert result.stdout.startswith("200 samples, 75 % idle; shares of the 50 busy ones")
    assert rows["SIP parsing"] == "60.0"
    assert rows["digest authentication"] == "20.0"  # the deepest module, not the registrar calling it
    assert rows["server glue"] == "10.0"
    assert rows["the database writer's thread"] == "10.0"
