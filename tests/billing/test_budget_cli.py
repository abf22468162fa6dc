"""``pbx budget set|show|recount`` on real files and databases (SQLite and
PostgreSQL): a limit written into the dialplan round-trip, a bad amount
refused with the file untouched, spend shown from the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine

from pbx.cli.main import main
from pbx.routing.loader import load_dialplan
from pbx.store.budgets import add_spend
from tests.cdr.conftest import db_url, engine, migrated

__all__ = ["db_url", "engine", "migrated"]

PLAN = """\
domain: pbx.example.com
timezone: Asia/Ho_Chi_Minh
departments:
  sales: {name: Sales}   # the sales team
extensions:
  1001: {name: An, department: sales, password: an-secret-1001, project: expo}
billing: {currency: TWD}
"""


def test_set_writes_the_limit_and_show_reads_the_spend(tmp_path: Path, migrated: Engine, db_url: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    pid = str(tmp_path / "none.pid")
    runner = CliRunner()
    done = runner.invoke(main, ["budget", "set", "department", "sales", "30000.50", "--dialplan", str(path),
                                "--pid-file", pid])
    assert done.exit_code == 0, done.output
    assert "budget department sales: 30,000.50 TWD per month" in done.output
    done = runner.invoke(main, ["budget", "set", "project", "expo", "500", "--dialplan", str(path), "--pid-file", pid])
    assert done.exit_code == 0, done.output
    assert "# the sales team" in path.read_text()
    budgets = load_dialplan(path).budgets.budgets
    assert {key: b.limit for key, b in budgets.items()} == {"department:sales": 3000050, "project:expo": 50000}

    before = path.read_text()
    refused = runner.invoke(main, ["budget", "set", "department", "sales", "1.234", "--dialplan", str(path),
                                   "--pid-file", pid])
    assert refused.exit_code == 2 and "more than 2 decimals" in refused.output
    unknown = runner.invoke(main, ["budget", "set", "department", "salse", "100", "--dialplan", str(path),
                                   "--pid-file", pid])
    assert unknown.exit_code == 1 and "budget for unknown department 'salse'" in unknown.output
    assert path.read_text() == before

    with migrated.begin() as conn:
        add_spend([("department:sales", "2026-12"), ("project:expo", "2026-12")], 45000,
                  datetime(2026, 12, 7, tzinfo=UTC), conn)
    shown = runner.invoke(main, ["budget", "show", "--period", "2026-12", "--db", db_url, "--dialplan", str(path)])
    assert shown.exit_code == 0, shown.output
    lines = [line.split() for line in shown.output.splitlines()]
    assert lines[0] == ["period", "2026-12", "(warn", "at", "80", "%)"]
    assert lines[1] == ["budgets.departments.sales", "450.00", "TWD", "of", "30,000.50", "TWD", "1.5", "%", "ok"]
    assert lines[2] == ["budgets.projects.expo", "450.00", "TWD", "of", "500.00", "TWD", "90.0", "%", "ok"]
