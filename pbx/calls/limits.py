"""Counting each extension's outside calls against its caps, and the
refusal when one is reached.

Which caps apply is the dialplan's business (:mod:`pbx.routing.call_limits`);
this module counts. Pure: the caller passes ``now`` (the event loop's
monotonic clock) and a call's handle, and releases the handle when the call
ends, however it ends.

The rate is a sliding log, not a token bucket: each extension keeps the
start times of its outside calls of the last 60 seconds, and a call is
refused while there are ``per_minute`` of them. That is exactly what
"10 a minute" reads as (never more than 10 in any 60 seconds, where a
bucket refilling one call every 6 s would let an 11th through 6 s after a
burst of 10), and it knows when the next call will be let through, which
the refusal's Retry-After says.

Memory stays bounded: one float per call started in the last minute (at
most the cap per extension), and an extension is known only while it has
a call up or a start within the window; the oldest starts are dropped
first, in one queue for all extensions, as time passes.

The counts live in this process. With several PBX nodes on PostgreSQL a
call this counter admits is counted again in the store, against every
node's calls (``pbx.calls.budgets.OutsideSlot``, ``pbx.store.budgets.
admit_outside``), before it rings.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Final

from pbx.calls.plan import End, quoted_text
from pbx.cdr.records import Disposition
from pbx.routing.call_limits import CallerLimits, Limit, LimitName

WINDOW: Final = 60.0
"""Seconds a start counts against ``per_minute``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitHit:
    """A new outside call would break a cap."""

    limit: LimitName
    value: int
    """The cap."""
    current: int
    """Calls up (``simultaneous``) or started in the window (``per_minute``)."""
    rule: str
    """Where the cap is set (``classes_of_service.staff.outside_calls.per_minute``)."""
    retry_after: int | None = None
    """Whole seconds until the rate lets a call through again; None for
    ``simultaneous`` (it waits for a call to end, which no one can tell)."""

    @property
    def reason(self) -> str:
        """The CDR reason and the tag in the Reason header."""
        return f"outside_calls_{self.limit}_limit"


class OutsideCallCounter:
    """Outside calls up and started recently, per extension."""

    def __init__(self) -> None:
        self._up: dict[str, int] = {}
        self._holders: dict[str, str] = {}
        """Call handle -> the extension whose call it is."""
        self._starts: dict[str, deque[float]] = {}
        self._order: deque[tuple[float, str]] = deque()
        """(start, extension) of every start in the window, oldest first."""

    def admit(self, extension: str, call: str, limits: CallerLimits, now: float) -> LimitHit | None:
        """Count ``call`` as ``extension``'s new outside call, or say which
        cap it would break (then nothing is counted: a refused attempt is no
        call, so redialling by hand does not lengthen the wait)."""
        self._expire(now)
        up = self._up.get(extension, 0)
        if up >= limits.simultaneous.value:
            return _hit("simultaneous", limits.simultaneous, up)
        starts = self._starts.get(extension)
        recent = len(starts) if starts is not None else 0
        cap = limits.per_minute.value
        if starts is not None and recent >= cap:
            # The call that brings the count below the cap (a reload may have
            # lowered it below what is already counted) leaves the window first.
            frees_at = starts[recent - cap] + WINDOW
            return _hit("per_minute", limits.per_minute, recent, retry_after=max(1, math.ceil(frees_at - now)))
        self._up[extension] = up + 1
        self._holders[call] = extension
        self._starts.setdefault(extension, deque()).append(now)
        self._order.append((now, extension))
        return None

    def release(self, call: str) -> None:
        """``call`` ended. Idempotent; a call never admitted is ignored."""
        extension = self._holders.pop(call, None)
        if extension is None:
            return
        left = self._up[extension] - 1
        if left:
            self._up[extension] = left
        else:
            del self._up[extension]

    def up(self, extension: str) -> int:
        """``extension``'s outside calls up now."""
        return self._up.get(extension, 0)

    def started(self, extension: str, now: float) -> int:
        """``extension``'s outside calls started in the last 60 seconds."""
        self._expire(now)
        starts = self._starts.get(extension)
        return len(starts) if starts is not None else 0

    def tracked(self, now: float) -> int:
        """Extensions with state kept: those with a call up or a recent start."""
        self._expire(now)
        return len(self._up.keys() | self._starts.keys())

    def _expire(self, now: float) -> None:
        order, cutoff = self._order, now - WINDOW
        while order and order[0][0] <= cutoff:
            _, extension = order.popleft()
            starts = self._starts[extension]
            starts.popleft()  # the same start: both queues are in time order
            if not starts:
                del self._starts[extension]


def _hit(limit: LimitName, cap: Limit, current: int, retry_after: int | None = None) -> LimitHit:
    return LimitHit(limit=limit, value=cap.value, current=current, rule=cap.rule, retry_after=retry_after)


def refusal(hit: LimitHit, domain: str) -> End:
    """What the caller is told: 486 Busy Here, with the cap in a Reason and
    a Warning (RFC 3261 §20.43, code 399) and, for the rate, Retry-After.

    486 rather than 403: §21.4.4 says a 403 must not be repeated, but both
    caps lift by themselves (a call ends, a minute passes), and §20.33
    defines Retry-After for 486, not 403. Rather than 503: a 503 tells a
    phone to fail over to its next server (RFC 3263 §4.3), which on another
    node (the counts are per node) would get round the cap. To a person it
    sounds like what it is: all their outside lines are busy.
    """
    what = (f"{hit.value} outside calls at once" if hit.limit == "simultaneous"
            else f"{hit.value} outside calls a minute")
    text = quoted_text(f"{hit.rule}: at most {what}")
    headers: list[tuple[str, str]] = [
        ("reason", f'SIP;cause=486;text="{hit.reason}"'),
        ("warning", f'399 {domain} "{text}"'),
    ]
    if hit.retry_after is not None:
        headers.append(("retry-after", str(hit.retry_after)))
    return End(status=486, disposition=Disposition.REJECTED, reason=hit.reason, headers=tuple(headers),
               phrase="Outside Call Limit")
