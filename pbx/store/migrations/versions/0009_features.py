"""Call features: extension_features, offline_messages, cdr.transfer and cdr.linked_call.

Revision ID: 0009_features
Revises: 0006_hours
Create Date: 2026-12-21

Do not disturb and forwards per extension, chat messages kept for users
who are offline, and the CDR's record of transfers and forwards. Written by
hand as a frozen snapshot (no imports from pbx).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_features"
down_revision: str | Sequence[str] | None = "0006_hours"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "extension_features",
        sa.Column("extension", sa.String(8), nullable=False, comment="The extension number."),
        sa.Column("dnd", sa.Boolean(), nullable=False, server_default="0",
                  comment="Do not disturb: callers get busy (or the busy forward)."),
        sa.Column("forward_always", sa.String(32), nullable=True,
                  comment="Unconditional forward target (*72); NULL: off."),
        sa.Column("forward_busy", sa.String(32), nullable=True, comment="Forward when busy (*90); NULL: off."),
        sa.Column("forward_no_answer", sa.String(32), nullable=True,
                  comment="Forward after the ring time (*92); NULL: off."),
        sa.Column("forward_unreachable", sa.String(32), nullable=True,
                  comment="Forward when no phone is registered; NULL: off."),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  comment="UTC instant of the last change; the newest wins."),
        sa.PrimaryKeyConstraint("extension", name=op.f("pk_extension_features")),
        comment="Per-extension call features: do not disturb and call forwarding.",
    )
    op.create_table(
        "offline_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False,
                  comment="Surrogate key, in arrival order."),
        sa.Column("recipient", sa.String(8), nullable=False, comment="The extension it is for."),
        sa.Column("sender", sa.String(8), nullable=False, comment="The authenticated extension that sent it."),
        sa.Column("content_type", sa.String(128), nullable=False, comment="Its Content-Type, e.g. text/plain."),
        sa.Column("body", sa.LargeBinary(), nullable=False, comment="The message body as sent."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, comment="UTC instant it arrived."),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False,
                  comment="UTC instant it is dropped undelivered."),
        sa.CheckConstraint("expires_at > created_at", name=op.f("ck_offline_messages_expires_after_created")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offline_messages")),
        comment="Chat messages waiting for their recipient to register.",
    )
    op.create_index("ix_offline_messages_recipient_created_at", "offline_messages", ["recipient", "created_at"])
    with op.batch_alter_table("cdr") as batch:
        batch.add_column(sa.Column(
            "transfer", sa.String(512), nullable=True,
            comment="Transfers and forwards the call took, in order, e.g. 'blind 2002 -> 2003';"
            " 'forward busy 2002 -> 2004'.",
        ))
        batch.add_column(sa.Column(
            "linked_call", sa.String(36), nullable=True,
            comment="call_uuid of the call an attended transfer joined to this one (both rows name the other).",
        ))


def downgrade() -> None:
    with op.batch_alter_table("cdr") as batch:
        batch.drop_column("linked_call")
        batch.drop_column("transfer")
    op.drop_index("ix_offline_messages_recipient_created_at", table_name="offline_messages")
    op.drop_table("offline_messages")
    op.drop_table("extension_features")
