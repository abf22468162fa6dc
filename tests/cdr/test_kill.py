"""A CDR whose end was confirmed (on_durable) survives kill -9; the calls
still up at that moment come back as INTERRUPTED at the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select

from pbx.cdr.records import Disposition
from pbx.cdr.writer import CDR, CDR_LEGS, recover_interrupted
from pbx.store.db import make_engine

CHILD = Path(__file__).with_name("killed_writer.py")
ROOT = Path(__file__).resolve().parents[2]
# Confirmed calls to wait for before pulling the plug.
CONFIRMED_BEFORE_KILL = 300


def rows_by_uuid(engine: Engine) -> dict[str, tuple[object, object, int]]:
    legs = select(CDR_LEGS.c.call_uuid)
    with engine.connect() as conn:
        leg_counts: dict[str, int] = {}
        for (call_uuid,) in conn.execute(legs):
            leg_counts[call_uuid] = leg_counts.get(call_uuid, 0) + 1
        rows = conn.execute(select(CDR.c.call_uuid, CDR.c.ended_at, CDR.c.disposition)).all()
    assert len(rows) == len({row.call_uuid for row in rows})  # no duplicates
    return {
        row.call_uuid: (row.ended_at, row.disposition, leg_counts.get(row.call_uuid, 0))
        for row in rows
    }


def test_confirmed_cdrs_survive_kill_9(db_url: str, migrated: Engine) -> None:
    child = subprocess.Popen(
        [sys.executable, str(CHILD), db_url, "pbx-k"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    confirmed: list[str] = []
    try:
        assert child.stdout is not None
        while len(confirmed) < CONFIRMED_BEFORE_KILL:
            line = child.stdout.readline()
            assert line, f"child stopped early: {child.stderr.read() if child.stderr else ''}"
            confirmed.append(line)
        child.send_signal(signal.SIGKILL)  # mid-stream: more calls are queued
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, err
    # Only whole lines count: a line cut by the kill was never fully said.
    confirmed += out.splitlines(keepends=True)
    announced = [line.strip() for line in confirmed if line.endswith("\n")]
    assert len(announced) >= CONFIRMED_BEFORE_KILL

    rows = rows_by_uuid(migrated)
    missing = [call for call in announced if call not in rows]
    assert missing == []
    for call in announced:
        ended_at, disposition, legs = rows[call]
        assert ended_at is not None and disposition is Disposition.ANSWERED and legs == 1
    still_open = [call for call, (ended_at, _, _) in rows.items() if ended_at is None]
    assert len(still_open) >= len(announced) // 10  # every tenth call was left talking

    restart = datetime.now(UTC)
    assert recover_interrupted(migrated, "pbx-k", restart) == len(still_open)
    after = rows_by_uuid(migrated)
    assert {call for call, (_, d, _) in after.items() if d is Disposition.INTERRUPTED} == set(
        still_open
    )
    assert all(after[call][1] is Disposition.ANSWERED for call in announced)
    assert recover_interrupted(migrated, "pbx-k", restart) == 0

    # Nothing else is broken either: a fresh engine (a restarted PBX) reads
    # the same.
    fresh = make_engine(db_url)
    try:
        assert rows_by_uuid(fresh) == after
    finally:
        fresh.dispose()
