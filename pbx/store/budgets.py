"""Spend per budget and period in the shared store (``budget_spend``).

Every node adds each settled call's cost to the rows of the budgets it was
charged to (an atomic ``spent = spent + cost``), reads the current
period's rows every few seconds, and claims a budget's warning alert with
a conditional update, so exactly one node sends it per period. The rows
can always be made again from the CDRs (:func:`recount`): spend is the sum
of ``cost_minor`` of the calls started in the period.

Several nodes: a paid call's reservation is a row of ``budget_reservations``
(:func:`reserve`), checked and written under the lock of the budget's
``budget_spend`` row, so calls started at once on different nodes are
counted one after the other and a budget's room is never handed out twice;
:func:`release` drops it when the call ends (after its cost was added, in
the same writer batch), :func:`release_node` drops a crashed node's.
An extension's outside calls are counted the same way against its caps
(:func:`admit_outside`, ``outside_call_starts``), under a transaction-scoped
advisory lock per extension.

Functions take a `Connection` and do not commit: run them as
`BackgroundWriter` ops, or inside ``engine.begin()`` from the command line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection, Table, and_, delete, func, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from pbx.routing.budgets import Budget, Period
from pbx.routing.call_limits import LimitName
from pbx.store.models import Base, BudgetReservation, BudgetSpend, OutsideCallStart, require_aware

SPEND: Final[Table] = Base.metadata.tables[BudgetSpend.__tablename__]
RESERVATIONS: Final[Table] = Base.metadata.tables[BudgetReservation.__tablename__]
OUTSIDE: Final[Table] = Base.metadata.tables[OutsideCallStart.__tablename__]
# Seconds a start counts against per_minute (as pbx.calls.limits.WINDOW).
OUTSIDE_WINDOW: Final = timedelta(seconds=60)

Slot = tuple[str, str]


def _insert(conn: Connection) -> postgresql.Insert | sqlite.Insert:
    return postgresql.insert(SPEND) if conn.dialect.name == "postgresql" else sqlite.insert(SPEND)


def add_spend(slots: Iterable[Slot], cost: int, now: datetime, conn: Connection) -> None:
    """Add ``cost`` to each (budget, period) of ``slots``."""
    require_aware("now", now)
    rows = [{"budget": key, "period": period, "spent_minor": cost, "updated_at": now} for key, period in slots]
    if not rows or cost == 0:
        return
    statement = _insert(conn)
    conn.execute(statement.on_conflict_do_update(
        index_elements=["budget", "period"],
        set_={"spent_minor": SPEND.c.spent_minor + statement.excluded.spent_minor,
              "updated_at": statement.excluded.updated_at},
    ), rows)


def read_spend(period: str, conn: Connection) -> tuple[dict[Slot, int], set[Slot]]:
    """The spend of every budget in ``period``, and which have been warned."""
    spent: dict[Slot, int] = {}
    warned: set[Slot] = set()
    query = select(SPEND.c.budget, SPEND.c.spent_minor, SPEND.c.warned_at).where(SPEND.c.period == period)
    for row in conn.execute(query):
        spent[(row.budget, period)] = int(row.spent_minor)
        if row.warned_at is not None:
            warned.add((row.budget, period))
    return spent, warned


def reserve(call: str, limits: Mapping[Slot, int], amount: int, node: str, now: datetime,
            conn: Connection) -> tuple[Slot, int, int] | None:
    """Hold ``amount`` for ``call`` in every budget of ``limits`` (slot to
    its limit), or, when one has no room, (that slot, its spend, what calls
    in progress hold there) and nothing is held.

    The slots' spend rows are made if missing, then locked in key order (no
    deadlock between two calls charged to the same budgets); a reservation
    or a settlement of the same budget elsewhere waits for the commit."""
    require_aware("now", now)
    slots = sorted(limits)
    if not slots:
        return None
    conn.execute(_insert(conn).on_conflict_do_nothing(index_elements=["budget", "period"]),
                 [{"budget": key, "period": period, "spent_minor": 0, "updated_at": now} for key, period in slots])
    keys = tuple_(SPEND.c.budget, SPEND.c.period).in_(slots)
    spent = {(row.budget, row.period): int(row.spent_minor) for row in conn.execute(
        select(SPEND.c.budget, SPEND.c.period, SPEND.c.spent_minor).where(keys)
        .order_by(SPEND.c.budget, SPEND.c.period).with_for_update())}
    held = {(row.budget, row.period): int(row.held) for row in conn.execute(
        select(RESERVATIONS.c.budget, RESERVATIONS.c.period, func.sum(RESERVATIONS.c.amount_minor).label("held"))
        .where(tuple_(RESERVATIONS.c.budget, RESERVATIONS.c.period).in_(slots), RESERVATIONS.c.call_uuid != call)
        .group_by(RESERVATIONS.c.budget, RESERVATIONS.c.period))}
    for slot in slots:
        if spent.get(slot, 0) + held.get(slot, 0) + amount > limits[slot]:
            return slot, spent.get(slot, 0), held.get(slot, 0)
    conn.execute(delete(RESERVATIONS).where(RESERVATIONS.c.call_uuid == call))
    conn.execute(RESERVATIONS.insert(), [
        {"call_uuid": call, "budget": key, "period": period, "amount_minor": amount, "node": node,
         "created_at": now} for key, period in slots])
    return None


def admit_outside(call: str, extension: str, simultaneous: int, per_minute: int, node: str, now: datetime,
                  conn: Connection) -> tuple[LimitName, int, int | None] | None:
    """Count ``call`` as ``extension``'s new outside call on any node, or say
    which cap it would break: (``simultaneous`` or ``per_minute``, calls
    counted, seconds until the rate lets one through or None); then nothing
    is counted. Starts older than the window are dropped on the way."""
    require_aware("now", now)
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"outside:{extension}"})
    cutoff = now - OUTSIDE_WINDOW
    conn.execute(delete(OUTSIDE).where(OUTSIDE.c.extension == extension, OUTSIDE.c.started_at <= cutoff,
                                       OUTSIDE.c.ended_at.is_not(None)))
    rows = conn.execute(select(OUTSIDE.c.started_at, OUTSIDE.c.ended_at).where(
        OUTSIDE.c.extension == extension, OUTSIDE.c.call_uuid != call)).all()
    up = sum(1 for row in rows if row.ended_at is None)
    if up >= simultaneous:
        return "simultaneous", up, None
    recent = sorted(row.started_at for row in rows if row.started_at > cutoff)
    if len(recent) >= per_minute:
        frees_at = recent[len(recent) - per_minute] + OUTSIDE_WINDOW
        return "per_minute", len(recent), max(1, math.ceil((frees_at - now).total_seconds()))
    conn.execute(delete(OUTSIDE).where(OUTSIDE.c.call_uuid == call))
    conn.execute(OUTSIDE.insert().values(call_uuid=call, extension=extension, node=node, started_at=now))
    return None


def release(call: str, now: datetime, conn: Connection) -> None:
    """``call`` ended: what it held goes (its cost is in ``budget_spend``);
    its outside call is up no more (its start still counts a minute)."""
    conn.execute(delete(RESERVATIONS).where(RESERVATIONS.c.call_uuid == call))
    conn.execute(update(OUTSIDE).where(OUTSIDE.c.call_uuid == call, OUTSIDE.c.ended_at.is_(None))
                 .values(ended_at=now))


def release_node(node: str, now: datetime, conn: Connection) -> int:
    """Drop what ``node``'s calls held: at its start, or once another node
    found it dead, those calls are gone (their CDRs are closed as
    INTERRUPTED). Budget rows removed."""
    conn.execute(update(OUTSIDE).where(OUTSIDE.c.node == node, OUTSIDE.c.ended_at.is_(None)).values(ended_at=now))
    return int(conn.execute(delete(RESERVATIONS).where(RESERVATIONS.c.node == node)).rowcount)


def claim_warning(key: str, period: str, now: datetime, conn: Connection) -> bool:
    """True for the one caller that first claims the warning of ``key`` in
    ``period`` (any node, any run); False once it is claimed."""
    require_aware("now", now)
    conn.execute(_insert(conn).values(budget=key, period=period, spent_minor=0, updated_at=now)
                 .on_conflict_do_nothing(index_elements=["budget", "period"]))
    result = conn.execute(update(SPEND).where(
        and_(SPEND.c.budget == key, SPEND.c.period == period, SPEND.c.warned_at.is_(None)),
    ).values(warned_at=now))
    return result.rowcount == 1


def spend_from_cdr(budgets: Iterable[Budget], period: Period, conn: Connection) -> dict[str, int]:
    """Each budget's spend in ``period`` counted from the CDRs."""
    from pbx.cdr.writer import CDR  # the CDR tables sit on the same metadata

    from pbx.cdr.reports import payer_department, payer_number

    columns = {"extension": payer_number(), "department": payer_department(),
               "project": CDR.c.project, "account_code": CDR.c.account_code}
    in_period = and_(CDR.c.started_at >= period.start, CDR.c.started_at < period.end, CDR.c.cost_minor.is_not(None))
    out: dict[str, int] = {}
    for budget in budgets:
        total = conn.execute(select(func.coalesce(func.sum(CDR.c.cost_minor), 0)).where(
            in_period, columns[budget.kind] == budget.name)).scalar_one()
        out[budget.key] = int(total)
    return out


def recount(budgets: Iterable[Budget], period: Period, now: datetime, conn: Connection, *,
            only_missing: bool = False) -> dict[str, int]:
    """Set each budget's spend in ``period`` to what the CDRs say (keeping
    whether it was warned). ``only_missing``: fill in rows that are not
    there (lost), leave the others. Returns what was counted."""
    counted = spend_from_cdr(budgets, period, conn)
    for key, total in counted.items():
        statement = _insert(conn).values(budget=key, period=period.label, spent_minor=total, updated_at=now)
        if only_missing:
            conn.execute(statement.on_conflict_do_nothing(index_elements=["budget", "period"]))
        else:
            conn.execute(statement.on_conflict_do_update(
                index_elements=["budget", "period"],
                set_={"spent_minor": statement.excluded.spent_minor, "updated_at": statement.excluded.updated_at}))
    return counted
