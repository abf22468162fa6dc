"""The state of one call through the B2BUA: the caller's leg (A, where the
PBX is UAS) and the legs it places towards the callee's contacts (B, UAC).

Pure data with small helpers; the controller changes it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pbx.routing.dialplan import Extension
from pbx.routing.engine import RingMember
from pbx.sip.address import Peer
from pbx.sip.dialog import Dialog
from pbx.sip.events import TransactionKey
from pbx.sip.message import Request
from pbx.sip.tokens import random_uuid
from pbx.trunks.outbound import TrunkDialling


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
CONGESTION = "CONGESTION"  # every gateway of a trunk failed


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
    ack: bytes | None = None
    """The ACK we sent to its 2xx, sent again if the 2xx is (§13.2.2.4)."""
    retried_422: bool = False
    """The INVITE was sent again after a 422 (RFC 4028 §7.4); only once."""
    trunk: str | None = None
    """The trunk this leg goes out through; None for a leg to a contact."""

    @property
    def live(self) -> bool:
        return self.state in (LegState.CALLING, LegState.EARLY)


@dataclass(slots=True, kw_only=True)
class MemberCall:
    """A call to a short-number group member (``RingMember``): the desk
    legs are the extension's contacts, the mobile leg goes through a trunk
    (``Call.outbound``), now or after ``desk_seconds``."""

    decision: RingMember
    mobile_started: bool = False
    mobile_status: int | None = None
    """How the mobile leg ended when it gave up (486, 503 ...), if it did."""

    @property
    def short_number(self) -> str | None:
        """The short number dialled, None when a long number was."""
        return self.decision.member.short if self.decision.short_dialled else None

    @property
    def label(self) -> str:
        """``head_office/601 Nguyễn Văn An``: the member, for the CDR."""
        member = self.decision.member
        return f"{self.decision.group}/{member.short}" + (f" {member.name}" if member.name else "")

    @property
    def mobile_pending(self) -> bool:
        return self.decision.mobile is not None and not self.mobile_started


@dataclass(slots=True, kw_only=True)
class Call:
    caller: Extension | None
    """The authenticated extension; None for a call in from a trunk."""
    dialled: str
    a_request: Request
    a_source: Peer
    a_key: TransactionKey
    a_dialog: Dialog
    started_at: float
    uuid: str = field(default_factory=lambda: random_uuid().hex)
    state: CallState = CallState.ROUTING
    legs: list[Leg] = field(default_factory=list)
    winner: Leg | None = None
    destination: str | None = None
    rule: str | None = None
    call_class: str | None = None
    """What routing classified the call as (internal, mobile, inbound ...)."""
    answered_at: float | None = None
    ended_at: float | None = None
    disposition: str | None = None
    hangup_status: int | None = None
    hangup_side: str | None = None
    reason: str | None = None
    a_acked: bool = False
    timers: list[Any] = field(default_factory=list)
    early_leg: Leg | None = None
    """The leg whose early dialog A's early dialog is relayed to (RFC 3311)."""
    answered_monotonic: float | None = None
    session_interval: int | None = None
    """Session interval in force (RFC 4028), None when no timer runs."""
    watch: Any = None
    """The timer that ends the call: session expiry or maximum duration."""
    peer_floor: dict[str, int] = field(default_factory=dict)
    """Min-SE a side asked for in a 422, by side ("a", "b")."""
    acks_sent: dict[tuple[str, int], tuple[bytes, Peer]] = field(default_factory=dict)
    """ACKs to 2xx we sent, by (Call-ID, CSeq), to resend when the 2xx is
    retransmitted because one was lost (RFC 3261 §13.2.2.4)."""
    byes_from: set[str] = field(default_factory=set)
    """Sides that sent their own BYE: they get none from us."""
    trunk: str | None = None
    """The trunk the call came in over, or goes out through."""
    presented_number: str = ""
    presented_name: str | None = None
    """Who a call from a trunk says it is from (the From header); only
    shown, never trusted for rights."""
    outbound: TrunkDialling | None = None
    """The way out through a trunk, for a call routed to one."""
    member: MemberCall | None = None
    """For a call to a short-number group member: how its legs go."""
    resolved_number: str | None = None
    """For a member call: the member's number that rang (or answered)."""

    @property
    def a_call_id(self) -> str:
        return self.a_request.call_id

    @property
    def caller_number(self) -> str:
        """The extension's number, or the number a trunk call presented."""
        return self.caller.number if self.caller is not None else (self.presented_number or "anonymous")

    @property
    def caller_name(self) -> str | None:
        return self.caller.name if self.caller is not None else self.presented_name

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None

    def leg_of(self, call_id: str) -> Leg | None:
        """The B leg whose dialog has this Call-ID (each leg has its own)."""
        for leg in self.legs:
            if leg.dialog.call_id == call_id:
                return leg
        return None


class Relay(NamedTuple):
    """An in-dialog request relayed to the other leg, awaiting its answer.

    A tuple whose first item is the call, so clean-up can find a call's
    relays without knowing the rest.
    """

    call: Call
    server_key: TransactionKey
    """The originator's server transaction, answered with the response."""
    side: str
    """Who sent it: "a" or "b"."""
    origin: Request
    """As received from the originator."""
    relayed: Request
    """Our copy sent to the other leg."""
    to_tag: str
    """Our tag in the originator's dialog."""
    transport: str
    """The originator's transport, for the Contact of the response."""
