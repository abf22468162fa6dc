"""Fixtures of the CDR tests: the store's database fixtures (every test runs
against a SQLite file and a private PostgreSQL schema), a background writer
on the migrated database, and factories of call reports."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from pbx.cdr.records import (
    CallAnswer,
    CallEnd,
    CallStart,
    Disposition,
    HangupSide,
    LegAttempt,
    LegResult,
)
from pbx.cdr.writer import CDR, CDR_LEGS
from pbx.store.writer import BackgroundWriter

# The same fixtures as the store tests, so both backends are covered alike.
from tests.store.conftest import db_url, engine, migrated

__all__ = ["db_url", "engine", "migrated"]

NOW = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)  # the night European clocks go forward


def at(seconds: float) -> datetime:
    """NOW plus `seconds`."""
    return NOW + timedelta(seconds=seconds)


def run_now(callback: Callable[[], None]) -> None:
    """A `notify` that runs the callback at once, in the writer thread."""
    callback()


class Gate:
    """An op that holds the writer thread inside its transaction until
    released, so a test decides what queues up behind it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: Connection) -> None:
        self.entered.set()
        if not self.release.wait(timeout=30):
            raise TimeoutError("gate never released")


@pytest.fixture
def background(migrated: Engine) -> Iterator[BackgroundWriter]:
    """A BackgroundWriter on the migrated database, closed after the test."""
    writer = BackgroundWriter(migrated, retries=2, backoff=0.0, max_backoff=0.0)
    yield writer
    writer.close(timeout=10)


def make_start(call_uuid: uuid.UUID | None = None, **overrides: Any) -> CallStart:
    fields: dict[str, Any] = {
        "call_uuid": call_uuid or uuid.uuid4(),
        "call_id": "a84b4c76e66710@192.0.2.4",
        "started_at": NOW,
        "caller_number": "1001",
        "caller_name": "Nguyễn Thị Minh Khai",
        "dialed_number": "1002",
        "caller_department": "Kế toán",
    }
    fields.update(overrides)
    return CallStart(**fields)


def make_answer(call_uuid: uuid.UUID, **overrides: Any) -> CallAnswer:
    fields: dict[str, Any] = {
        "call_uuid": call_uuid,
        "answered_at": at(4.2),
        "destination": "1002",
    }
    fields.update(overrides)
    return CallAnswer(**fields)


def make_end(call_uuid: uuid.UUID, **overrides: Any) -> CallEnd:
    fields: dict[str, Any] = {
        "call_uuid": call_uuid,
        "ended_at": at(65.7),
        "disposition": Disposition.ANSWERED,
        "hangup_side": HangupSide.CALLER,
    }
    fields.update(overrides)
    return CallEnd(**fields)


def two_legs() -> list[LegAttempt]:
    """The desk phone answers; the softphone ringing beside it is cancelled."""
    return [
        LegAttempt(
            target="1002",
            contact="sip:1002@192.0.2.20:5060",
            call_id="leg-1@pbx",
            started_at=at(0.1),
            answered_at=at(4.2),
            ended_at=at(65.7),
            result=LegResult.ANSWERED,
            status=200,
        ),
        LegAttempt(
            target="1002",
            contact="sip:1002@198.51.100.9:40000;transport=tcp",
            call_id="leg-2@pbx",
            started_at=at(0.1),
            ended_at=at(4.3),
            result=LegResult.CANCELLED,
            status=487,
            reason="SIP;cause=200;text=\"Call completed elsewhere\"",
        ),
    ]


def call_row(engine: Engine, call_uuid: uuid.UUID) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(CDR).where(CDR.c.call_uuid == str(call_uuid))).first()
    return None if row is None else dict(row._mapping)


def all_calls(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(CDR).order_by(CDR.c.id))]


def leg_rows(engine: Engine, call_uuid: uuid.UUID) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = (
            select(CDR_LEGS)
            .where(CDR_LEGS.c.call_uuid == str(call_uuid))
            .order_by(CDR_LEGS.c.attempt)
        )
        return [dict(r._mapping) for r in conn.execute(query)]
