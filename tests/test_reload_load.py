"""Reloading the dialplan under call load (issue 4, "Reload").

SIPp places 50 calls per second through a real `pbx serve` while the test
rewrites the dialplan file three times: a valid change, a broken file, and a
second valid change. Each valid version renames the callers, so every CDR
row tells which plan routed its call (the caller name is taken from the
plan when the INVITE arrives). The test asserts:

- SIPp saw no failed call, and every call has exactly one ANSWERED row;
- the broken file was reported with its place and not used;
- the names switch over once per valid reload and never go back: every
  call after a reload used the new plan, and no call was routed by half of
  one plan and half of another.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Final

import pytest

from pbx.store.db import make_engine
from tests.server import run_server
from tests.test_sipp_calls import (
    Phones,
    assert_no_duplicates,
    cdr_rows,
    dialplan_text,
    kill_group,
    last_statistics,
    sipp_binary,
)

pytestmark = [pytest.mark.e2e, pytest.mark.load]

RATE: Final = 50
SECONDS: Final = 12


def version(text: str, label: str) -> str:
    """The load dialplan with every caller named ``<label> <number>``."""
    return text.replace("name: Load ", f"name: {label} ")


@pytest.mark.timeout(180)
def test_reload_under_load_loses_no_call(tmp_path: Path) -> None:
    base = dialplan_text()
    path = tmp_path / "dialplan.yaml"
    path.write_text(version(base, "First"))
    calls = RATE * SECONDS
    db_url = f"sqlite:///{tmp_path / 'pbx.sqlite3'}"
    with run_server(path, db_url, ["udp:127.0.0.1:0"]) as server:
        phones = Phones(sipp_binary(), tmp_path, server)
        with phones.callee(calls) as callee:
            callers = phones.start_callers(rate=RATE, calls=calls)
            try:
                time.sleep(3)
                path.write_text(version(base, "Second"))
                server.wait_lines("dialplan_reloaded", 1, timeout=10)
                time.sleep(2)
                # A typo: an unknown key on line 1 of the file.
                path.write_text("domian: pbx.example.com\n" + version(base, "Broken").split("\n", 1)[1])
                server.wait_lines("dialplan_reload_rejected", 1, timeout=10)
                time.sleep(2)
                path.write_text(version(base, "Third"))
                server.wait_lines("dialplan_reloaded", 2, timeout=10)
                code = callers.wait(timeout=SECONDS + 90)
            except (subprocess.TimeoutExpired, AssertionError):
                kill_group(callers)
                raise
            callee.wait(timeout=30)
        context = phones.context()
        rejected = server.lines_with("dialplan_reload_rejected")

    stats = last_statistics(tmp_path / "uac-stat.csv")
    assert code == 0, context
    assert int(stats["SuccessfulCall(C)"]) == calls, context
    assert int(stats["FailedCall(C)"]) == 0, context
    assert "dialplan.yaml:1:1" in rejected[0] and "domian" in rejected[0], rejected

    engine = make_engine(db_url)
    try:
        rows = cdr_rows(engine)
    finally:
        engine.dispose()
    assert_no_duplicates(rows)
    assert len(rows) == calls
    assert Counter(row["disposition"] for row in rows) == {"ANSWERED": calls}

    labels = [row["caller_name"].split()[0] for row in sorted(rows, key=lambda r: (r["started_at"], r["id"]))]
    assert "Broken" not in labels, "the broken file must never route a call"
    # First ... Second ... Third, each a single run: a switch per reload, never back.
    runs = [label for index, label in enumerate(labels) if index == 0 or labels[index - 1] != label]
    assert runs == ["First", "Second", "Third"], runs
