"""Child process of the kill -9 test: reports calls through a real CdrWriter
until it is killed, printing each call's call_uuid once ``on_durable`` says
its CDR is committed.  Every tenth call is left in progress (answered, never
ended), like the calls up at the moment of a crash.

It also starts one short call on the real clock, printed first as
``short CALL_UUID ANSWERED_AT``, which stays up until the kill; and beats the
CDR heartbeat every ``HEARTBEAT`` seconds, printing ``alive AT`` once each
beat is committed.  So the test knows how long the short call was really up
when it died, within one beat.

    python tests/cdr/killed_writer.py DATABASE_URL NODE

The database must be migrated already.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from collections.abc import Callable

from pbx.cdr.records import (
    CallAnswer,
    CallEnd,
    CallStart,
    Disposition,
    HangupSide,
    LegAttempt,
    LegResult,
)
from pbx.cdr.writer import CdrWriter
from pbx.store.db import make_engine
from pbx.store.writer import BackgroundWriter

# Calls waiting for their CDR at once, as a busy PBX would have.
IN_FLIGHT = 100
# Seconds between heartbeats (the server's is longer; short here so the
# test does not wait).
HEARTBEAT = 0.1


def main(url: str, node: str) -> None:
    background = BackgroundWriter(make_engine(url))
    slots = threading.Semaphore(IN_FLIGHT)
    print_lock = threading.Lock()

    def run_now(callback: Callable[[], None]) -> None:
        callback()

    def say(line: str) -> None:
        with print_lock:
            sys.stdout.write(f"{line}\n")
            sys.stdout.flush()

    def durable(call: uuid.UUID) -> None:
        say(str(call))
        slots.release()

    cdrs = CdrWriter(background, node, run_now)
    short = uuid.uuid4()
    answered = datetime.now(UTC)
    cdrs.started(CallStart(call_uuid=short, call_id=f"{short.hex}@192.0.2.4", started_at=answered,
                           caller_number="1001", caller_name=None, dialed_number="1002"))
    cdrs.answered(CallAnswer(call_uuid=short, answered_at=answered, destination="1002"))
    say(f"short {short} {answered.isoformat()}")
    beaten = time.monotonic()

    base = datetime(2025, 3, 30, tzinfo=UTC)
    for number in itertools.count():
        if time.monotonic() - beaten >= HEARTBEAT:
            beaten = time.monotonic()
            now = datetime.now(UTC)
            cdrs.heartbeat(now)
            # Ops commit in order: once this one has, so has the heartbeat.
            background.submit(lambda conn: None, partial(say, f"alive {now.isoformat()}"))
        call = uuid.uuid4()
        start = base + timedelta(seconds=number)
        cdrs.started(
            CallStart(
                call_uuid=call,
                call_id=f"{call.hex}@192.0.2.4",
                started_at=start,
                caller_number="1001",
                caller_name="Lý Thường Kiệt",
                dialed_number="1002",
            )
        )
        cdrs.answered(
            CallAnswer(call_uuid=call, answered_at=start + timedelta(seconds=2), destination="1002")
        )
        if number % 10 == 9:
            continue  # still talking when the process dies
        slots.acquire()
        cdrs.ended(
            CallEnd(
                call_uuid=call,
                ended_at=start + timedelta(seconds=30),
                disposition=Disposition.ANSWERED,
                hangup_side=HangupSide.CALLEE,
            ),
            [
                LegAttempt(
                    target="1002",
                    contact="sip:1002@192.0.2.20",
                    started_at=start,
                    answered_at=start + timedelta(seconds=2),
                    ended_at=start + timedelta(seconds=30),
                    result=LegResult.ANSWERED,
                    status=200,
                )
            ],
            partial(durable, call),
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
