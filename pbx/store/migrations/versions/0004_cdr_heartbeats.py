"""CDR: the last moment each node was known alive, for calls a crash cut.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-03

A call cut short by the process dying is closed as INTERRUPTED at the next
start; its end is its node's last heartbeat (one row per node, stamped every
few seconds and on in-dialog requests), not the restart time. Written by
hand as a frozen snapshot: it must not import pbx.cdr.models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ENDED_AT_BEFORE = (
    "UTC instant the call ended; NULL while in progress.  For INTERRUPTED"
    " rows, when the restarted PBX closed the row (an upper bound)."
)
_ENDED_AT_AFTER = (
    "UTC instant the call ended; NULL while in progress.  For INTERRUPTED"
    " rows, the last moment the call was known alive (a lower bound)."
)


def _ended_at_comment(comment: str, before: str) -> None:
    # SQLite keeps no comments (and cannot ALTER a column): nothing to do.
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "cdr",
            "ended_at",
            existing_type=sa.DateTime(timezone=True),
            existing_nullable=True,
            comment=comment,
            existing_comment=before,
        )


def upgrade() -> None:
    op.create_table(
        "cdr_heartbeats",
        sa.Column(
            "node", sa.String(255), nullable=False, comment="Name of the PBX node (cdr.node)."
        ),
        sa.Column(
            "alive_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="UTC instant the node was last known running with its calls in"
            " progress: the end of those a crash leaves open.",
        ),
        sa.PrimaryKeyConstraint("node", name=op.f("pk_cdr_heartbeats")),
        comment="Call detail records: each node's last sign of life.",
    )
    _ended_at_comment(_ENDED_AT_AFTER, _ENDED_AT_BEFORE)


def downgrade() -> None:
    _ended_at_comment(_ENDED_AT_BEFORE, _ENDED_AT_AFTER)
    op.drop_table("cdr_heartbeats")
