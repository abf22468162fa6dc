"""The CDR recorder with listeners: metrics count calls and time the CDR's
commit, webhooks hear of each call's end. The controller sees one
``CallRecorder``; listeners run on the event loop and must not block."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from pbx.calls.call import Call
from pbx.calls.cdr_adapter import CdrRecorder
from pbx.web.webhook import CallEnded


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def call_ended_event(call: Call) -> CallEnded:
    ended = call.ended_at if call.ended_at is not None else call.started_at
    return CallEnded(
        event="call.ended", call_uuid=call.uuid, caller=call.caller_number, caller_name=call.caller_name,
        callee=call.dialled, destination=call.destination,
        disposition=call.disposition.value if call.disposition is not None else "FAILED",
        started_at=_iso(call.started_at) or "", answered_at=_iso(call.answered_at), ended_at=_iso(ended) or "",
        hunt_group=call.hunt_group, answered_by=call.answered_by)


class HookedRecorder:
    def __init__(self, inner: CdrRecorder, monotonic: Callable[[], float]) -> None:
        self.inner = inner
        self.writer = inner.writer
        self.monotonic = monotonic
        self.on_started: list[Callable[[Call], None]] = []
        self.on_ended: list[Callable[[CallEnded], None]] = []
        self.on_commit: list[Callable[[float], None]] = []
        """Seconds from a call's end to its CDR row's commit."""

    def call_started(self, call: Call) -> None:
        self.inner.call_started(call)
        for listener in self.on_started:
            listener(call)

    def call_answered(self, call: Call) -> None:
        self.inner.call_answered(call)

    def call_alive(self, call: Call, at: float) -> None:
        self.inner.call_alive(call, at)

    def call_ended(self, call: Call, on_durable: Callable[[], None]) -> None:
        began = self.monotonic()

        def durable() -> None:
            for listener in self.on_commit:
                listener(self.monotonic() - began)
            on_durable()

        self.inner.call_ended(call, durable)
        if self.on_ended:
            event = call_ended_event(call)
            for ended in self.on_ended:
                ended(event)
