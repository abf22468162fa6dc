"""Several PBX nodes behind an edge proxy: registration_bindings.path.

Revision ID: 0014_cluster
Revises: 0010_web
Create Date: 2026-12-07

A phone registered through Kamailio is reached through it: the REGISTER's
Path header (RFC 3327) is kept with the binding, so any node sharing the
database sends requests to the phone by way of the edge. Written by hand as
a frozen snapshot (no imports from pbx).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_cluster"
down_revision: str | Sequence[str] | None = "0010_web"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("registration_bindings", schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            "path", sa.Text(), nullable=True,
            comment="Path header of the REGISTER (RFC 3327), comma-separated; the route to the phone."))


def downgrade() -> None:
    with op.batch_alter_table("registration_bindings", schema=None) as batch_op:
        batch_op.drop_column("path")
