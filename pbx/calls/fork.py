"""One fork engine: ring a set of targets, pick one outcome.

A :class:`Fork` rings targets in stages. Each target is a branch: a
registered contact (one INVITE) or a trunk (one INVITE per gateway, in
order, with failover). A stage starts at its ``after`` time (a ``chained`` one
never on time), or sooner when every branch started so far has failed (so "desk first, mobile after 10 s"
and, later, a hunt group member by member are the same engine). A target may
also ring for a limited time (``ring_for``, counted from when its branch is
placed: a hunt group member's ring time): then its legs are cancelled and
the branch ends as not answered, which lets the next stage start. Rules
(RFC 3261 §16.7 as a B2BUA applies them to its own legs):

- the first 2xx wins; every other live leg gets CANCEL with
  ``Reason: SIP;cause=200;text="Call completed elsewhere"`` (RFC 3326), so
  phones show no missed call; a 2xx that comes later is ACKed and BYEd
  (§13.2.2.4, a 2xx cannot be refused);
- a 3xx or 6xx stops the fork: the other legs are cancelled, later stages
  never start, and the call ends (§16.7 step 5, §21.6);
- when every branch has failed and no stage is left, :func:`outcome` picks
  the one answer the caller gets from all the final statuses.

The engine decides and keeps the legs; the coordinator places INVITEs for
it (``Dialer``) and times it (``deadline`` / ``on_timer``). No clock reads.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pbx.cdr.records import Disposition, HangupSide, disposition_for_status
from pbx.registrar.bindings import Binding
from pbx.sip.message import Header
from pbx.sip.session import InviteSession
from pbx.trunks.outbound import TrunkDialling, Verdict, verdict

COMPLETED_ELSEWHERE: Header = ("reason", 'SIP;cause=200;text="Call completed elsewhere"')


class LegState(enum.Enum):
    CALLING = "calling"
    EARLY = "early"          # a provisional (180/183) came back
    ANSWERED = "answered"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(slots=True, kw_only=True)
class Leg:
    """One INVITE to one place: the CDR's leg attempt."""

    contact: str
    session: InviteSession
    started_at: float
    """Wall-clock seconds, for the CDR."""
    trunk: str | None = None
    """The trunk this leg goes out through; None for a leg to a contact."""
    target: str | None = None
    """The extension or number the leg reaches (the CDR leg's target)."""
    member: str | None = None
    """The hunt group member this leg rings, if it rings one."""
    state: LegState = LegState.CALLING
    status: int | None = None
    ended_at: float | None = None
    on_close: Callable[[], None] | None = field(default=None, repr=False)
    """Called once when the leg stops ringing (the busy lamps' "ringing")."""

    @property
    def live(self) -> bool:
        return self.state in (LegState.CALLING, LegState.EARLY)

    @property
    def call_id(self) -> str:
        return self.session.dialog.call_id

    def close(self, state: LegState, status: int | None, at: float) -> None:
        self.state, self.status, self.ended_at = state, status, at
        self.stopped_ringing()

    def stopped_ringing(self) -> None:
        """Run ``on_close`` if it has not run yet."""
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactTarget:
    """A registered contact of an extension, called From ``from_uri``."""

    binding: Binding
    extension: str
    from_uri: str
    after: float = 0.0
    ring_for: float | None = None
    """Seconds this branch rings at most once placed; None: as long as the call."""
    member: str | None = None
    """The hunt group member it rings."""
    chained: bool = False
    """Starts only once every branch started before it has ended, never on
    time (``after`` then only orders the stages): a hunt group's next
    member, who must not ring while the one before still does."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkTarget:
    """A number through a trunk, its gateways tried in order."""

    dialling: TrunkDialling
    after: float = 0.0
    ring_for: float | None = None
    member: str | None = None
    chained: bool = False


Target = ContactTarget | TrunkTarget


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the caller is told when nobody answered, and the CDR's words."""

    status: int
    disposition: Disposition
    reason: str
    side: HangupSide = HangupSide.CALLEE


@dataclass(frozen=True, slots=True)
class BranchEnd:
    """How one branch ended: its status and, when it knows better than the
    status says (a trunk whose gateways all failed), its own words."""

    status: int
    reason: str | None = None
    disposition: Disposition | None = None
    side: HangupSide = HangupSide.CALLEE


NO_ANSWER = frozenset({408, 480, 487})


def outcome(ends: Sequence[BranchEnd], *, unreachable: Outcome | None = None) -> Outcome:
    """The one answer for a fork whose branches all failed (§16.7 step 6):
    a 6xx wins (600 is busy everywhere); then busy (486); then nobody
    answering anywhere (phones' 408/480/487: no answer); then
    ``unreachable`` when the caller asked to be told that (a group member);
    then the best final response: lowest class first, 4xx before 5xx, told
    in the branch's own words when it has them."""
    statuses = [end.status for end in ends]
    if not ends:
        return unreachable or Outcome(480, Disposition.UNAVAILABLE, "not_registered", HangupSide.PBX)
    decline = next((s for s in statuses if s >= 600), None)
    if decline is not None:
        if decline == 600:
            return Outcome(600, Disposition.BUSY, "busy")
        return Outcome(decline, Disposition.REJECTED, "declined")
    if 486 in statuses:
        return Outcome(486, Disposition.BUSY, "busy")
    if all(end.status in NO_ANSWER and end.disposition is None for end in ends):
        return Outcome(480, Disposition.NO_ANSWER, "no_answer")
    if unreachable is not None:
        return unreachable
    best = min(ends, key=lambda end: (7 if end.status // 100 == 3 else end.status // 100, end.status))
    disposition = best.disposition or disposition_for_status(best.status)
    return Outcome(best.status, disposition, best.reason or "callee_error", best.side)


class Dialer:
    """How a fork places its INVITEs: the coordinator implements this."""

    def invite_contact(self, target: ContactTarget) -> Leg:
        raise NotImplementedError

    def invite_gateway(self, target: TrunkTarget) -> Leg:
        raise NotImplementedError

    def gateway_failed(self, target: TrunkTarget, leg: Leg, why: str, following: bool) -> None:
        """Told for the log when a gateway is given up on."""


@dataclass(slots=True)
class _Branch:
    target: Target
    legs: list[Leg] = field(default_factory=list)
    end: BranchEnd | None = None
    silence_due: float | None = None
    """Trunk: when the current gateway's ``invite_timeout`` runs out."""
    ring_due: float | None = None
    """When the target's ``ring_for`` runs out."""

    @property
    def current(self) -> Leg | None:
        return self.legs[-1] if self.legs else None


class Fork:
    """The B side of one call while it rings."""

    def __init__(self, targets: Sequence[Target], dialer: Dialer, *, wall: Callable[[], float],
                 unreachable: Outcome | None = None) -> None:
        self._waiting = sorted(targets, key=lambda t: t.after)
        self._unreachable = unreachable
        self._dialer: Dialer | None = dialer
        self._wall = wall
        self._branches: list[_Branch] = []
        self._started_at = 0.0
        self.legs: list[Leg] = []
        """Every leg placed, in order: the CDR's leg attempts."""
        self.winner: Leg | None = None
        self.stopped = False
        """A 2xx, 3xx or 6xx (or the caller) ended the ringing."""
        self._finished = False

    # ------------------------------------------------------------ running

    def start(self, now: float) -> Outcome | None:
        """Place the first stage; an outcome when nothing could be placed."""
        self._started_at = now
        self._start_due(now, force=True)
        return self._settle(now)

    def _start_due(self, now: float, *, force: bool) -> None:
        """Start every waiting target whose time came; with ``force`` (all
        started branches failed) the next stage at once."""
        while self._waiting and not self.stopped:
            after = self._waiting[0].after
            on_time = not self._waiting[0].chained and self._started_at + after <= now
            if not on_time and not (force and not self._any_live()):
                return
            while self._waiting and self._waiting[0].after == after:
                self._place(self._waiting.pop(0), now)
            force = False

    def _place(self, target: Target, now: float) -> None:
        branch = _Branch(target, ring_due=None if target.ring_for is None else now + target.ring_for)
        self._branches.append(branch)
        self._next_leg(branch, now)

    def _next_leg(self, branch: _Branch, now: float) -> None:
        target = branch.target
        if isinstance(target, ContactTarget):
            leg = self._dialing().invite_contact(target)
        else:
            leg = self._dialing().invite_gateway(target)
            branch.silence_due = now + target.dialling.trunk.invite_timeout
        branch.legs.append(leg)
        self.legs.append(leg)

    def _dialing(self) -> Dialer:
        if self._dialer is None:
            raise RuntimeError("the fork was released")
        return self._dialer

    def release(self) -> None:
        """The call is over: let go of the dialer (it refers back to the
        call), so the call is freed by reference counting, not by the cycle
        collector, which the server runs rarely."""
        self._dialer = None
        self._waiting.clear()
        self._branches = []  # the legs stay, for the CDR; a late answer is released without them

    def _any_live(self) -> bool:
        return any(branch.end is None for branch in self._branches)

    def _settle(self, now: float) -> Outcome | None:
        """Start what waits if everything started has failed; the outcome
        when nothing is left to try."""
        if self.winner is not None or self._finished:
            return None
        if not self._any_live() and self._waiting and not self.stopped:
            self._start_due(now, force=True)
        if self._any_live() or (self._waiting and not self.stopped):
            return None
        self.stopped = self._finished = True
        result = outcome([b.end for b in self._branches if b.end is not None], unreachable=self._unreachable)
        self.release()
        return result

    def _branch_of(self, leg: Leg) -> _Branch | None:
        for branch in self._branches:
            if leg in branch.legs:
                return branch
        return None

    # ------------------------------------------------------------ leg events

    def on_early(self, leg: Leg) -> None:
        if leg.live:
            leg.state = LegState.EARLY
            branch = self._branch_of(leg)
            if branch is not None and leg is branch.current:
                branch.silence_due = None  # the gateway is alive

    def on_answered(self, leg: Leg) -> bool:
        """A 2xx on ``leg``: True when it wins the call. A loser (another leg
        won, the caller left, a gateway given up on) is ACKed and BYEd."""
        if self.winner is not None or self.stopped or not leg.live:
            leg.session.hangup()
            return False
        leg.close(LegState.ANSWERED, 200, self._wall())
        leg.ended_at = None
        self.winner = leg
        self.stopped = True
        for other in self.legs:
            if other is not leg and other.live:
                other.close(LegState.CANCELLED, other.status, self._wall())
                other.session.cancel([COMPLETED_ELSEWHERE])
        self.release()  # nothing more to place, for the rest of the call
        return True

    def on_failed(self, leg: Leg, status: int, reason: str, now: float) -> Outcome | None:
        """A leg's INVITE ended without a 2xx (after the session's own
        challenge and 422 retries)."""
        branch = self._branch_of(leg)
        if branch is None or branch.end is not None or leg is not branch.current or leg.state is LegState.FAILED:
            if leg.state is not LegState.CANCELLED:
                leg.close(LegState.FAILED, leg.status or status, leg.ended_at or self._wall())
            elif leg.status is None:
                leg.status = status
            return None
        was_cancelled = leg.state is LegState.CANCELLED
        leg.close(LegState.CANCELLED if was_cancelled else LegState.FAILED, status, self._wall())
        branch.silence_due = None
        target = branch.target
        if isinstance(target, TrunkTarget) and not self.stopped:
            if reason == "auth_refused":
                branch.end = BranchEnd(503, "trunk_auth_failed", Disposition.FAILED, HangupSide.PBX)
            elif reason in ("timeout", "transport") or verdict(status) is Verdict.NEXT_GATEWAY:
                self._fail_over(branch, target, leg, "no_response" if reason != "rejected" else str(status), now)
            else:
                branch.end = BranchEnd(status, f"trunk_{status}", disposition_for_status(status))
        else:
            branch.end = BranchEnd(status)
        if branch.end is not None and (300 <= status < 400 or status >= 600) and not self.stopped:
            self._cancel_rest([])  # §16.7: 3xx and 6xx end the fork
        return self._settle(now)

    def _fail_over(self, branch: _Branch, target: TrunkTarget, leg: Leg, why: str, now: float) -> None:
        following = target.dialling.next_gateway(why)
        self._dialing().gateway_failed(target, leg, why, following is not None)
        if following is None:
            branch.end = BranchEnd(503, "trunk_unavailable", Disposition.CONGESTION, HangupSide.PBX)
        else:
            self._next_leg(branch, now)

    def _rang_out(self, branch: _Branch) -> None:
        """The target's ring time is over: cancel it (a plain CANCEL: the
        member did miss the call) and count it as not answered."""
        branch.ring_due = branch.silence_due = None
        at = self._wall()
        for leg in branch.legs:
            if leg.live:
                leg.close(LegState.FAILED, 408, at)
                leg.session.cancel()
        branch.end = BranchEnd(408)

    def stop(self, headers: Sequence[Header]) -> None:
        """Stop ringing for the caller (who left, or whose time ran out):
        CANCEL every live leg with ``headers``; no outcome follows."""
        self._cancel_rest(headers)
        self._finished = True
        self.release()

    def _cancel_rest(self, headers: Sequence[Header]) -> None:
        self.stopped = True
        self._waiting.clear()
        at = self._wall()
        for branch in self._branches:
            branch.silence_due = None
            for leg in branch.legs:
                if leg.live:
                    leg.close(LegState.CANCELLED, None, at)
                    leg.session.cancel(headers)
            if branch.end is None:
                branch.end = BranchEnd(487)

    # ------------------------------------------------------------ time

    def deadline(self) -> float | None:
        due = [b.silence_due for b in self._branches if b.silence_due is not None]
        due.extend(b.ring_due for b in self._branches if b.ring_due is not None and b.end is None)
        if self._waiting and not self.stopped and not self._waiting[0].chained:
            due.append(self._started_at + self._waiting[0].after)
        return min(due, default=None)

    def on_timer(self, now: float) -> Outcome | None:
        if self.stopped:
            return None
        for branch in list(self._branches):
            if branch.ring_due is not None and now >= branch.ring_due and branch.end is None:
                self._rang_out(branch)
                continue
            if branch.silence_due is not None and now >= branch.silence_due and branch.end is None:
                branch.silence_due = None
                leg = branch.current
                target = branch.target
                if leg is None or not isinstance(target, TrunkTarget):
                    continue
                # Nothing at all from the gateway: next one. The INVITE is
                # cancelled, so if it wakes up its 2xx gets ACK and BYE.
                leg.close(LegState.FAILED, 408, self._wall())
                leg.session.cancel()
                self._fail_over(branch, target, leg, "timeout", now)
        self._start_due(now, force=False)
        return self._settle(now)
