"""Cost control: the cost of each call in minor units, its currency, tariff
and project on the CDR; spend per budget and period.

Revision ID: 0007
Revises: 0008_codes
Create Date: 2026-01-10

Written by hand as a frozen snapshot: it must not import the models. (0005
and 0006 are being written alongside; the chain is put in order at merge.)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0008_codes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

def upgrade() -> None:
    # Plain ADD COLUMNs (no constraint): SQLite adds them in place, without
    # copying a year of CDRs into a new table.
    op.add_column("cdr", sa.Column(
        "cost_minor", sa.BigInteger(), nullable=True,
        comment="Cost in minor units of `currency` (exact; what reports and budgets sum)."))
    op.add_column("cdr", sa.Column("currency", sa.String(3), nullable=True,
                                   comment="ISO 4217 code of the cost's currency."))
    op.add_column("cdr", sa.Column("tariff", sa.String(64), nullable=True,
                                   comment="Id of the dialplan tariff that priced the call."))
    op.add_column("cdr", sa.Column("project", sa.String(64), nullable=True,
                                   comment="Project tag of the calling extension, for budgets and reports."))
    op.create_table(
        "budget_spend",
        sa.Column("budget", sa.String(128), nullable=False,
                  comment="The budget: kind:name, e.g. department:sales."),
        sa.Column("period", sa.String(16), nullable=False,
                  comment="Period label: 2026-12, 2026-W51 or 2026-12-24."),
        sa.Column("spent_minor", sa.BigInteger(), nullable=False,
                  comment="Cost of the period's settled calls, in minor units of the plan's currency."),
        sa.Column("warned_at", sa.DateTime(timezone=True), nullable=True,
                  comment="UTC instant the warning alert was claimed (one per budget and period); NULL: not yet."),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  comment="UTC instant of the last write."),
        sa.CheckConstraint("spent_minor >= 0", name=op.f("ck_budget_spend_spent_minor")),
        sa.PrimaryKeyConstraint("budget", "period", name=op.f("pk_budget_spend")),
        comment="Budgets: spend per budget and period, and whether its alert went out.",
    )


def downgrade() -> None:
    op.drop_table("budget_spend")
    with op.batch_alter_table("cdr") as batch:
        for column in ("project", "tariff", "currency", "cost_minor"):
            batch.drop_column(column)
