"""Blocks per (source, username): ``blocked_sources`` gains a ``username``
column and its primary key becomes (source, username).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

A block used to cover a whole source address, which let one guesser behind
an office's NAT lock every phone there out. Rows from before this revision
were whole-source blocks: they keep that meaning with the empty username.
Written by hand as a frozen snapshot (no imports from pbx).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: SQLite cannot change a primary key in place, so the table
    # is copied; PostgreSQL gets plain ALTERs.
    with op.batch_alter_table("blocked_sources", recreate="auto") as batch:
        batch.add_column(
            sa.Column(
                "username",
                sa.String(255),
                nullable=False,
                server_default="",
                comment="Username blocked from the source; empty: every username (a scanner).",
            )
        )
        batch.drop_constraint("pk_blocked_sources", type_="primary")
        batch.create_primary_key("pk_blocked_sources", ["source", "username"])


def downgrade() -> None:
    # A source may now have several rows; the old key allows one.
    op.execute("DELETE FROM blocked_sources WHERE username <> ''")
    with op.batch_alter_table("blocked_sources", recreate="auto") as batch:
        batch.drop_constraint("pk_blocked_sources", type_="primary")
        batch.drop_column("username")
        batch.create_primary_key("pk_blocked_sources", ["source"])
