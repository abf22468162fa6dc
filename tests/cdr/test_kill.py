"""A CDR whose end was confirmed (on_durable) survives kill -9; the calls
still up at that moment come back as INTERRUPTED at the next start, ended
when they were last known alive (the heartbeat), not at the restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from pbx.cdr.records import Disposition
from pbx.cdr.writer import CDR, CDR_LEGS, INTERRUPTED_REASON, recover_interrupted, whole_seconds
from pbx.store.db import make_engine

CHILD = Path(__file__).with_name("killed_writer.py")
ROOT = Path(__file__).resolve().parents[2]
# Confirmed calls to wait for before pulling the plug.
CONFIRMED_BEFORE_KILL = 300
# How long the child's short call is up, at least, when the plug is pulled.
SHORT_CALL_SECONDS = 1.5
# How long the node stays down: what the old end time (the restart) added.
RESTART_GAP = timedelta(seconds=10)


class ChildOutput:
    """What the child said, in whole lines (a line cut by the kill was never
    fully said): confirmed calls, the short call, committed heartbeats."""

    def __init__(self) -> None:
        self.confirmed: list[str] = []
        self.short: tuple[str, datetime] | None = None
        self.alive: datetime | None = None
        """The last heartbeat known committed."""

    def take(self, line: str) -> None:
        if not line.endswith("\n"):
            return
        word, _, rest = line.strip().partition(" ")
        if word == "short":
            call, _, answered = rest.partition(" ")
            self.short = (call, datetime.fromisoformat(answered))
        elif word == "alive":
            self.alive = datetime.fromisoformat(rest)
        else:
            self.confirmed.append(word)

    def ready(self) -> bool:
        return (len(self.confirmed) >= CONFIRMED_BEFORE_KILL and self.short is not None
                and self.alive is not None
                and self.alive - self.short[1] >= timedelta(seconds=SHORT_CALL_SECONDS))


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
    said = ChildOutput()
    try:
        assert child.stdout is not None
        while not said.ready():
            line = child.stdout.readline()
            assert line, f"child stopped early: {child.stderr.read() if child.stderr else ''}"
            said.take(line)
        killed_at = datetime.now(UTC)
        child.send_signal(signal.SIGKILL)  # mid-stream: more calls are queued
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, err
    for line in out.splitlines(keepends=True):
        said.take(line)
    announced = said.confirmed
    assert len(announced) >= CONFIRMED_BEFORE_KILL

    rows = rows_by_uuid(migrated)
    missing = [call for call in announced if call not in rows]
    assert missing == []
    for call in announced:
        ended_at, disposition, legs = rows[call]
        assert ended_at is not None and disposition is Disposition.ANSWERED and legs == 1
    still_open = [call for call, (ended_at, _, _) in rows.items() if ended_at is None]
    assert len(still_open) >= len(announced) // 10  # every tenth call was left talking

    restart = datetime.now(UTC) + RESTART_GAP
    assert recover_interrupted(migrated, "pbx-k", restart) == len(still_open)
    after = rows_by_uuid(migrated)
    assert {call for call, (_, d, _) in after.items() if d is Disposition.INTERRUPTED} == set(
        still_open
    )
    assert all(after[call][1] is Disposition.ANSWERED for call in announced)
    assert recover_interrupted(migrated, "pbx-k", restart) == 0

    # The short call ends between the last heartbeat the child saw committed
    # and the kill: its billsec is about how long it was up, not that plus
    # the time the node was down.
    assert said.short is not None and said.alive is not None
    short_call, answered = said.short
    with migrated.connect() as conn:
        [row] = conn.execute(select(CDR).where(CDR.c.call_uuid == short_call)).all()
    assert row.disposition is Disposition.INTERRUPTED and row.reason == INTERRUPTED_REASON
    assert said.alive <= row.ended_at <= killed_at
    assert row.billsec == whole_seconds(row.ended_at - answered)
    assert whole_seconds(said.alive - answered) <= row.billsec <= whole_seconds(killed_at - answered)
    assert row.billsec < whole_seconds(restart - answered)

    # Nothing else is broken either: a fresh engine (a restarted PBX) reads
    # the same.
    fresh = make_engine(db_url)
    try:
        assert rows_by_uuid(fresh) == after
    finally:
        fresh.dispose()
