"""Several PBX nodes behind an edge proxy: registration_bindings.path,
budget_reservations, outside_call_starts and extension_calls.

Revision ID: 0014_cluster
Revises: 0012_recordings
Create Date: 2026-12-07

A phone registered through Kamailio is reached through it: the REGISTER's
Path header (RFC 3327) is kept with the binding, so any node sharing the
database sends requests to the phone by way of the edge. A paid call's
budget reservation is a row, so calls in progress on every node count
against a budget's room, and an extension's outside calls against its
caps; each node's count of calls per extension is a
row, so a member on a call through one node is busy for the others. Written by hand as a frozen snapshot (no imports
from pbx).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_cluster"
down_revision: str | Sequence[str] | None = "0012_recordings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("registration_bindings", schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            "path", sa.Text(), nullable=True,
            comment="Path header of the REGISTER (RFC 3327), comma-separated; the route to the phone."))
    op.create_table(
        "budget_reservations",
        sa.Column("call_uuid", sa.String(64), nullable=False, comment="The call (cdr.uuid) holding the reservation."),
        sa.Column("budget", sa.String(128), nullable=False, comment="The budget: kind:name, e.g. department:sales."),
        sa.Column("period", sa.String(16), nullable=False, comment="Period label, as budget_spend.period."),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False,
                  comment="Held: the cost of reserve_seconds of the call, in minor units."),
        sa.Column("node", sa.String(255), nullable=False,
                  comment="PBX node of the call; its rows go when it starts again after a crash."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  comment="UTC instant the reservation was made."),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_budget_reservations_amount_minor")),
        sa.PrimaryKeyConstraint("call_uuid", "budget", name=op.f("pk_budget_reservations")),
        comment="Budgets: the cost of reserve_seconds held by each paid call in progress.",
    )
    with op.batch_alter_table("budget_reservations", schema=None) as batch_op:
        batch_op.create_index("ix_budget_reservations_budget_period", ["budget", "period"], unique=False)
        batch_op.create_index("ix_budget_reservations_node", ["node"], unique=False)
    op.create_table(
        "outside_call_starts",
        sa.Column("call_uuid", sa.String(64), nullable=False, comment="The call (cdr.uuid)."),
        sa.Column("extension", sa.String(32), nullable=False, comment="The calling (paying) extension."),
        sa.Column("node", sa.String(255), nullable=False, comment="PBX node of the call."),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, comment="UTC instant it was let through."),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True, comment="UTC instant it ended; NULL: up."),
        sa.PrimaryKeyConstraint("call_uuid", name=op.f("pk_outside_call_starts")),
        comment="Outside calls per extension, for caps shared by nodes; kept a minute after they end.",
    )
    with op.batch_alter_table("outside_call_starts", schema=None) as batch_op:
        batch_op.create_index("ix_outside_call_starts_extension_started_at", ["extension", "started_at"], unique=False)
        batch_op.create_index("ix_outside_call_starts_node", ["node"], unique=False)
    op.create_table(
        "extension_calls",
        sa.Column("node", sa.String(255), nullable=False, comment="The PBX node (cdr.node)."),
        sa.Column("extension", sa.String(32), nullable=False, comment="The extension number."),
        sa.Column("calls", sa.Integer(), nullable=False, comment="Calls it is on through that node; no row at zero."),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, comment="UTC instant of the last change."),
        sa.CheckConstraint("calls > 0", name=op.f("ck_extension_calls_calls")),
        sa.PrimaryKeyConstraint("node", "extension", name=op.f("pk_extension_calls")),
        comment="Presence shared by nodes: calls in progress per extension and node.",
    )


def downgrade() -> None:
    op.drop_table("extension_calls")
    op.drop_table("outside_call_starts")
    op.drop_table("budget_reservations")
    with op.batch_alter_table("registration_bindings", schema=None) as batch_op:
        batch_op.drop_column("path")
