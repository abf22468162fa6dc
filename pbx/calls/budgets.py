"""Counting spend against budgets, with a reservation per call being placed,
and the refusal when a budget has no room.

Which budgets a call is charged to is the dialplan's business
(:func:`pbx.routing.budgets.budgets_for`); this module counts. A paid call
is admitted only if the cost of ``reserve_seconds`` of it fits in what each
of its budgets has left after what is spent *and* what calls in progress
hold: so twenty calls started in the same millisecond against room for
three place three, and a budget is never overrun by more than the calls in
progress running past their reservation (a call is never cut). When the
call ends its hold is released and its real cost settles; a call that
never connected costs nothing.

Spend comes from the store (shared by the nodes, :mod:`pbx.billing.keeper`
reads it every few seconds) plus this node's settlements not yet in what
was last read; reservations here are this node's only. So with several
nodes on PostgreSQL a call this ledger admits also carries a
:class:`SharedHold`: before it rings, the reservation is made again in the
store, under the budget row's lock, against the spend and the calls in
progress of every node (``pbx.store.budgets.reserve``); only then is it
placed, else ``refuse`` says what happens instead.

Pure: no clock, no I/O; the controller calls it on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pbx.calls.limits import LimitHit
from pbx.calls.plan import Action, End, quoted_text
from pbx.cdr.records import Disposition
from pbx.routing.budgets import Budget
from pbx.routing.call_limits import CallerLimits, LimitName

Slot = tuple[str, str]
"""(budget key, period label)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetHit:
    """A paid call does not fit in ``budget``."""

    budget: Budget
    period: str
    spent: int
    reserved: int
    """Held by calls in progress (this node's; every node's when the
    shared store refused)."""
    needed: int
    """The new call's reservation."""

    reason = "budget_exhausted"


@dataclass(frozen=True, slots=True, kw_only=True)
class Crossed:
    """A settlement brought ``budget``'s spend in ``period`` to its warning level."""

    budget: Budget
    period: str
    spent: int
    warn_level: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Charge:
    budget: Budget
    period: str
    warn_level: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Hold:
    charges: tuple[Charge, ...]
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OutsideSlot:
    """An outside call to count against its extension's caps in the store."""

    extension: str
    limits: CallerLimits
    refuse: Callable[[LimitHit], Action]
    """What the call does when the store says a cap is reached."""

    def hit(self, limit: LimitName, current: int, retry_after: int | None) -> LimitHit:
        cap = self.limits.simultaneous if limit == "simultaneous" else self.limits.per_minute
        return LimitHit(limit=limit, value=cap.value, current=current, rule=cap.rule, retry_after=retry_after)


def _no_budget(hit: BudgetHit) -> Action:
    raise AssertionError("a hold without charges cannot be refused for a budget")


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedHold:
    """What a call must hold in the shared store before it rings: its
    outside-call slot, its budget reservation, or both (one transaction)."""

    charges: tuple[Charge, ...] = ()
    amount: int = 0
    refuse: Callable[[BudgetHit], Action] = _no_budget
    """What the call does when the store says a budget has no room."""
    outside: OutsideSlot | None = None

    def limits(self) -> dict[Slot, int]:
        return {(charge.budget.key, charge.period): charge.budget.limit for charge in self.charges}

    def hit(self, slot: Slot, spent: int, reserved: int) -> BudgetHit:
        """The store's refusal of ``slot`` as a ``BudgetHit``."""
        budget = next(charge.budget for charge in self.charges if (charge.budget.key, charge.period) == slot)
        return BudgetHit(budget=budget, period=slot[1], spent=spent, reserved=reserved, needed=self.amount)


class SharedReservations(Protocol):
    """The store's side of :class:`SharedHold` (``pbx.billing.shared``)."""

    def reserve(self, call: str, hold: SharedHold, done: Callable[[BudgetHit | LimitHit | None], None]) -> None:
        """Make ``call``'s reservation; ``done`` is called on the event
        loop with None (held), the cap reached or the budget without room."""

    def release(self, call: str) -> None:
        """``call`` ended: drop what it holds (after its cost is written)."""


class SpendListener(Protocol):
    """Told of every settlement (the store and the alerts, at the edge)."""

    def settled(self, charges: tuple[Charge, ...], cost: int, crossed: list[Crossed]) -> None: ...


class BudgetLedger:
    """Spend and reservations per budget and period, on this node."""

    def __init__(self, listener: SpendListener | None = None) -> None:
        self.listener = listener
        self._read: dict[Slot, int] = {}
        """Spend as last read from the store."""
        self._local: list[tuple[int, Slot, int]] = []
        """(sequence, slot, cost) of this node's settlements since that read."""
        self._seq = 0
        self._reserved: dict[Slot, int] = {}
        self._holds: dict[str, _Hold] = {}
        self._warned: set[Slot] = set()

    # ------------------------------------------------------------ reading

    def spent(self, budget_key: str, period: str) -> int:
        slot = (budget_key, period)
        return self._read.get(slot, 0) + sum(cost for _, where, cost in self._local if where == slot)

    def reserved(self, budget_key: str, period: str) -> int:
        return self._reserved.get((budget_key, period), 0)

    def holding(self) -> int:
        """Calls with a reservation."""
        return len(self._holds)

    # ------------------------------------------------------------ calls

    def admit(self, call: str, charges: tuple[Charge, ...], amount: int) -> BudgetHit | None:
        """Reserve ``amount`` for ``call`` in every budget of ``charges``, or
        say which has no room (then nothing is held)."""
        if call in self._holds:
            raise ValueError(f"call {call} already holds a reservation")
        for charge in charges:
            key = charge.budget.key
            spent, held = self.spent(key, charge.period), self.reserved(key, charge.period)
            if spent + held + amount > charge.budget.limit:
                return BudgetHit(budget=charge.budget, period=charge.period, spent=spent, reserved=held,
                                 needed=amount)
        for charge in charges:
            slot = (charge.budget.key, charge.period)
            self._reserved[slot] = self._reserved.get(slot, 0) + amount
        self._holds[call] = _Hold(charges=charges, amount=amount)
        return None

    def settle(self, call: str, cost: int) -> list[Crossed]:
        """``call`` ended having cost ``cost``: its hold goes, its cost
        counts. Idempotent; a call never admitted is ignored. Returns the
        budgets it brought to their warning level (once per period each)."""
        hold = self._holds.pop(call, None)
        if hold is None:
            return []
        crossed: list[Crossed] = []
        for charge in hold.charges:
            slot = (charge.budget.key, charge.period)
            left = self._reserved[slot] - hold.amount
            if left:
                self._reserved[slot] = left
            else:
                del self._reserved[slot]
            if cost:
                self._seq += 1
                self._local.append((self._seq, slot, cost))
            spent = self.spent(*slot)
            if spent >= charge.warn_level and slot not in self._warned:
                self._warned.add(slot)
                crossed.append(Crossed(budget=charge.budget, period=charge.period, spent=spent,
                                       warn_level=charge.warn_level))
        if self.listener is not None and (cost or crossed):
            self.listener.settled(hold.charges, cost, crossed)
        return crossed

    # ------------------------------------------------------------ the store

    def mark(self) -> int:
        """Where this node's settlements stand; pass it to :meth:`load`
        with what the store said *after* every settlement up to here was
        committed there (the writer commits in order)."""
        return self._seq

    def load(self, read: Mapping[Slot, int], mark: int, warned: set[Slot] | None = None) -> None:
        """Spend as read from the store once settlements up to ``mark`` were
        in it; later ones stay counted on top. ``warned``: slots whose alert
        another node (or an earlier run) already claimed."""
        self._read = dict(read)
        self._local = [entry for entry in self._local if entry[0] > mark]
        if warned:
            self._warned |= warned


def transfer_hold(call: str) -> str:
    """The ledger key of the outside leg a blind transfer of ``call``
    places: held and settled apart from the call's own."""
    return f"{call}/transfer"


def refusal(hit: BudgetHit, domain: str, money: str, limit: str) -> End:
    """403 Budget Exhausted with the budget in a Reason and a Warning
    (RFC 3261 §20.43, code 399). 403, not 486: it does not lift by itself
    within minutes, only in the next period or by a raise, so a phone must
    not retry (§21.4.4). ``money``/``limit``: spend and limit written out."""
    text = quoted_text(f"{hit.budget.rule}: {money} of {limit} used in {hit.period}"
                       " (calls in progress included)")
    headers = (
        ("reason", f'SIP;cause=403;text="{hit.reason}: {hit.budget.rule}"'),
        ("warning", f'399 {domain} "{text}"'),
    )
    return End(status=403, disposition=Disposition.REJECTED, reason=hit.reason, headers=headers,
               phrase="Budget Exhausted")
