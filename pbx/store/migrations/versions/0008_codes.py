"""Account codes: account_codes, account_code_lockouts; cdr.account_owner,
cdr.account_rights, the AUTH_FAILED disposition.

Revision ID: 0008_codes
Revises: 0009_features
Create Date: 2026-12-21

Written by hand as a frozen snapshot (no imports from pbx).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_codes"
down_revision: str | Sequence[str] | None = "0009_features"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_DISPOSITIONS_BEFORE = ("ANSWERED", "NO_ANSWER", "BUSY", "CANCELLED", "REJECTED", "UNAVAILABLE", "CONGESTION",
                        "FAILED", "INTERRUPTED")
_DISPOSITIONS = (*_DISPOSITIONS_BEFORE, "AUTH_FAILED")


def _disposition_check(values: Sequence[str]) -> str:
    return "disposition IS NULL OR disposition IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _when(name: str, comment: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, comment=comment)


def upgrade() -> None:
    op.create_table(
        "account_codes",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True, comment="The code's id, shown in the CDR."),
        sa.Column("digest", sa.String(64), nullable=False,
                  comment="HMAC-SHA256 of the digits under the server secret (hex)."),
        sa.Column("owner", sa.String(255), nullable=False, comment="Whose code it is (a person's name)."),
        sa.Column("employee_id", sa.String(64), nullable=True, comment="The owner's employee id."),
        sa.Column("department", sa.String(64), nullable=True, comment="The owner's department key."),
        sa.Column("class_of_service", sa.String(64), nullable=False,
                  comment="Rights the code carries: a class of service of the dialplan."),
        sa.Column("status", sa.String(8), nullable=False, comment="active or disabled."),
        _when("valid_from", "UTC instant the code starts to work."),
        _when("valid_until", "UTC instant the code stops working."),
        sa.Column("failed_attempts", sa.Integer(), nullable=False, server_default="0",
                  comment="Refused uses of the code, system-wide (disabled, expired, locked phone, rights exceeded)."),
        _when("flagged_at", "UTC instant failed_attempts reached the flag threshold."),
        _when("last_used_at", "UTC instant the code last placed a call."),
        _when("created_at", "UTC instant the code was added.", nullable=False),
        _when("updated_at", "UTC instant of the last change.", nullable=False),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f("ck_account_codes_status")),
        sa.CheckConstraint("valid_until IS NULL OR valid_from IS NULL OR valid_until > valid_from",
                           name=op.f("ck_account_codes_valid_span")),
        sa.CheckConstraint("failed_attempts >= 0", name=op.f("ck_account_codes_failed_attempts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_codes")),
        sa.UniqueConstraint("digest", name=op.f("uq_account_codes_digest")),
        comment="Account codes: owner, rights and validity; the code itself only as a keyed hash.",
    )
    op.create_table(
        "account_code_lockouts",
        sa.Column("source", sa.String(64), nullable=False, comment="Where the codes came from: ext:<extension>."),
        sa.Column("failures", sa.Integer(), nullable=False, comment="Wrong codes in the current window."),
        _when("window_started_at", "UTC instant of the window's first failure."),
        _when("locked_until", "UTC instant the lock ends; NULL: not locked."),
        _when("updated_at", "UTC instant of the last change.", nullable=False),
        sa.CheckConstraint("failures >= 0", name=op.f("ck_account_code_lockouts_failures")),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_account_code_lockouts")),
        comment="Account codes: wrong codes per source and lock-outs (brute-force protection).",
    )
    with op.batch_alter_table("cdr") as batch:
        batch.add_column(sa.Column("account_owner", sa.String(255), nullable=True,
                                   comment="Owner of that account code: whom the call is billed to."))
        batch.add_column(sa.Column("account_rights", sa.String(64), nullable=True,
                                   comment="Class of service the account code gave the call."))
        batch.alter_column("account_code", existing_type=sa.String(64), existing_nullable=True,
                           comment="Id of the account code the call was placed with (never its digits).",
                           existing_comment="Account code the caller entered, if one was asked.")
        batch.drop_constraint(op.f("ck_cdr_disposition"), type_="check")
        batch.create_check_constraint("disposition", _disposition_check(_DISPOSITIONS))
        batch.create_index("ix_cdr_account_code", ["account_code"])
        batch.create_index("ix_cdr_account_owner", ["account_owner"])


def downgrade() -> None:
    with op.batch_alter_table("cdr") as batch:
        batch.drop_index("ix_cdr_account_owner")
        batch.drop_index("ix_cdr_account_code")
        batch.drop_constraint(op.f("ck_cdr_disposition"), type_="check")
        batch.create_check_constraint("disposition", _disposition_check(_DISPOSITIONS_BEFORE))
        batch.alter_column("account_code", existing_type=sa.String(64), existing_nullable=True,
                           comment="Account code the caller entered, if one was asked.",
                           existing_comment="Id of the account code the call was placed with (never its digits).")
        batch.drop_column("account_rights")
        batch.drop_column("account_owner")
    op.drop_table("account_code_lockouts")
    op.drop_table("account_codes")
