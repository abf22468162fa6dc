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
    caller: Extension
    """The authenticated identity, never the From header."""
    dialled: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring:
    """Ring every registered contact of ``extension`` in parallel."""

    extension: Extension
    rule: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    status: int
    reason: str
    """snake_case tag, also written to the CDR."""
    rule: str


Decision = Ring | Reject


def decide(call: CallRequest, plan: Dialplan) -> Decision:
    """Where a call from an extension goes. Internal numbers only for now:
    the dialplan's routes, classes and trunks extend this (issue 4)."""
    target = plan.extension(call.dialled)
    if target is None:
        return Reject(status=404, reason="unknown_number", rule="extensions")
    return Ring(extension=target, rule=f"extension:{target.number}")
