"""Auto attendant: ``hours_overrides`` (``pbx hours``) and ``cdr.ivr_path``.

Revision ID: 0006_hours
Revises: 0005_hunt
Create Date: 2026-12-14

Written by hand as a frozen snapshot (no imports from pbx).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_hours"
down_revision: str | Sequence[str] | None = "0005_hunt"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hours_overrides",
        sa.Column("schedule", sa.String(64), nullable=False,
                  comment="Schedule key in the dialplan, or * for every schedule."),
        sa.Column("mode", sa.String(8), nullable=False, comment="open or closed."),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True,
                  comment="UTC instant the override ends by itself; NULL: until pbx hours auto."),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False, comment="UTC instant it was set."),
        sa.CheckConstraint("mode IN ('open', 'closed')", name=op.f("ck_hours_overrides_mode")),
        sa.CheckConstraint("until IS NULL OR until > set_at", name=op.f("ck_hours_overrides_until_after_set")),
        sa.PrimaryKeyConstraint("schedule", name=op.f("pk_hours_overrides")),
        comment="Schedules forced open or closed by an administrator (pbx hours).",
    )
    with op.batch_alter_table("cdr") as batch:
        batch.add_column(sa.Column(
            "ivr_path", sa.String(512), nullable=True,
            comment="Auto attendant menus and keys, e.g. main[7 invalid|1]; secret entries show as (secret).",
        ))


def downgrade() -> None:
    with op.batch_alter_table("cdr") as batch:
        batch.drop_column("ivr_path")
    op.drop_table("hours_overrides")
