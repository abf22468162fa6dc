"""CdrWriter and crash recovery against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, String, bindparam, insert, select, text
from sqlalchemy.exc import IntegrityError
from structlog.testing import capture_logs

from pbx.cdr.records import CallRouted, Disposition, HangupSide, LegAttempt, LegResult
from pbx.cdr.writer import (
    CDR,
    CDR_LEGS,
    INTERRUPTED_REASON,
    CdrWriter,
    UnknownCall,
    _upserts,
    recover_interrupted,
    upsert_calls,
)
from pbx.store.db import make_engine
from pbx.store.models import UtcDateTime
from pbx.store.writer import BackgroundWriter

from .conftest import (
    NOW,
    Gate,
    all_calls,
    at,
    call_row,
    leg_rows,
    make_answer,
    make_end,
    make_start,
    run_now,
    two_legs,
)


def test_answered_call_makes_one_complete_row(
    migrated: Engine, background: BackgroundWriter
) -> None:
    cdrs = CdrWriter(background, "pbx-a", run_now)
    call = uuid.uuid4()
    cdrs.started(make_start(call))
    cdrs.routed(
        CallRouted(call_uuid=call, rule="internal", call_class="internal", hunt_group="sales")
    )
    cdrs.answered(make_answer(call, answered_by="1002"))
    cdrs.ended(make_end(call, cost=Decimal("0.012500")), two_legs())
    assert cdrs.open_calls == 0
    assert background.flush(timeout=30)

    [row] = all_calls(migrated)
    assert row["call_uuid"] == str(call)
    assert row["node"] == "pbx-a"
    assert row["call_id"] == "a84b4c76e66710@192.0.2.4"
    assert (row["started_at"], row["answered_at"], row["ended_at"]) == (NOW, at(4.2), at(65.7))
    # 65.7 s of call, 61.5 s of it answered: rounded half up.
    assert (row["duration"], row["billsec"]) == (66, 62)
    assert (row["caller_number"], row["caller_name"]) == ("1001", "Nguyễn Thị Minh Khai")
    assert row["caller_department"] == "Kế toán"
    assert (row["dialed_number"], row["destination"]) == ("1002", "1002")
    assert row["disposition"] is Disposition.ANSWERED
    assert (row["hangup_side"], row["hangup_status"]) == (HangupSide.CALLER, None)
    assert (row["rule"], row["call_class"], row["hunt_group"]) == ("internal", "internal", "sales")
    assert row["answered_by"] == "1002"
    assert row["cost"] == Decimal("0.012500")
    assert row["account_code"] is None and row["trunk"] is None

    legs = leg_rows(migrated, call)
    assert [(leg["attempt"], leg["result"], leg["status"]) for leg in legs] == [
        (1, LegResult.ANSWERED, 200),
        (2, LegResult.CANCELLED, 487),
    ]
    assert legs[0]["contact"] == "sip:1002@192.0.2.20:5060"
    assert (legs[0]["answered_at"], legs[1]["answered_at"]) == (at(4.2), None)
    assert legs[1]["ended_at"] == at(4.3)
    assert legs[1]["reason"] == 'SIP;cause=200;text="Call completed elsewhere"'


def test_routing_given_with_the_start_is_written_with_it(
    migrated: Engine, background: BackgroundWriter
) -> None:
    cdrs = CdrWriter(background, "pbx-a", run_now)
    call = uuid.uuid4()
    cdrs.started(make_start(call), CallRouted(call_uuid=call, rule="internal", call_class="internal"))
    assert background.flush(timeout=30)
    row = call_row(migrated, call)
    assert row is not None
    assert (row["rule"], row["call_class"], row["ended_at"]) == ("internal", "internal", None)
    assert background.stats().submitted == 1  # one write for both reports

    with pytest.raises(ValueError):
        cdrs.started(make_start(uuid.uuid4()), CallRouted(call_uuid=call, rule="internal"))


def test_busy_call_has_no_billable_time(migrated: Engine, background: BackgroundWriter) -> None:
    cdrs = CdrWriter(background, "pbx-a", run_now)
    call = uuid.uuid4()
    cdrs.started(make_start(call, dialed_number="1003"))
    busy = LegAttempt(
        target="1003",
        contact="sip:1003@192.0.2.30",
        started_at=at(0.05),
        ended_at=at(0.4),
        result=LegResult.BUSY,
        status=486,
    )
    cdrs.ended(
        make_end(
            call,
            ended_at=at(0.4),
            disposition=Disposition.BUSY,
            hangup_side=HangupSide.CALLEE,
            hangup_status=486,
            destination="1003",
        ),
        [busy],
    )
    assert background.flush(timeout=30)
    row = call_row(migrated, call)
    assert row is not None
    assert (row["disposition"], row["hangup_status"], row["hangup_side"]) == (
        Disposition.BUSY,
        486,
        HangupSide.CALLEE,
    )
    assert (row["answered_at"], row["duration"], row["billsec"]) == (None, 0, 0)
    assert row["destination"] == "1003"
    assert [leg["result"] for leg in leg_rows(migrated, call)] == [LegResult.BUSY]


@pytest.mark.parametrize("grouping", ["one_transaction", "one_each"])
def test_any_grouping_of_the_writes_gives_the_same_row(
    migrated: Engine, grouping: str
) -> None:
    background = BackgroundWriter(migrated)
    cdrs = CdrWriter(background, "pbx-a", run_now)
    call = uuid.uuid4()
    gate = Gate()
    if grouping == "one_transaction":
        background.submit(gate)
        assert gate.entered.wait(timeout=10)
    cdrs.started(make_start(call))
    if grouping == "one_each":
        assert background.flush(timeout=30)
        assert call_row(migrated, call) is not None  # open row: in progress
    cdrs.answered(make_answer(call))
    if grouping == "one_each":
        assert background.flush(timeout=30)
    cdrs.ended(make_end(call), two_legs())
    gate.release.set()
    assert background.close(timeout=30)
    stats = background.stats()
    assert stats.failed == 0
    assert stats.batches == (2 if grouping == "one_transaction" else 3)
    [row] = all_calls(migrated)
    assert (row["duration"], row["billsec"], row["disposition"]) == (66, 62, Disposition.ANSWERED)
    assert len(leg_rows(migrated, call)) == 2


def _write_calls(cdrs: CdrWriter, calls: list[uuid.UUID]) -> None:
    """Reports of several calls, interleaved as a busy PBX makes them: a
    routing report changes a value, later reports leave fields None."""
    for n, call in enumerate(calls):
        cdrs.started(make_start(call, call_id=f"call-{n}@192.0.2.4"))
        cdrs.routed(CallRouted(call_uuid=call, rule="internal", trunk="first"))
        cdrs.routed(CallRouted(call_uuid=call, trunk="second", call_class="internal"))
    for call in calls[1:]:
        cdrs.answered(make_answer(call))
    cdrs.ended(make_end(calls[0], disposition=Disposition.BUSY, hangup_side=HangupSide.CALLEE,
                        hangup_status=486, destination="1003"))
    for call in calls[1:]:
        cdrs.ended(make_end(call), two_legs())


def _comparable(engine: Engine, calls: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    rows = []
    for call in calls:
        row = call_row(engine, call)
        assert row is not None
        del row["id"], row["call_uuid"]
        legs = [{k: v for k, v in leg.items() if k not in ("id", "call_uuid")} for leg in leg_rows(engine, call)]
        rows.append((row, legs))
    return rows


def test_calls_sharing_a_batch_get_the_rows_they_would_get_alone(migrated: Engine) -> None:
    together, alone = [uuid.uuid4() for _ in range(3)], [uuid.uuid4() for _ in range(3)]
    background = BackgroundWriter(migrated)
    cdrs = CdrWriter(background, "pbx-a", run_now)
    gate = Gate()
    background.submit(gate)
    assert gate.entered.wait(timeout=10)
    _write_calls(cdrs, together)  # all queued behind the gate: one transaction
    gate.release.set()
    assert background.flush(timeout=30)
    batches = background.stats().batches
    assert batches == 2

    one_each = BackgroundWriter(migrated, max_batch=1)
    _write_calls(CdrWriter(one_each, "pbx-a", run_now), alone)
    assert one_each.close(timeout=30)
    assert background.close(timeout=30)
    assert one_each.stats().batches == 3 * 3 + 2 + 3  # every report its own transaction
    assert background.stats().failed == one_each.stats().failed == 0
    assert _comparable(migrated, together) == _comparable(migrated, alone)
    [busy, *answered] = _comparable(migrated, together)
    assert (busy[0]["trunk"], busy[0]["rule"], busy[0]["call_class"]) == ("second", "internal", "internal")
    assert (busy[0]["disposition"], busy[0]["hangup_status"], busy[1]) == (Disposition.BUSY, 486, [])
    assert all(row["billsec"] == 62 and len(legs) == 2 for row, legs in answered)


def test_a_retried_write_makes_no_duplicate(migrated: Engine, background: BackgroundWriter) -> None:
    call = uuid.uuid4()
    first = CdrWriter(background, "pbx-a", run_now)
    first.started(make_start(call))
    first.answered(make_answer(call))
    first.ended(make_end(call), two_legs())
    assert background.flush(timeout=30)
    before = all_calls(migrated)
    legs_before = leg_rows(migrated, call)

    # The same reports written again (as a retry would): still one row,
    # same id, same two legs.
    again = CdrWriter(background, "pbx-a", run_now)
    again.started(make_start(call))
    again.answered(make_answer(call))
    again.ended(make_end(call), two_legs())
    # A stale "started" arriving after the end must not reopen the call.
    late = CdrWriter(background, "pbx-a", run_now)
    late.started(make_start(call))
    assert background.flush(timeout=30)
    assert all_calls(migrated) == before
    assert leg_rows(migrated, call) == legs_before
    assert background.stats().failed == 0
    with migrated.connect() as conn:
        assert len(conn.execute(select(CDR_LEGS.c.id)).all()) == 2


def test_on_durable_fires_only_once_the_row_is_committed(
    db_url: str, migrated: Engine, background: BackgroundWriter
) -> None:
    cdrs = CdrWriter(background, "pbx-a", run_now)
    call = uuid.uuid4()
    seen: list[tuple[dict[str, Any] | None, int]] = []
    fired = threading.Event()

    def on_durable() -> None:
        # What another process would see at this moment: a new engine, new
        # connections, nothing shared with the writer.
        fresh = make_engine(db_url)
        try:
            seen.append((call_row(fresh, call), len(leg_rows(fresh, call))))
        finally:
            fresh.dispose()
        fired.set()

    gate = Gate()
    background.submit(gate)
    assert gate.entered.wait(timeout=10)
    cdrs.started(make_start(call))
    cdrs.answered(make_answer(call))
    cdrs.ended(make_end(call), two_legs(), on_durable)
    assert not fired.wait(timeout=0.2)  # held behind the gate: not committed, not told
    gate.release.set()
    assert fired.wait(timeout=30)
    [(row, legs)] = seen
    assert row is not None
    assert row["ended_at"] == at(65.7) and row["disposition"] is Disposition.ANSWERED
    assert legs == 2


def test_on_durable_is_handed_to_the_event_loop(
    migrated: Engine, background: BackgroundWriter
) -> None:
    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        cdrs = CdrWriter(background, "pbx-a", loop.call_soon_threadsafe)
        done: asyncio.Future[int] = loop.create_future()
        call = uuid.uuid4()
        cdrs.started(make_start(call))
        cdrs.ended(
            make_end(call, disposition=Disposition.CANCELLED, hangup_status=487),
            [],
            lambda: done.set_result(threading.get_ident()),
        )
        return await asyncio.wait_for(done, timeout=30), threading.get_ident()

    callback_thread, loop_thread = asyncio.run(scenario())
    assert callback_thread == loop_thread


def test_on_durable_still_fires_when_the_writer_is_closed(
    migrated: Engine, background: BackgroundWriter
) -> None:
    cdrs = CdrWriter(background, "pbx-a", run_now)
    call = uuid.uuid4()
    cdrs.started(make_start(call))
    assert background.close(timeout=30)
    fired: list[bool] = []
    with capture_logs() as logs:
        cdrs.ended(make_end(call, disposition=Disposition.CANCELLED), [], lambda: fired.append(True))
    assert fired == [True]
    assert {"event": "cdr_lost", "call_uuid": str(call), "reason": "writer_closed",
            "log_level": "error"} in logs
    row = call_row(migrated, call)
    assert row is not None and row["ended_at"] is None  # the start made it, the end did not


def test_a_clock_stepping_back_does_not_lose_the_row(
    migrated: Engine, background: BackgroundWriter
) -> None:
    cdrs = CdrWriter(background, "pbx-a", run_now)
    call = uuid.uuid4()
    cdrs.started(make_start(call))
    with capture_logs() as logs:
        cdrs.answered(make_answer(call, answered_at=at(-2)))
        cdrs.ended(make_end(call, ended_at=at(-5)))
    assert background.flush(timeout=30)
    assert background.stats().failed == 0
    row = call_row(migrated, call)
    assert row is not None
    assert row["answered_at"] == row["ended_at"] == NOW
    assert (row["duration"], row["billsec"]) == (0, 0)
    assert [e["event"] for e in logs] == ["cdr_clock_went_back"]


def test_hostile_text_is_stored_not_refused(migrated: Engine, background: BackgroundWriter) -> None:
    # Display names and Reason text come from the network.  PostgreSQL
    # refuses NUL, over-long varchar and unencodable text; the row must
    # still be written.
    cdrs = CdrWriter(background, "pbx-a", run_now)
    call = uuid.uuid4()
    name = "Trần\x00Hưng Đạo \udcff " + "龍" * 400
    cdrs.started(make_start(call, caller_name=name, call_id="x" * 1000))
    cdrs.ended(
        make_end(call, disposition=Disposition.FAILED, hangup_side=HangupSide.PBX,
                 hangup_status=500, reason="r" * 5000)
    )
    assert background.flush(timeout=30)
    assert background.stats().failed == 0
    row = call_row(migrated, call)
    assert row is not None
    assert row["caller_name"].startswith("Trần\ufffdHưng Đạo ? 龍龍")
    assert len(row["caller_name"]) == 255
    assert (len(row["call_id"]), len(row["reason"])) == (255, 255)


def test_caller_bugs_are_refused_before_anything_is_queued(
    background: BackgroundWriter,
) -> None:
    cdrs = CdrWriter(background, "pbx-a", run_now)
    call = uuid.uuid4()
    with pytest.raises(UnknownCall):
        cdrs.answered(make_answer(call))
    cdrs.started(make_start(call))
    with pytest.raises(ValueError, match="already started"):
        cdrs.started(make_start(call))
    with pytest.raises(ValueError, match="never answered"):
        cdrs.ended(make_end(call, disposition=Disposition.ANSWERED))
    assert cdrs.open_calls == 1  # still open: the controller can end it properly
    cdrs.ended(make_end(call, disposition=Disposition.NO_ANSWER, hangup_status=480))
    with pytest.raises(UnknownCall):
        cdrs.ended(make_end(call, disposition=Disposition.NO_ANSWER))
    with pytest.raises(ValueError):
        CdrWriter(background, "", run_now)


def test_recovery_closes_open_rows_of_this_node_once(
    migrated: Engine, background: BackgroundWriter
) -> None:
    node_a = CdrWriter(background, "pbx-a", run_now)
    node_b = CdrWriter(background, "pbx-b", run_now)
    ringing, talking, finished, elsewhere = (uuid.uuid4() for _ in range(4))
    node_a.started(make_start(ringing))
    node_a.started(make_start(talking, started_at=at(10)))
    node_a.answered(make_answer(talking, answered_at=at(12)))
    node_a.started(make_start(finished))
    node_a.ended(make_end(finished, ended_at=at(30), disposition=Disposition.NO_ANSWER,
                          hangup_side=HangupSide.PBX, hangup_status=480))
    node_b.started(make_start(elsewhere))
    assert background.flush(timeout=30)
    finished_before = call_row(migrated, finished)

    restarted = at(3600)
    with capture_logs() as logs:
        assert recover_interrupted(migrated, "pbx-a", restarted) == 2
    assert sorted(e["call_uuid"] for e in logs if e["event"] == "cdr_interrupted") == sorted(
        [str(ringing), str(talking)]
    )
    # Never stamped alive: they end when last known in progress, their start
    # or answer, not at the restart (tests/cdr/test_last_alive.py has stamps).
    for call, ended, duration, billsec in ((ringing, NOW, 0, 0), (talking, at(12), 2, 0)):
        row = call_row(migrated, call)
        assert row is not None
        assert row["disposition"] is Disposition.INTERRUPTED
        assert row["ended_at"] == ended
        assert (row["hangup_side"], row["reason"]) == (HangupSide.PBX, INTERRUPTED_REASON)
        assert (row["duration"], row["billsec"]) == (duration, billsec)
    assert call_row(migrated, finished) == finished_before
    other = call_row(migrated, elsewhere)
    assert other is not None and other["ended_at"] is None  # pbx-b's, not ours

    snapshot = all_calls(migrated)
    assert recover_interrupted(migrated, "pbx-a", restarted + timedelta(hours=1)) == 0
    assert all_calls(migrated) == snapshot


def test_recovery_refuses_naive_time(migrated: Engine) -> None:
    with pytest.raises(ValueError):
        recover_interrupted(migrated, "pbx-a", NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("assignment", "constraint"),
    [
        ("billsec = 70", "billsec"),  # more than the duration
        (
            "answered_at = NULL, billsec = 0, disposition = 'NO_ANSWER', ended_at = :before",
            "ended_after_start",
        ),
        ("disposition = 'LOST'", "disposition"),
        ("hangup_side = 'nobody'", "hangup_side"),
        ("duration = NULL", "ended_complete"),
        ("hangup_status = 42", "hangup_status"),
        ("answered_at = NULL, billsec = 0", "answered_has_time"),
    ],
)
def test_the_database_refuses_inconsistent_rows(
    migrated: Engine, assignment: str, constraint: str
) -> None:
    call = str(uuid.uuid4())
    row: dict[str, Any] = {
        "call_uuid": call,
        "node": "pbx-a",
        "call_id": "c@h",
        "started_at": NOW,
        "answered_at": at(1),
        "ended_at": at(61),
        "duration": 61,
        "billsec": 60,
        "caller_number": "1001",
        "dialed_number": "1002",
        "disposition": Disposition.ANSWERED,
        "hangup_side": HangupSide.CALLER,
    }
    with migrated.begin() as conn:
        conn.execute(insert(CDR).values(row))  # the valid row goes in
    # Plain SQL, so that only the database stands in the way.
    statement = text(f"UPDATE cdr SET {assignment} WHERE call_uuid = :call")
    if ":before" in assignment:
        statement = statement.bindparams(bindparam("before", type_=UtcDateTime()))
    with pytest.raises(IntegrityError, match=rf"ck_cdr_{constraint}\b"):
        with migrated.begin() as conn:
            conn.execute(statement, {"call": call, "before": at(-1)})


def test_rows_written_at_the_driver_level_match_sqlalchemys_own(migrated: Engine) -> None:
    # `upsert_calls` runs its compiled statements with the driver's
    # executemany and the columns' own bind processors; SQLAlchemy's
    # Connection.execute of the same statement must store the same row.
    values: dict[str, Any] = {}
    for column in CDR.columns:
        if column.name == "id":
            continue
        python_type = column.type.python_type
        if isinstance(column.type, String):
            values[column.name] = f"{column.name} Trần"[: column.type.length]
        elif python_type is int:
            values[column.name] = 7
        elif python_type is Decimal:
            values[column.name] = Decimal("1.250000")
    values |= {"started_at": NOW, "answered_at": at(1), "ended_at": at(65), "duration": 65, "billsec": 64,
               "disposition": Disposition.ANSWERED, "hangup_side": HangupSide.CALLER, "hangup_status": 200}
    leg = {"attempt": 1, "target": "1002", "contact": "sip:1002@127.0.0.1:5072", "call_id": "leg-1",
           "started_at": NOW, "answered_at": at(1), "ended_at": at(65), "result": LegResult.ANSWERED,
           "status": 200, "reason": "bye"}
    ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    with migrated.begin() as conn:
        upsert_calls(conn, [({**values, "call_uuid": ours}, [{**leg, "call_uuid": ours}])])
        call_statement, leg_statement = _upserts(conn.dialect.name)
        conn.execute(call_statement, [{**values, "call_uuid": theirs}])
        conn.execute(leg_statement, [{**leg, "call_uuid": theirs}])
    with migrated.connect() as conn:
        raw = {row.call_uuid: row._asdict() for row in conn.execute(select(CDR))}
        raw_legs = {row.call_uuid: row._asdict() for row in conn.execute(select(CDR_LEGS))}
    for table in (raw, raw_legs):
        mine, reference = table[ours], table[theirs]
        for row in (mine, reference):
            del row["id"], row["call_uuid"]
        assert mine == reference
    assert raw[ours]["caller_name"] == "caller_name Trần" and raw[ours]["cost"] == Decimal("1.25")
