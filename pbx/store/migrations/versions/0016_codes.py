"""Account codes: account_code_secret, a fingerprint of the secret the
codes are hashed with.

Revision ID: 0016_codes
Revises: 0014_cluster
Create Date: 2026-12-07

The secret lives outside the database (var/account_codes.key, relative to
where pbx runs, or PBX_ACCOUNT_CODE_KEY). `pbx codes add` run from another
directory made a new secret there without a word, and the codes it printed
never worked. The fingerprint lets every user of the database see that its
codes were made with another secret. Written by hand as a frozen snapshot
(no imports from pbx).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_codes"
down_revision: str | Sequence[str] | None = "0014_cluster"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_code_secret",
        sa.Column("id", sa.Integer(), nullable=False, comment="Always 1: one secret per database."),
        sa.Column("fingerprint", sa.String(64), nullable=False,
                  comment="HMAC-SHA256 of a fixed text under the secret (hex): tells secrets apart, gives none away."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  comment="UTC instant the fingerprint was stored."),
        sa.CheckConstraint("id = 1", name=op.f("ck_account_code_secret_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_code_secret")),
        comment="Account codes: which secret the codes are hashed with (its fingerprint, never the secret).",
    )


def downgrade() -> None:
    op.drop_table("account_code_secret")
