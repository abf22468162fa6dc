"""The facts a call controller reports about a call, for its CDR.

Pure values: no SQLAlchemy, no clock.  The controller stamps each fact with
the time it happened (aware datetimes) and hands it to `CdrWriter`:

    started(CallStart)        the caller's INVITE was accepted for routing
    routed(CallRouted)        a routing decision (may come more than once)
    answered(CallAnswer)      a 2xx was relayed to the caller
    ended(CallEnd, legs)      the call is over; `legs` are the contacts tried

Each record checks itself on construction, so a bad value fails at the
caller, not later in the database writer thread where it would cost the row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from pbx.sip.tokens import random_uuid


class Disposition(StrEnum):
    """How a call ended, as stored in ``cdr.disposition`` (by value)."""

    ANSWERED = "ANSWERED"        # a 2xx reached the caller
    NO_ANSWER = "NO_ANSWER"      # rang, nobody picked up before the timeout
    BUSY = "BUSY"                # 486 / 600 from every contact tried
    CANCELLED = "CANCELLED"      # the caller hung up (CANCEL) before an answer
    REJECTED = "REJECTED"        # refused: 403 barred, 603 declined, 404 no route
    UNAVAILABLE = "UNAVAILABLE"  # the destination had no reachable contact (480)
    CONGESTION = "CONGESTION"    # no resources: 503, trunk full, overload
    FAILED = "FAILED"            # anything else that went wrong
    INTERRUPTED = "INTERRUPTED"  # the PBX stopped during the call (set at restart)
    AUTH_FAILED = "AUTH_FAILED"  # ended on wrong (or no) account codes, or a phone locked out for them


class HangupSide(StrEnum):
    """Who ended the call."""

    CALLER = "caller"
    CALLEE = "callee"
    PBX = "pbx"  # timeouts, routing refusals, shutdown, crash recovery


class LegResult(StrEnum):
    """What became of one attempt to ring one contact."""

    ANSWERED = "ANSWERED"    # this contact took the call
    NO_ANSWER = "NO_ANSWER"  # rang until the PBX gave up on it
    BUSY = "BUSY"            # 486 / 600
    REJECTED = "REJECTED"    # another final 4xx-6xx (603 decline, 404 ...)
    CANCELLED = "CANCELLED"  # the PBX cancelled it: the caller left, or a sibling answered
    FAILED = "FAILED"        # transport error or no response at all (timer B)


# Status codes are three digits, classes 1xx to 6xx (RFC 3261 §7.2, §21).
_STATUS_RANGE = range(100, 700)


def _require_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _require_text(name: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")


def _require_uuid(value: uuid.UUID) -> None:
    if not isinstance(value, uuid.UUID):
        raise TypeError(f"call_uuid must be a uuid.UUID, not {type(value).__name__}")


def _require_status(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or value not in _STATUS_RANGE):
        raise ValueError(f"{name} must be a SIP status code 100..699")


def whole_seconds(delta: timedelta) -> int:
    """`delta` in seconds, rounded half up (so 1.5 s bills as 2, 1.4 s as 1).

    The exact timestamps stay in the row for anyone who rates differently.
    """
    micro = delta // timedelta(microseconds=1)
    return (micro + 500_000) // 1_000_000


def new_call_uuid() -> uuid.UUID:
    """A fresh id for a call.  Random (version 4), so PBX nodes sharing one
    database never hand out the same one."""
    return random_uuid()


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStart:
    """A call began: the caller's INVITE was accepted for routing."""

    call_uuid: uuid.UUID       # our id of the call, from `new_call_uuid`
    call_id: str               # SIP Call-ID of the caller's leg (RFC 3261 §8.1.1.4)
    started_at: datetime       # when the INVITE arrived
    caller_number: str         # authenticated extension, or the trunk's From user
    caller_name: str | None    # display name, as presented
    dialed_number: str         # what the caller dialled (Request-URI user part)
    caller_department: str | None = None
    project: str | None = None        # the calling extension's project tag

    def __post_init__(self) -> None:
        _require_uuid(self.call_uuid)
        _require_text("call_id", self.call_id)
        _require_aware("started_at", self.started_at)
        _require_text("caller_number", self.caller_number)
        _require_text("dialed_number", self.dialed_number)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRouted:
    """What routing decided.  Fields left None keep what an earlier report
    said; a later report's non-None fields replace it."""

    call_uuid: uuid.UUID
    rule: str | None = None             # the dialplan rule that matched
    call_class: str | None = None       # e.g. internal, local, mobile, international
    account_code: str | None = None     # the account code's id (never its digits), if one was used
    account_owner: str | None = None    # whose code it was
    account_rights: str | None = None   # the class of service the code gave the call
    hunt_group: str | None = None
    trunk: str | None = None
    short_number: str | None = None     # the short number dialled, if one
    resolved_number: str | None = None  # what the short number stood for
    member: str | None = None           # the group member whose short number it was
    ivr_path: str | None = None         # menus and keys, secret entries hidden (pbx.ivr.menu)
    transfer: str | None = None         # transfers and forwards: "blind 2002 -> 2003; ..."
    linked_call: str | None = None      # the call an attended transfer joined (its call_uuid)
    destination: str | None = None      # who the call reached in the end, when a transfer moved it
    billed_to: str | None = None        # the extension that pays when not the caller (its forward or transfer)
    billed_department: str | None = None  # that extension's department

    def __post_init__(self) -> None:
        _require_uuid(self.call_uuid)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswer:
    """A 2xx from `destination` was relayed to the caller."""

    call_uuid: uuid.UUID
    answered_at: datetime
    destination: str                 # the extension or number that answered
    answered_by: str | None = None   # the hunt-group member, when a group rang
    recording: str | None = None     # the file being recorded from the answer (linked before the end: a crash keeps it)

    def __post_init__(self) -> None:
        _require_uuid(self.call_uuid)
        _require_aware("answered_at", self.answered_at)
        _require_text("destination", self.destination)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnd:
    """The call is over.

    `hangup_status` is the SIP status that ended it: the final response sent
    to the caller for an unanswered call (486, 487, 480 ...), or the status
    that broke an answered one (408 on a refresh, 481 ...); None for an
    ordinary BYE.
    """

    call_uuid: uuid.UUID
    ended_at: datetime
    disposition: Disposition
    hangup_side: HangupSide
    hangup_status: int | None = None
    reason: str | None = None        # free text: Reason header, snake_case tag ...
    destination: str | None = None   # for unanswered calls: the last target tried
    cost: Decimal | None = None      # in the currency, exact (cost_minor scaled)
    cost_minor: int | None = None    # in minor units of `currency`: what reports sum
    currency: str | None = None      # ISO 4217
    tariff: str | None = None        # id of the tariff that priced the call
    recording: str | None = None     # file name of the call's recording

    def __post_init__(self) -> None:
        _require_uuid(self.call_uuid)
        _require_aware("ended_at", self.ended_at)
        if not isinstance(self.disposition, Disposition):
            raise TypeError("disposition must be a Disposition")
        if self.disposition is Disposition.INTERRUPTED:
            raise ValueError("INTERRUPTED is set by crash recovery, not reported")
        if not isinstance(self.hangup_side, HangupSide):
            raise TypeError("hangup_side must be a HangupSide")
        _require_status("hangup_status", self.hangup_status)
        if self.cost is not None and (not isinstance(self.cost, Decimal) or not self.cost.is_finite()):
            raise ValueError("cost must be a finite Decimal")
        if self.cost_minor is not None and (isinstance(self.cost_minor, bool) or not isinstance(self.cost_minor, int)
                                            or self.cost_minor < 0):
            raise ValueError("cost_minor must be a non-negative int")


@dataclass(frozen=True, slots=True, kw_only=True)
class LegAttempt:
    """One contact the PBX rang for the call (a B-leg INVITE), and its outcome.

    Reported in the order they were started; the position is the attempt
    number (1-based) stored with it.
    """

    target: str                 # the extension or number being reached
    contact: str                # the Contact URI the INVITE went to
    started_at: datetime        # INVITE sent
    ended_at: datetime          # final response, CANCEL done, or given up
    result: LegResult
    status: int | None = None   # final SIP status received, if any
    call_id: str | None = None  # Call-ID of this leg
    answered_at: datetime | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        _require_text("target", self.target)
        _require_text("contact", self.contact)
        _require_aware("started_at", self.started_at)
        _require_aware("ended_at", self.ended_at)
        if self.answered_at is not None:
            _require_aware("answered_at", self.answered_at)
        if not isinstance(self.result, LegResult):
            raise TypeError("result must be a LegResult")
        if (self.result is LegResult.ANSWERED) != (self.answered_at is not None):
            raise ValueError("answered_at is set exactly when the result is ANSWERED")
        _require_status("status", self.status)


def disposition_for_status(status: int) -> Disposition:
    """The usual disposition of an unanswered call whose caller got final
    response `status` (RFC 3261 §21).  A controller that knows better (its
    own ring timeout, a routing refusal) reports that instead."""
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 699:
        raise ValueError("status must be a final SIP status code 200..699")
    if status < 300:
        return Disposition.ANSWERED
    if status in (486, 600):
        return Disposition.BUSY
    if status == 487:
        return Disposition.CANCELLED
    if status == 408:
        return Disposition.NO_ANSWER
    if status == 480:
        return Disposition.UNAVAILABLE
    if status in (403, 404, 484, 485, 603, 604, 606):
        return Disposition.REJECTED
    if status == 503:
        return Disposition.CONGESTION
    return Disposition.FAILED
