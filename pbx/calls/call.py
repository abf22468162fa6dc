"""The state of one call through the B2BUA: the caller's leg (A, where the
PBX is UAS) and the legs it places towards the callee's contacts (B, UAC).

Pure data with small helpers; the controller changes it.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any

from pbx.routing.dialplan import Extension
from pbx.sip.address import Peer
from pbx.sip.dialog import Dialog
from pbx.sip.events import TransactionKey
from pbx.sip.message import Request


class CallState(enum.Enum):
    ROUTING = "routing"
    RINGING = "ringing"      # B legs placed, no 2xx yet
    ANSWERED = "answered"    # a B leg answered; 2xx relayed to A
    ENDING = "ending"        # ended, CDR being made durable
    ENDED = "ended"


class LegState(enum.Enum):
    CALLING = "calling"
    EARLY = "early"          # a provisional (180/183) came back
    ANSWERED = "answered"
    FAILED = "failed"
    CANCELLED = "cancelled"


# CDR dispositions (pbx.cdr stores them by value).
ANSWERED, NO_ANSWER, BUSY, CANCELLED, FAILED, REJECTED, UNAVAILABLE = (
    "ANSWERED", "NO_ANSWER", "BUSY", "CANCELLED", "FAILED", "REJECTED", "UNAVAILABLE",
)


@dataclass(slots=True, kw_only=True)
class Leg:
    """One attempt towards one registered contact."""

    contact: str
    dest: Peer
    invite: Request
    key: TransactionKey
    dialog: Dialog
    started_at: float
    state: LegState = LegState.CALLING
    status: int | None = None
    ended_at: float | None = None
    acked: bool = False

    @property
    def live(self) -> bool:
        return self.state in (LegState.CALLING, LegState.EARLY)


@dataclass(slots=True, kw_only=True)
class Call:
    caller: Extension
    dialled: str
    a_request: Request
    a_source: Peer
    a_key: TransactionKey
    a_dialog: Dialog
    started_at: float
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: CallState = CallState.ROUTING
    legs: list[Leg] = field(default_factory=list)
    winner: Leg | None = None
    destination: str | None = None
    rule: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    disposition: str | None = None
    hangup_status: int | None = None
    hangup_side: str | None = None
    reason: str | None = None
    a_acked: bool = False
    timers: list[Any] = field(default_factory=list)

    @property
    def a_call_id(self) -> str:
        return self.a_request.call_id

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
