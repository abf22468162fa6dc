"""Hunt groups' lasting state: hunt_member_state and hunt_group_state.

Revision ID: 0005_hunt
Revises: 0004
Create Date: 2026-12-07

Agents' log-ins, the round-robin position, when each member's last call
ended and today's call counts, so they survive restarts and reloads and are
shared by the nodes of one database. Written by hand as a frozen snapshot
(no imports from pbx).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_hunt"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _group() -> sa.Column[str]:
    return sa.Column("group_number", sa.String(16), nullable=False,
                     comment="The hunt group's number (hunt_groups.<number>).")


def upgrade() -> None:
    op.create_table(
        "hunt_member_state",
        _group(),
        sa.Column("member", sa.String(64), nullable=False,
                  comment="The member: an extension, or an outside number."),
        sa.Column("logged_in", sa.Boolean(), nullable=False, server_default="1",
                  comment="False once the agent logged out (*46, pbx hunt logout)."),
        sa.Column("login_changed_at", sa.DateTime(timezone=True), nullable=True,
                  comment="UTC instant the log-in state last changed; the newest change wins across nodes."),
        sa.Column("last_answered_at", sa.DateTime(timezone=True), nullable=True,
                  comment="UTC instant the member last took a call of the group."),
        sa.Column("last_ended_at", sa.DateTime(timezone=True), nullable=True,
                  comment="UTC instant the member's last call of the group ended (longest_idle)."),
        sa.Column("calls_day", sa.String(10), nullable=True,
                  comment="Day calls_count counts, YYYY-MM-DD in the dialplan's time zone."),
        sa.Column("calls_count", sa.Integer(), nullable=False, server_default="0",
                  comment="Calls of the group the member took on calls_day (fewest_calls)."),
        sa.CheckConstraint("calls_count >= 0", name="ck_hunt_member_state_calls_count"),
        sa.PrimaryKeyConstraint("group_number", "member", name="pk_hunt_member_state"),
        comment="Hunt group members: log-in state, last calls, today's count.",
    )
    op.create_table(
        "hunt_group_state",
        _group(),
        sa.Column("last_member", sa.String(64), nullable=True,
                  comment="The member who last took a call; circular starts after them."),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True, comment="UTC instant of the last change."),
        sa.PrimaryKeyConstraint("group_number", name="pk_hunt_group_state"),
        comment="Hunt groups: the round-robin position.",
    )


def downgrade() -> None:
    op.drop_table("hunt_group_state")
    op.drop_table("hunt_member_state")
