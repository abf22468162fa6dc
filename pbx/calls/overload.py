"""Overload: refuse new calls with 503 while the server is behind, instead
of collapsing.

Past what one core carries, a server that keeps accepting every call does
not carry "as many as it can": it carries almost none. Measured with
``bench/call_rate.py --targets pbx --rates 500,600`` (2026-12-07): 500
calls/s held; at 600/s datagrams queued in the socket faster than the loop
took them, set-up time climbed from 9 ms to 1.4 s within 12 s, the phones'
ACKs came after the 200 OK's first retransmission, and from then on every
call failed (0 completed a second, 138 % retransmissions) while the
server's loop lag never passed 44 ms: the backlog sat in the kernel's
receive buffer, where the loop-lag monitor cannot see it.

So the backlog is read where it is: the bytes waiting in each SIP UDP
socket (Linux ``SO_MEMINFO``, one ``getsockopt`` per socket every 20 ms,
by :mod:`pbx.server.overload`). A waiting datagram counts more there
than its size: what the kernel allocated for it, measured here as 832 bytes
for a 250-byte OPTIONS, 1,280 for 300 to 600 bytes, 2,304 for 700 to 1,400
and 4,352 for 2,000. Above ``HIGH_WATER`` the gate closes: a new call
(an INVITE outside a dialog) is answered ``503 Service Unavailable`` with
a ``Retry-After`` at once, before authentication and routing, which costs
a fraction of a call's work. Everything else goes on as before: calls
already set up, their BYEs and re-INVITEs, CANCELs, registrations. The gate
opens once the backlog is back under an eighth of that and has stayed there
for ``HOLD`` seconds. At the limit it closes and opens many times a
second, so the server refuses about as many calls as it cannot carry and
takes the rest.

What is never refused: a number that any of the plan's number plans
classes as an emergency number (the controller checks). A refused call has
no CDR: it is refused before the caller is known (as a 407 challenge is),
and writing one would add to the load that made the refusal; the refusals
are counted in the log per episode, from the first refusal until none for
``QUIET`` seconds: ``overload_started``, ``overload_shedding`` every 10 s
while it lasts, ``overload_ended`` with the total and the time refused.

Retry-After is drawn between ``RETRY_AFTER`` seconds and twice that, so
the refused phones do not all come back in the same second. Behind
Kamailio (the cluster), a 503 lets the dispatcher try another node.

REGISTER is not refused, though a storm of registrations (every phone
back after a power cut) is a classic overload. Tried with
``bench/register_rate.py --targets pbx --rates 4000`` (capacity about
3,300/s there): a stateless 503 before the digest check is answered anew
for every retransmission, SIPp retransmitted into the refusals (about
10,000 refused a second against 4,000 offered), and 3,288 registrations/s
done became 802/s. A refusal still pays for receiving, parsing and
sending, most of what a registration costs. Phones that honour
Retry-After would fare better than SIPp; that was not measured.

TCP and TLS connections are not read: their backlog is per connection,
and there the kernel's flow control slows the sender down instead of
dropping what it sent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

HIGH_WATER: Final = 2 << 20
"""Queued bytes above which new calls are refused: 2 MiB, some 1,400
datagrams of a call's mix (INVITEs and answers with SDP count 2,304 bytes,
ACKs and BYEs 1,280), about 125 ms of work here (90 µs a datagram at 1.5
ms and 17 datagrams a call). A call's set-up crosses the queue about four
times, so that is some 500 ms of set-up, and a machine twice as slow still
answers each message within T1 (500 ms), before the phone retransmits.
Lower, a busy moment of the machine trips it: at 1 MiB the gate closed at
500 calls/s on a shared machine where the server carries 600. Higher, it
trips too late: at 4 MiB, 750 calls/s offered on the shared machine had
6.9 % retransmissions before the refusals caught up. Where the socket's
buffer is smaller (a server not allowed to raise it past
``net.core.rmem_max``), half the buffer (``capped``)."""

LOW_WATER_SHARE: Final = 8
"""The backlog counts as drained under an eighth of the high water."""

HOLD: Final = 0.1
"""Seconds the backlog must stay drained before new calls are taken again:
five readings in a row, so one lucky reading does not open the gate."""

QUIET: Final = 10.0
"""Seconds without refusing after which an overload episode counts as over
(and is logged so): a server at its limit closes and opens the gate many
times a second, and one episode is what an operator wants to read."""

RETRY_AFTER: Final = 5
"""Least Retry-After (seconds) on a refusal; the most is twice this."""


@dataclass(frozen=True, slots=True)
class Transition:
    """An overload episode began ("started") or was over ("ended")."""

    kind: str
    queued: int
    """Bytes waiting at this reading."""
    refused: int
    """New calls refused in the episode."""
    lasted: float
    """Seconds from the gate's first closing in the episode to its last opening."""
    shed: float
    """Seconds of it the gate was closed."""


class OverloadGate:
    """Whether new calls are refused, from readings of the backlog (pure:
    times and readings are passed in).

    Two levels: the gate itself, which closes above ``high`` and opens
    once the backlog has stayed under ``low`` for ``hold`` seconds; and the
    episode, from the gate's first closing until it has stayed open for
    ``quiet`` seconds, which is what gets logged."""

    def __init__(self, *, high: int = HIGH_WATER, hold: float = HOLD, quiet: float = QUIET,
                 retry_after: int = RETRY_AFTER, rng: random.Random | None = None) -> None:
        self.high = high
        self.low = high // LOW_WATER_SHARE
        self.hold = hold
        self.quiet = quiet
        self._retry_after = retry_after
        self._rng = rng or random.Random()
        self.shedding = False
        self.in_episode = False
        self.refused = 0
        """New calls refused in the current (or last) episode."""
        self._episode_start = 0.0
        self._closed_at = 0.0
        self._opened_at = 0.0
        self._shed = 0.0
        self._drained_at: float | None = None

    def capped(self, buffer: int) -> bool:
        """Lower the marks to fit a receive buffer of ``buffer`` bytes (the
        kernel drops what does not fit, so a higher mark would never be
        reached); True if they were lowered."""
        if buffer // 2 >= self.high:
            return False
        self.high = buffer // 2
        self.low = self.high // LOW_WATER_SHARE
        return True

    def observe(self, now: float, queued: int) -> Transition | None:
        """One reading of the queued bytes at ``now``; an episode that
        began or ended with it, if any."""
        if not self.shedding:
            if queued > self.high:
                self.shedding, self._closed_at, self._drained_at = True, now, None
                if not self.in_episode:
                    self.in_episode, self.refused, self._shed, self._episode_start = True, 0, 0.0, now
                    return Transition("started", queued, 0, 0.0, 0.0)
                return None
            if self.in_episode and now - self._opened_at >= self.quiet:
                self.in_episode = False
                return Transition("ended", queued, self.refused, self._opened_at - self._episode_start, self._shed)
            return None
        if queued > self.low:
            self._drained_at = None
            return None
        if self._drained_at is None:
            self._drained_at = now
        if now - self._drained_at >= self.hold:
            self.shedding, self._opened_at = False, now
            self._shed += now - self._closed_at
        return None

    def refuse(self) -> int:
        """Count one refused call; the Retry-After seconds to give it."""
        self.refused += 1
        return self._rng.randint(self._retry_after, 2 * self._retry_after)
