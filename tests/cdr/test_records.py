"""The call reports check themselves; pure helpers (no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from pbx.cdr.records import (
    CallAnswer,
    CallEnd,
    CallRouted,
    CallStart,
    Disposition,
    HangupSide,
    LegAttempt,
    LegResult,
    disposition_for_status,
    new_call_uuid,
)
from pbx.cdr.writer import whole_seconds

NOW = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)
CALL = uuid.UUID("0b3f4c1e-8f0a-4d3e-9c55-2d6f0f6f1a01")


def start(**overrides: Any) -> CallStart:
    fields: dict[str, Any] = {
        "call_uuid": CALL,
        "call_id": "a@b",
        "started_at": NOW,
        "caller_number": "1001",
        "caller_name": None,
        "dialed_number": "1002",
    }
    fields.update(overrides)
    return CallStart(**fields)


def leg(**overrides: Any) -> LegAttempt:
    fields: dict[str, Any] = {
        "target": "1002",
        "contact": "sip:1002@192.0.2.1",
        "started_at": NOW,
        "ended_at": NOW + timedelta(seconds=3),
        "result": LegResult.NO_ANSWER,
    }
    fields.update(overrides)
    return LegAttempt(**fields)


def test_valid_reports_are_accepted() -> None:
    assert start().caller_number == "1001"
    assert CallRouted(call_uuid=CALL, rule="mobile").rule == "mobile"
    assert CallAnswer(call_uuid=CALL, answered_at=NOW, destination="1002").answered_by is None
    end = CallEnd(
        call_uuid=CALL,
        ended_at=NOW,
        disposition=Disposition.BUSY,
        hangup_side=HangupSide.CALLEE,
        hangup_status=486,
        cost=Decimal("0.10"),
    )
    assert end.hangup_status == 486
    assert leg(result=LegResult.ANSWERED, answered_at=NOW, status=200).status == 200
    assert new_call_uuid() != new_call_uuid()


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: start(started_at=NOW.replace(tzinfo=None)), "timezone-aware"),
        (lambda: start(started_at="2025-03-30"), "must be a datetime"),
        (lambda: start(call_uuid=str(CALL)), "uuid.UUID"),
        (lambda: start(call_id=""), "call_id"),
        (lambda: start(caller_number=""), "caller_number"),
        (lambda: start(dialed_number=""), "dialed_number"),
        (lambda: CallAnswer(call_uuid=CALL, answered_at=NOW, destination=""), "destination"),
        (
            lambda: CallEnd(
                call_uuid=CALL,
                ended_at=NOW,
                disposition=Disposition.INTERRUPTED,
                hangup_side=HangupSide.PBX,
            ),
            "crash recovery",
        ),
        (
            lambda: CallEnd(
                call_uuid=CALL, ended_at=NOW, disposition="BUSY",  # type: ignore[arg-type]
                hangup_side=HangupSide.PBX,
            ),
            "Disposition",
        ),
        (
            lambda: CallEnd(
                call_uuid=CALL,
                ended_at=NOW,
                disposition=Disposition.FAILED,
                hangup_side=HangupSide.PBX,
                hangup_status=99,
            ),
            "100..699",
        ),
        (
            lambda: CallEnd(
                call_uuid=CALL,
                ended_at=NOW,
                disposition=Disposition.FAILED,
                hangup_side=HangupSide.PBX,
                cost=Decimal("NaN"),
            ),
            "finite",
        ),
        (lambda: leg(result=LegResult.ANSWERED), "answered_at"),
        (lambda: leg(answered_at=NOW), "answered_at"),
        (lambda: leg(status=700), "100..699"),
        (lambda: leg(status=True), "100..699"),
        (lambda: leg(contact=""), "contact"),
    ],
)
def test_bad_reports_are_refused_at_the_caller(build: Any, problem: str) -> None:
    with pytest.raises((ValueError, TypeError), match=problem):
        build()


@pytest.mark.parametrize(
    ("status", "disposition"),
    [
        (200, Disposition.ANSWERED),
        (486, Disposition.BUSY),
        (600, Disposition.BUSY),
        (487, Disposition.CANCELLED),
        (408, Disposition.NO_ANSWER),
        (480, Disposition.UNAVAILABLE),
        (403, Disposition.REJECTED),
        (404, Disposition.REJECTED),
        (603, Disposition.REJECTED),
        (503, Disposition.CONGESTION),
        (500, Disposition.FAILED),
        (488, Disposition.FAILED),
    ],
)
def test_disposition_for_status(status: int, disposition: Disposition) -> None:
    assert disposition_for_status(status) is disposition


@pytest.mark.parametrize("status", [100, 180, 199, 700, -1])
def test_disposition_needs_a_final_status(status: int) -> None:
    with pytest.raises(ValueError, match="final"):
        disposition_for_status(status)


@pytest.mark.parametrize(
    ("delta", "seconds"),
    [
        (timedelta(0), 0),
        (timedelta(milliseconds=499), 0),
        (timedelta(milliseconds=500), 1),
        (timedelta(seconds=61, milliseconds=499), 61),
        (timedelta(seconds=61, milliseconds=500), 62),
        (timedelta(hours=2), 7200),
    ],
)
def test_whole_seconds_rounds_half_up(delta: timedelta, seconds: int) -> None:
    assert whole_seconds(delta) == seconds
