"""Voicemail: voicemail_messages and voicemail_boxes.

Revision ID: 0011_voicemail
Revises: 0010_web
Create Date: 2026-12-07

Messages left in mailboxes (the audio is a WAV file under the voicemail
directory; the row names it) and each mailbox's PIN hash, greeting and
PIN lock-out. Written by hand as a frozen snapshot (no imports from pbx).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_voicemail"
down_revision: str | Sequence[str] | None = "0010_web"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voicemail_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False,
                  comment="Surrogate key, in arrival order."),
        sa.Column("mailbox", sa.String(8), nullable=False, comment="The extension whose mailbox it is in."),
        sa.Column("caller_number", sa.String(64), nullable=False,
                  comment="Who left it: extension or presented number."),
        sa.Column("caller_name", sa.String(255), nullable=True, comment="The caller's display name, if any."),
        sa.Column("call_uuid", sa.String(64), nullable=False, comment="The call it was left in (cdr.call_uuid)."),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False,
                  comment="UTC instant the message ended."),
        sa.Column("seconds", sa.Float(), nullable=False, comment="Length of the recording in seconds."),
        sa.Column("file", sa.String(255), nullable=False, comment="WAV file, relative to the voicemail directory."),
        sa.Column("heard", sa.Boolean(), nullable=False, server_default="0",
                  comment="Played to the owner (saved); false: new, the lamp is lit."),
        sa.Column("heard_at", sa.DateTime(timezone=True), nullable=True,
                  comment="UTC instant it was first heard; NULL: new."),
        sa.CheckConstraint("seconds >= 0", name=op.f("ck_voicemail_messages_seconds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voicemail_messages")),
        comment="Voicemail messages: who left them, when, how long, heard or not.",
    )
    op.create_index("ix_voicemail_messages_mailbox_received_at", "voicemail_messages", ["mailbox", "received_at"])
    op.create_table(
        "voicemail_boxes",
        sa.Column("mailbox", sa.String(8), nullable=False, comment="The extension number."),
        sa.Column("pin_hash", sa.String(255), nullable=True,
                  comment="argon2id hash of the PIN (PHC string); NULL: no PIN set, *98 cannot open it."),
        sa.Column("greeting", sa.String(255), nullable=True,
                  comment="The owner's recorded greeting, relative to the voicemail directory; NULL: none."),
        sa.Column("pin_failures", sa.Integer(), nullable=False, server_default="0",
                  comment="Wrong PINs in the current window."),
        sa.Column("failures_since", sa.DateTime(timezone=True), nullable=True,
                  comment="UTC instant the window of wrong PINs opened."),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True,
                  comment="UTC instant the lock-out ends; NULL: not locked."),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  comment="UTC instant of the last change."),
        sa.CheckConstraint("pin_failures >= 0", name=op.f("ck_voicemail_boxes_pin_failures")),
        sa.PrimaryKeyConstraint("mailbox", name=op.f("pk_voicemail_boxes")),
        comment="Voicemail mailboxes: PIN hash, greeting file and PIN lock-out.",
    )


def downgrade() -> None:
    op.drop_table("voicemail_boxes")
    op.drop_index("ix_voicemail_messages_mailbox_received_at", table_name="voicemail_messages")
    op.drop_table("voicemail_messages")
