"""Call detail records: cdr and cdr_legs.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02

Written by hand as a frozen snapshot: it must not import pbx.cdr.models or
pbx.cdr.records, which will keep changing after this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same as pbx.store.models.BigId at this revision.
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The enum values at this revision, stored as text.
_DISPOSITIONS = (
    "ANSWERED",
    "NO_ANSWER",
    "BUSY",
    "CANCELLED",
    "REJECTED",
    "UNAVAILABLE",
    "CONGESTION",
    "FAILED",
    "INTERRUPTED",
)
_HANGUP_SIDES = ("caller", "callee", "pbx")
_LEG_RESULTS = ("ANSWERED", "NO_ANSWER", "BUSY", "REJECTED", "CANCELLED", "FAILED")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _text(name: str, length: int, comment: str, *, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=nullable, comment=comment)


def _when(name: str, comment: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, comment=comment)


def upgrade() -> None:
    op.create_table(
        "cdr",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True, comment="Surrogate key."),
        _text(
            "call_uuid",
            36,
            "The PBX's own id of the call (UUID text); writes upsert on it.",
            nullable=False,
        ),
        _text("node", 255, "Name of the PBX node that handled the call.", nullable=False),
        _text(
            "call_id", 255, "SIP Call-ID of the caller's leg (RFC 3261 §8.1.1.4).", nullable=False
        ),
        _when("started_at", "UTC instant the INVITE arrived.", nullable=False),
        _when("answered_at", "UTC instant the answer was relayed to the caller; NULL if never."),
        _when(
            "ended_at",
            "UTC instant the call ended; NULL while in progress.  For INTERRUPTED"
            " rows, when the restarted PBX closed the row (an upper bound).",
        ),
        sa.Column(
            "duration",
            sa.Integer(),
            nullable=True,
            comment="Seconds from start to end, rounded to the nearest.",
        ),
        sa.Column(
            "billsec",
            sa.Integer(),
            nullable=True,
            comment="Seconds from answer to end, rounded to the nearest; 0 if unanswered.",
        ),
        _text(
            "caller_number",
            255,
            "Caller: authenticated extension, or the trunk's From user.",
            nullable=False,
        ),
        _text("caller_name", 255, "Caller display name as presented."),
        _text("caller_department", 255, "Department of the calling extension."),
        _text(
            "dialed_number",
            255,
            "What the caller dialled (Request-URI user part).",
            nullable=False,
        ),
        _text(
            "destination",
            255,
            "Extension or number finally reached (or last tried, if unanswered).",
        ),
        _text("disposition", 16, "How the call ended; NULL while in progress."),
        sa.Column(
            "hangup_status",
            sa.Integer(),
            nullable=True,
            comment="SIP status that ended the call (final response to the caller);"
            " NULL for a plain BYE.",
        ),
        _text("hangup_side", 16, "Who ended the call: caller, callee or pbx."),
        _text("reason", 255, "Why, in words: Reason header or a snake_case tag."),
        _text("rule", 255, "Name of the dialplan rule that routed the call."),
        _text(
            "call_class", 64, "Class of the call, e.g. internal, local, mobile, international."
        ),
        _text("account_code", 64, "Account code the caller entered, if one was asked."),
        _text("hunt_group", 255, "Hunt group the call rang, if any."),
        _text("answered_by", 255, "Hunt group member that answered."),
        _text("trunk", 255, "Trunk the call went out (or came in) over."),
        _text("short_number", 64, "Short number dialled, if one."),
        _text("resolved_number", 255, "Number the short number stood for."),
        _text("member", 255, "Group member whose short number was used."),
        sa.Column(
            "cost",
            sa.Numeric(14, 6),
            nullable=True,
            comment="Cost of the call in the tariff's currency.",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdr")),
        sa.UniqueConstraint("call_uuid", name=op.f("uq_cdr_call_uuid")),
        sa.CheckConstraint(
            "disposition IS NULL OR " + _in("disposition", _DISPOSITIONS),
            name=op.f("ck_cdr_disposition"),
        ),
        sa.CheckConstraint(
            "hangup_side IS NULL OR " + _in("hangup_side", _HANGUP_SIDES),
            name=op.f("ck_cdr_hangup_side"),
        ),
        sa.CheckConstraint(
            "(ended_at IS NULL AND disposition IS NULL AND duration IS NULL"
            " AND billsec IS NULL AND hangup_side IS NULL)"
            " OR (ended_at IS NOT NULL AND disposition IS NOT NULL AND duration IS NOT NULL"
            " AND billsec IS NOT NULL AND hangup_side IS NOT NULL)",
            name=op.f("ck_cdr_ended_complete"),
        ),
        sa.CheckConstraint(
            "ended_at IS NULL OR ended_at >= started_at", name=op.f("ck_cdr_ended_after_start")
        ),
        sa.CheckConstraint(
            "answered_at IS NULL OR answered_at >= started_at",
            name=op.f("ck_cdr_answered_after_start"),
        ),
        sa.CheckConstraint(
            "answered_at IS NULL OR ended_at IS NULL OR ended_at >= answered_at",
            name=op.f("ck_cdr_ended_after_answer"),
        ),
        sa.CheckConstraint("duration IS NULL OR duration >= 0", name=op.f("ck_cdr_duration")),
        sa.CheckConstraint(
            "billsec IS NULL OR (billsec >= 0 AND billsec <= duration)",
            name=op.f("ck_cdr_billsec"),
        ),
        sa.CheckConstraint(
            "answered_at IS NOT NULL OR billsec IS NULL OR billsec = 0",
            name=op.f("ck_cdr_billsec_unanswered"),
        ),
        sa.CheckConstraint(
            "disposition IS NULL OR disposition <> 'ANSWERED' OR answered_at IS NOT NULL",
            name=op.f("ck_cdr_answered_has_time"),
        ),
        sa.CheckConstraint(
            "hangup_status IS NULL OR hangup_status BETWEEN 100 AND 699",
            name=op.f("ck_cdr_hangup_status"),
        ),
        comment="Call detail records: one row per call.",
    )
    op.create_index(op.f("ix_cdr_started_at"), "cdr", ["started_at"])
    op.create_index(op.f("ix_cdr_call_id"), "cdr", ["call_id"])
    op.create_index(op.f("ix_cdr_caller_number"), "cdr", ["caller_number"])
    op.create_index(op.f("ix_cdr_dialed_number"), "cdr", ["dialed_number"])
    op.create_index(op.f("ix_cdr_destination"), "cdr", ["destination"])
    op.create_index(op.f("ix_cdr_node_ended_at"), "cdr", ["node", "ended_at"])

    op.create_table(
        "cdr_legs",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True, comment="Surrogate key."),
        _text(
            "call_uuid", 36, "The call (cdr.call_uuid) this leg belongs to.", nullable=False
        ),
        sa.Column(
            "attempt",
            sa.Integer(),
            nullable=False,
            comment="1 for the first contact tried for the call, then 2, 3 ...",
        ),
        _text("target", 255, "Extension or number the leg tried to reach.", nullable=False),
        _text("contact", 2048, "Contact URI the INVITE was sent to.", nullable=False),
        _text("call_id", 255, "SIP Call-ID of this leg."),
        _when("started_at", "UTC instant the INVITE was sent.", nullable=False),
        _when("answered_at", "UTC instant the contact answered (2xx)."),
        _when("ended_at", "UTC instant the attempt was over.", nullable=False),
        _text("result", 16, "Outcome: ANSWERED, NO_ANSWER, BUSY ...", nullable=False),
        sa.Column(
            "status",
            sa.Integer(),
            nullable=True,
            comment="Final SIP status the contact sent, if any.",
        ),
        _text("reason", 255, "Why, in words: Reason header or a snake_case tag."),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdr_legs")),
        sa.ForeignKeyConstraint(
            ["call_uuid"],
            ["cdr.call_uuid"],
            name=op.f("fk_cdr_legs_call_uuid_cdr"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("call_uuid", "attempt", name=op.f("uq_cdr_legs_call_uuid_attempt")),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_cdr_legs_attempt")),
        sa.CheckConstraint(_in("result", _LEG_RESULTS), name=op.f("ck_cdr_legs_result")),
        sa.CheckConstraint(
            "ended_at >= started_at", name=op.f("ck_cdr_legs_ended_after_start")
        ),
        sa.CheckConstraint(
            "answered_at IS NULL OR (answered_at >= started_at AND answered_at <= ended_at)",
            name=op.f("ck_cdr_legs_answered_between"),
        ),
        sa.CheckConstraint(
            "status IS NULL OR status BETWEEN 100 AND 699", name=op.f("ck_cdr_legs_status")
        ),
        comment="Call detail records: each contact rung for a call, with its result.",
    )


def downgrade() -> None:
    op.drop_table("cdr_legs")
    for index in (
        "ix_cdr_node_ended_at",
        "ix_cdr_destination",
        "ix_cdr_dialed_number",
        "ix_cdr_caller_number",
        "ix_cdr_call_id",
        "ix_cdr_started_at",
    ):
        op.drop_index(index, table_name="cdr")
    op.drop_table("cdr")
