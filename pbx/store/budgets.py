"""Spend per budget and period in the shared store (``budget_spend``).

Every node adds each settled call's cost to the rows of the budgets it was
charged to (an atomic ``spent = spent + cost``), reads the current
period's rows every few seconds, and claims a budget's warning alert with
a conditional update, so exactly one node sends it per period. The rows
can always be made again from the CDRs (:func:`recount`): spend is the sum
of ``cost_minor`` of the calls started in the period.

Functions take a `Connection` and do not commit: run them as
`BackgroundWriter` ops, or inside ``engine.begin()`` from the command line.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, Table, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from pbx.routing.budgets import Budget, Period
from pbx.store.models import Base, BudgetSpend, require_aware

SPEND: Final[Table] = Base.metadata.tables[BudgetSpend.__tablename__]

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

    columns = {"extension": CDR.c.caller_number, "department": CDR.c.caller_department,
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
