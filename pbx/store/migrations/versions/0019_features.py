"""Who pays for a call its caller did not take out: cdr.billed_to and
cdr.billed_department.

Revision ID: 0019_features
Revises: 0016_codes
Create Date: 2026-12-07

A forward to an outside number is paid by the extension that forwards, a
transfer out by the transferor; the caller stays the caller. Reports and
budgets count a row's cost at billed_to (and its department) when it is
set. Written by hand as a frozen snapshot (no imports from pbx).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_features"
down_revision: str | Sequence[str] | None = "0016_codes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cdr", schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            "billed_to", sa.String(255), nullable=True,
            comment="Extension that pays when not the caller: whose forward or transfer took the call out;"
            " reports and budgets count the cost there. NULL: the caller pays."))
        batch_op.add_column(sa.Column("billed_department", sa.String(255), nullable=True,
                                      comment="Department of billed_to."))


def downgrade() -> None:
    with op.batch_alter_table("cdr", schema=None) as batch_op:
        batch_op.drop_column("billed_department")
        batch_op.drop_column("billed_to")
