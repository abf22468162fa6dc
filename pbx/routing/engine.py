"""Routing: a pure function from a call request to a decision.

No I/O and no clock: the caller passes everything in. The calling path runs
the decision with ``match`` and ``assert_never``, so a new decision type
(hunt a group, ask for an account code, run an IVR — later issues) fails
type-checking until the controller handles it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pbx.routing.dialplan import Dialplan, Extension


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRequest:
    caller: Extension | None
    """The authenticated extension, never the From header; None for a call
    that came in from a trunk."""
    dialled: str
    at: datetime
    """Aware datetime; the engine converts it to the plan's time zone."""
    trunk: str | None = None
    """Key of the trunk an inbound call came from (then ``dialled`` is the
    DID); None for a call from an extension."""
    caller_number: str = ""
    """The number the caller presents: the extension number, or for an
    inbound call the From user as the provider sent it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One rule consulted on the way to a decision: what ``pbx explain``
    prints and what the decision log line carries."""

    rule: str
    """Where the rule lives, e.g. ``classes.vietnam.mobile`` or
    ``departments.sales.allow``."""
    outcome: str
    """What it said, in words for an admin."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring:
    """Ring every registered contact of ``extension`` in parallel."""

    extension: Extension
    rule: str
    call_class: str = "internal"
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ToTrunk:
    """Place the call through ``trunk`` to ``number`` (already rewritten as
    the provider expects), presenting ``caller_id``."""

    trunk: str
    number: str
    caller_id: str | None
    rule: str
    call_class: str
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    status: int
    reason: str
    """snake_case tag, also written to the CDR."""
    rule: str
    call_class: str | None = None
    steps: tuple[Step, ...] = ()


Decision = Ring | ToTrunk | Reject


def decide(call: CallRequest, plan: Dialplan) -> Decision:
    """Where a call from an extension goes. Internal numbers only for now:
    the dialplan's routes, classes and trunks extend this (issue 4)."""
    target = plan.extension(call.dialled)
    if target is None:
        return Reject(status=404, reason="unknown_number", rule="extensions")
    return Ring(extension=target, rule=f"extension:{target.number}")
