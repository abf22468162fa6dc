"""Call recording: the CDR row names the call's recording file.

Revision ID: 0012_recordings
Revises: 0011_voicemail
Create Date: 2026-12-07

Written by hand as a frozen snapshot: it must not import the models. The
chain is put in order at merge (other migrations are being written beside it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_recordings"
down_revision: str | Sequence[str] | None = "0011_voicemail"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN: SQLite adds it in place, without copying the CDRs.
    op.add_column("cdr", sa.Column(
        "recording", sa.String(64), nullable=True,
        comment="File name of the call's recording in the recording directory; NULL: not recorded."))


def downgrade() -> None:
    with op.batch_alter_table("cdr") as batch:
        batch.drop_column("recording")
