"""Registration bindings and blocked sources.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written by hand as a frozen snapshot: it must not import pbx.store.models,
whose classes will keep changing after this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same as pbx.store.models.BigId at this revision.
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "registration_bindings",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True, comment="Surrogate key."),
        sa.Column(
            "aor",
            sa.String(255),
            nullable=False,
            comment="Address-of-record user part: the extension, e.g. 1001.",
        ),
        sa.Column(
            "contact",
            sa.String(2048),
            nullable=False,
            comment="Contact URI exactly as registered (RFC 3261 §10.2.1).",
        ),
        sa.Column(
            "expires_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="UTC instant the binding lapses unless refreshed (§10.2.1.1).",
        ),
        sa.Column(
            "call_id",
            sa.String(255),
            nullable=False,
            comment="Call-ID of the REGISTER that made the binding (§10.3 step 7).",
        ),
        sa.Column(
            "cseq",
            sa.BigInteger(),
            nullable=False,
            comment="CSeq number of that REGISTER; refreshes must be higher.",
        ),
        sa.Column(
            "q",
            sa.Float(),
            nullable=True,
            comment="Contact q preference 0..1 (§10.2.1.2); NULL when the phone sent none.",
        ),
        sa.Column(
            "transport",
            sa.String(8),
            nullable=False,
            comment="Transport the REGISTER came over: udp, tcp or tls.",
        ),
        sa.Column(
            "source_host",
            sa.String(64),
            nullable=False,
            comment="IP the REGISTER came from; requests to a NATed phone go here.",
        ),
        sa.Column(
            "source_port", sa.Integer(), nullable=False, comment="Port the REGISTER came from."
        ),
        sa.Column(
            "connection_id",
            sa.String(255),
            nullable=True,
            comment="TCP/TLS connection on `node` the phone registered over.",
        ),
        sa.Column(
            "node",
            sa.String(255),
            nullable=False,
            comment="Name of the PBX node that took the registration.",
        ),
        sa.Column(
            "user_agent",
            sa.String(512),
            nullable=True,
            comment="User-Agent header of the REGISTER, for diagnostics.",
        ),
        sa.Column(
            "instance_id",
            sa.String(512),
            nullable=True,
            comment="+sip.instance Contact parameter (RFC 5626 §4.1).",
        ),
        sa.Column(
            "reg_id",
            sa.Integer(),
            nullable=True,
            comment="reg-id Contact parameter (RFC 5626 §4.2).",
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="UTC instant of the last write.",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registration_bindings")),
        sa.UniqueConstraint("aor", "contact", name=op.f("uq_registration_bindings_aor_contact")),
        sa.CheckConstraint(
            "transport IN ('udp', 'tcp', 'tls')", name=op.f("ck_registration_bindings_transport")
        ),
        sa.CheckConstraint(
            "source_port BETWEEN 1 AND 65535", name=op.f("ck_registration_bindings_source_port")
        ),
        sa.CheckConstraint("cseq >= 0", name=op.f("ck_registration_bindings_cseq")),
        sa.CheckConstraint(
            "q IS NULL OR (q >= 0 AND q <= 1)", name=op.f("ck_registration_bindings_q")
        ),
        comment="Active registrations: where each extension can be reached.",
    )
    op.create_index(
        op.f("ix_registration_bindings_expires_at"), "registration_bindings", ["expires_at"]
    )

    op.create_table(
        "blocked_sources",
        sa.Column(
            "source",
            sa.String(64),
            nullable=False,
            comment="Blocked IP address, canonical text form.",
        ),
        sa.Column(
            "blocked_until",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="UTC instant the block ends.",
        ),
        sa.Column(
            "reason",
            sa.String(255),
            nullable=False,
            comment="Stable snake_case tag of why, e.g. auth_failures.",
        ),
        sa.Column(
            "failures",
            sa.Integer(),
            nullable=False,
            comment="Failures counted when the block was set.",
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="UTC instant first blocked.",
        ),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_blocked_sources")),
        sa.CheckConstraint("failures >= 0", name=op.f("ck_blocked_sources_failures")),
        comment="Source IPs temporarily refused (brute-force protection).",
    )
    op.create_index(op.f("ix_blocked_sources_blocked_until"), "blocked_sources", ["blocked_until"])


def downgrade() -> None:
    op.drop_index("ix_blocked_sources_blocked_until", table_name="blocked_sources")
    op.drop_table("blocked_sources")
    op.drop_index("ix_registration_bindings_expires_at", table_name="registration_bindings")
    op.drop_table("registration_bindings")
