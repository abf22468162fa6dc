"""`pbx ext forward`: shows and sets an extension's forwards in the store,
refuses a target the extension may not dial."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pbx.cli.main import main
from pbx.store.db import make_engine, migrate
from pbx.store.features import FeatureStore

PLAN = """\
domain: pbx.example.com
number_plans:
  vn:
    country_code: "84"
    national_prefix: "0"
    entries:
      - {pattern: "0[35789] XXXX XXXX", class: mobile, name: Mobile}
departments:
  ops: {name: Ops}
extensions:
  2002: {name: Bob, department: ops, password: bob-secret-2002, forward: {no_answer: "2003"}}
  2003: {name: Carol, department: ops, password: carol-secret-2003}
"""


def test_set_show_and_refuse(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    url = f"sqlite:///{tmp_path / 'pbx.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)
    runner = CliRunner()
    base = ["ext", "forward", "--dialplan", str(plan), "--db", url]
    shown = runner.invoke(main, [*base, "2002"])
    assert shown.exit_code == 0, shown.output
    assert "no_answer -> 2003" in shown.output and "always -> off" in shown.output
    set_ = runner.invoke(main, [*base, "2002", "--always", "2003", "--dnd", "on"])
    assert set_.exit_code == 0, set_.output
    record = FeatureStore(engine).get("2002")
    assert record is not None and record.forward.always == "2003" and record.dnd
    barred = runner.invoke(main, [*base, "2002", "--busy", "0912345678"])
    assert barred.exit_code == 1 and "may not dial 0912345678" in barred.output
    assert runner.invoke(main, [*base, "2002", "--always", "2002"]).exit_code == 1
    assert runner.invoke(main, [*base, "9999"]).exit_code == 1
    engine.dispose()
