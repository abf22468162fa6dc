"""The node's heartbeat, and the end crash recovery gives an INTERRUPTED row
from it: the last moment the call was known alive, not the restart. On
SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from pbx.cdr.records import Disposition, HangupSide
from pbx.cdr.writer import HEARTBEATS, INTERRUPTED_REASON, CdrWriter, dead_nodes, mark_node_alive, recover_interrupted
from pbx.store.writer import BackgroundWriter

from .conftest import NOW, at, call_row, make_answer, make_end, make_start, run_now


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement run on ``engine`` meanwhile."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def talking(background: BackgroundWriter, *, calls: int) -> CdrWriter:
    """Node pbx-a with ``calls`` answered calls in progress, committed."""
    cdrs = CdrWriter(background, "pbx-a", run_now)
    for _ in range(calls):
        call = uuid.uuid4()
        cdrs.started(make_start(call))
        cdrs.answered(make_answer(call))
    assert background.flush(timeout=30)
    return cdrs


def stamps(engine: Engine) -> dict[str, datetime]:
    with engine.connect() as conn:
        return {row.node: row.alive_at for row in conn.execute(select(HEARTBEATS))}


def test_one_heartbeat_is_one_small_write_however_many_calls(
    migrated: Engine, background: BackgroundWriter
) -> None:
    cdrs = talking(background, calls=200)
    with statements(migrated) as seen:
        cdrs.heartbeat(at(20))
        assert background.flush(timeout=30)
    written = [s for s in seen if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert len(written) == 1 and "cdr_heartbeats" in written[0]
    assert stamps(migrated) == {"pbx-a": at(20)}


def test_no_calls_no_heartbeat(migrated: Engine, background: BackgroundWriter) -> None:
    cdrs = CdrWriter(background, "pbx-a", run_now)
    cdrs.heartbeat(at(5))
    call = uuid.uuid4()
    cdrs.started(make_start(call))
    cdrs.ended(make_end(call, disposition=Disposition.NO_ANSWER, hangup_side=HangupSide.PBX, hangup_status=480))
    cdrs.heartbeat(at(70))
    assert background.flush(timeout=30)
    assert stamps(migrated) == {}


def test_recovery_ends_open_calls_at_the_last_sign_of_life(
    migrated: Engine, background: BackgroundWriter
) -> None:
    cdrs = CdrWriter(background, "pbx-a", run_now)
    elsewhere = CdrWriter(background, "pbx-b", run_now)
    short, ringing, late, other = (uuid.uuid4() for _ in range(4))
    cdrs.started(make_start(short))
    cdrs.answered(make_answer(short, answered_at=at(4.2)))
    cdrs.heartbeat(at(5))
    cdrs.started(make_start(ringing, started_at=at(5.5)))
    cdrs.alive(at(7.0))  # an in-dialog request between beats
    cdrs.started(make_start(late, started_at=at(8)))  # after the last sign of life
    elsewhere.started(make_start(other))
    elsewhere.heartbeat(at(100))
    assert background.flush(timeout=30)
    # The process dies about here; it comes back ten minutes later.
    assert recover_interrupted(migrated, "pbx-a", at(600)) == 3

    row = call_row(migrated, short)
    assert row is not None
    assert (row["disposition"], row["hangup_side"]) == (Disposition.INTERRUPTED, HangupSide.PBX)
    assert row["reason"] == INTERRUPTED_REASON
    assert INTERRUPTED_REASON == "process ended; end time is the last moment the call was known alive"
    assert (row["ended_at"], row["duration"], row["billsec"]) == (at(7.0), 7, 3)  # 2.8 s talked, not 596
    rung = call_row(migrated, ringing)
    assert rung is not None and (rung["ended_at"], rung["duration"], rung["billsec"]) == (at(7.0), 2, 0)
    started_late = call_row(migrated, late)
    assert started_late is not None and (started_late["ended_at"], started_late["duration"]) == (at(8), 0)
    not_ours = call_row(migrated, other)
    assert not_ours is not None and not_ours["ended_at"] is None  # pbx-b's own stamp is no concern


def test_recovery_never_ends_a_call_after_the_restart(
    migrated: Engine, background: BackgroundWriter
) -> None:
    # The clock stepped back across the restart: the stamp is "later" than now.
    cdrs = CdrWriter(background, "pbx-a", run_now)
    call = uuid.uuid4()
    cdrs.started(make_start(call))
    cdrs.answered(make_answer(call, answered_at=at(1)))
    cdrs.heartbeat(at(50))
    assert background.flush(timeout=30)
    assert recover_interrupted(migrated, "pbx-a", at(30)) == 1
    row = call_row(migrated, call)
    assert row is not None and row["ended_at"] == at(30)


def test_in_dialog_signs_are_thinned(migrated: Engine, background: BackgroundWriter) -> None:
    cdrs = talking(background, calls=1)
    with statements(migrated) as seen:
        cdrs.alive(at(10))
        for tenth in range(1, 10):  # a burst of DTMF INFOs within the second
            cdrs.alive(at(10 + tenth / 10))
        cdrs.heartbeat(at(20))
        cdrs.alive(at(20.5))  # just after the heartbeat: nothing new
        cdrs.alive(at(21.5))
        assert background.flush(timeout=30)
    assert sum("cdr_heartbeats" in s for s in seen) == 3  # at 10, the heartbeat at 20, at 21.5
    assert stamps(migrated) == {"pbx-a": at(21.5)}
    with pytest.raises(ValueError):
        cdrs.alive(NOW.replace(tzinfo=None))


def test_a_stamp_never_goes_back(migrated: Engine, background: BackgroundWriter) -> None:
    for when in (at(9), at(5), at(12), at(11)):  # stamps run out of order
        with migrated.begin() as conn:
            mark_node_alive("pbx-a", when, conn)
    assert stamps(migrated) == {"pbx-a": at(12)}


def test_a_survivor_finds_the_nodes_that_died_with_calls_in_progress(
    migrated: Engine, background: BackgroundWriter
) -> None:
    stale = timedelta(seconds=30)
    dead, alive, idle, me = (CdrWriter(background, node, run_now) for node in ("pbx-a", "pbx-b", "pbx-c", "pbx-d"))
    # pbx-a: a call since 0, last beat at 5, then nothing: it died.
    dead.started(make_start(uuid.uuid4(), started_at=at(0)))
    dead.heartbeat(at(5))
    # pbx-b: a call since 0, beating all along.
    alive.started(make_start(uuid.uuid4(), started_at=at(0)))
    alive.heartbeat(at(95))
    # pbx-c: a call from 0 to 10 (its last beat at 5), idle since, a call
    # taken just now (at 90): alive, not yet beaten again.
    idle.started(make_start(first := uuid.uuid4(), started_at=at(0)))
    idle.heartbeat(at(5))
    idle.ended(make_end(first, ended_at=at(10), disposition=Disposition.NO_ANSWER, hangup_side=HangupSide.PBX,
                        hangup_status=480))
    me.started(make_start(uuid.uuid4(), started_at=at(0)))  # the one asking: never itself
    me.heartbeat(at(95))
    idle.started(make_start(uuid.uuid4(), started_at=at(90)))
    assert background.flush(timeout=30)
    assert dead_nodes(migrated, "pbx-d", at(100), stale) == ["pbx-a"]
    assert dead_nodes(migrated, "pbx-a", at(100), stale) == []   # pbx-a itself (restarting) asks: not itself
    assert recover_interrupted(migrated, "pbx-a", at(100)) == 1
    assert dead_nodes(migrated, "pbx-d", at(100), stale) == []   # closed: nothing more to do
