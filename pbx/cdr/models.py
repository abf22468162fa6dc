"""Call detail records: one ``cdr`` row per call, one ``cdr_legs`` row per
contact rung for it.

On the same `Base` as the rest of the PBX state, so one Alembic chain
(``pbx/store/migrations``, revisions 0002 and 0003) creates these tables too.

Life of a row: inserted when the call starts (``ended_at`` NULL: in
progress), updated when it is answered and when it ends.  Every write is an
upsert keyed on ``call_uuid``, so a retried or regrouped write never makes a
second row.  A row still open when its node starts again was cut short by a
crash and is closed as ``INTERRUPTED``, ended at the node's last sign of life
in ``cdr_heartbeats`` (see `pbx.cdr.writer.recover_interrupted`).

Invariants the database enforces (`CheckConstraint`):

* an ended row has its disposition, duration, billsec and hangup side; an
  open row has none of them;
* started <= answered <= ended, 0 <= billsec <= duration;
* ANSWERED rows have an answer time; unanswered rows have billsec 0.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from pbx.cdr.records import Disposition, HangupSide, LegResult
from pbx.store.models import Base, BigId

# Width of the enum columns; every value fits.
ENUM_LENGTH = 16
# A UUID in its canonical 36-character text form (RFC 9562 §4).
UUID_LENGTH = 36


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def _in(column: str, enum: type[StrEnum]) -> str:
    quoted = ", ".join(f"'{value}'" for value in _values(enum))
    return f"{column} IN ({quoted})"


def _stored_by_value(enum: type[StrEnum]) -> Enum:
    # VARCHAR plus the explicit CHECK in __table_args__ (not a native ENUM
    # type): adding a value later is a plain constraint change on both
    # backends.
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=ENUM_LENGTH,
        values_callable=_values,
        validate_strings=True,
    )


class CallRecord(Base):
    """One call, from the caller's INVITE to its end."""

    __tablename__ = "cdr"
    __table_args__ = (
        UniqueConstraint("call_uuid"),
        Index("ix_cdr_started_at", "started_at"),
        Index("ix_cdr_call_id", "call_id"),
        Index("ix_cdr_caller_number", "caller_number"),
        Index("ix_cdr_dialed_number", "dialed_number"),
        Index("ix_cdr_destination", "destination"),
        Index("ix_cdr_node_ended_at", "node", "ended_at"),
        Index("ix_cdr_account_code", "account_code"),
        Index("ix_cdr_account_owner", "account_owner"),
        CheckConstraint(
            "disposition IS NULL OR " + _in("disposition", Disposition), name="disposition"
        ),
        CheckConstraint(
            "hangup_side IS NULL OR " + _in("hangup_side", HangupSide), name="hangup_side"
        ),
        CheckConstraint(
            "(ended_at IS NULL AND disposition IS NULL AND duration IS NULL"
            " AND billsec IS NULL AND hangup_side IS NULL)"
            " OR (ended_at IS NOT NULL AND disposition IS NOT NULL AND duration IS NOT NULL"
            " AND billsec IS NOT NULL AND hangup_side IS NOT NULL)",
            name="ended_complete",
        ),
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ended_after_start"),
        CheckConstraint(
            "answered_at IS NULL OR answered_at >= started_at", name="answered_after_start"
        ),
        CheckConstraint(
            "answered_at IS NULL OR ended_at IS NULL OR ended_at >= answered_at",
            name="ended_after_answer",
        ),
        CheckConstraint("duration IS NULL OR duration >= 0", name="duration"),
        CheckConstraint(
            "billsec IS NULL OR (billsec >= 0 AND billsec <= duration)", name="billsec"
        ),
        CheckConstraint(
            "answered_at IS NOT NULL OR billsec IS NULL OR billsec = 0", name="billsec_unanswered"
        ),
        CheckConstraint(
            "disposition IS NULL OR disposition <> 'ANSWERED' OR answered_at IS NOT NULL",
            name="answered_has_time",
        ),
        CheckConstraint(
            "hangup_status IS NULL OR hangup_status BETWEEN 100 AND 699", name="hangup_status"
        ),
        {"comment": "Call detail records: one row per call."},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, comment="Surrogate key.")
    call_uuid: Mapped[str] = mapped_column(
        String(UUID_LENGTH),
        comment="The PBX's own id of the call (UUID text); writes upsert on it.",
    )
    node: Mapped[str] = mapped_column(
        String(255), comment="Name of the PBX node that handled the call."
    )
    call_id: Mapped[str] = mapped_column(
        String(255), comment="SIP Call-ID of the caller's leg (RFC 3261 §8.1.1.4)."
    )
    started_at: Mapped[datetime] = mapped_column(comment="UTC instant the INVITE arrived.")
    answered_at: Mapped[datetime | None] = mapped_column(
        comment="UTC instant the answer was relayed to the caller; NULL if never."
    )
    ended_at: Mapped[datetime | None] = mapped_column(
        comment="UTC instant the call ended; NULL while in progress.  For INTERRUPTED"
        " rows, the last moment the call was known alive (a lower bound)."
    )
    duration: Mapped[int | None] = mapped_column(
        Integer, comment="Seconds from start to end, rounded to the nearest."
    )
    billsec: Mapped[int | None] = mapped_column(
        Integer, comment="Seconds from answer to end, rounded to the nearest; 0 if unanswered."
    )
    caller_number: Mapped[str] = mapped_column(
        String(255), comment="Caller: authenticated extension, or the trunk's From user."
    )
    caller_name: Mapped[str | None] = mapped_column(
        String(255), comment="Caller display name as presented."
    )
    caller_department: Mapped[str | None] = mapped_column(
        String(255), comment="Department of the calling extension."
    )
    dialed_number: Mapped[str] = mapped_column(
        String(255), comment="What the caller dialled (Request-URI user part)."
    )
    destination: Mapped[str | None] = mapped_column(
        String(255),
        comment="Extension or number finally reached (or last tried, if unanswered).",
    )
    disposition: Mapped[Disposition | None] = mapped_column(
        _stored_by_value(Disposition), comment="How the call ended; NULL while in progress."
    )
    hangup_status: Mapped[int | None] = mapped_column(
        Integer,
        comment="SIP status that ended the call (final response to the caller);"
        " NULL for a plain BYE.",
    )
    hangup_side: Mapped[HangupSide | None] = mapped_column(
        _stored_by_value(HangupSide), comment="Who ended the call: caller, callee or pbx."
    )
    reason: Mapped[str | None] = mapped_column(
        String(255), comment="Why, in words: Reason header or a snake_case tag."
    )
    rule: Mapped[str | None] = mapped_column(
        String(255), comment="Name of the dialplan rule that routed the call."
    )
    call_class: Mapped[str | None] = mapped_column(
        String(64), comment="Class of the call, e.g. internal, local, mobile, international."
    )
    account_code: Mapped[str | None] = mapped_column(
        String(64), comment="Id of the account code the call was placed with (never its digits)."
    )
    account_owner: Mapped[str | None] = mapped_column(
        String(255), comment="Owner of that account code: whom the call is billed to."
    )
    account_rights: Mapped[str | None] = mapped_column(
        String(64), comment="Class of service the account code gave the call."
    )
    hunt_group: Mapped[str | None] = mapped_column(
        String(255), comment="Hunt group the call rang, if any."
    )
    answered_by: Mapped[str | None] = mapped_column(
        String(255), comment="Hunt group member that answered."
    )
    trunk: Mapped[str | None] = mapped_column(
        String(255), comment="Trunk the call went out (or came in) over."
    )
    short_number: Mapped[str | None] = mapped_column(
        String(64), comment="Short number dialled, if one."
    )
    resolved_number: Mapped[str | None] = mapped_column(
        String(255), comment="Number the short number stood for."
    )
    member: Mapped[str | None] = mapped_column(
        String(255), comment="Group member whose short number was used."
    )
    cost: Mapped[Decimal | None] = mapped_column(
        Numeric(14, 6), comment="Cost of the call in the tariff's currency."
    )
    ivr_path: Mapped[str | None] = mapped_column(
        String(512),
        comment="Auto attendant menus and keys, e.g. main[7 invalid|1]; secret entries show as (secret).",
    )
    transfer: Mapped[str | None] = mapped_column(
        String(512),
        comment="Transfers and forwards the call took, in order, e.g. 'blind 2002 -> 2003';"
        " 'forward busy 2002 -> 2004'.",
    )
    linked_call: Mapped[str | None] = mapped_column(
        String(UUID_LENGTH),
        comment="call_uuid of the call an attended transfer joined to this one (both rows name the other).",
    )
    cost_minor: Mapped[int | None] = mapped_column(
        BigInteger, comment="Cost in minor units of `currency` (exact; what reports and budgets sum)."
    )
    currency: Mapped[str | None] = mapped_column(
        String(3), comment="ISO 4217 code of the cost's currency."
    )
    tariff: Mapped[str | None] = mapped_column(
        String(64), comment="Id of the dialplan tariff that priced the call."
    )
    project: Mapped[str | None] = mapped_column(
        String(64), comment="Project tag of the calling extension, for budgets and reports."
    )
    recording: Mapped[str | None] = mapped_column(
        String(64), comment="File name of the call's recording in the recording directory; NULL: not recorded."
    )
    billed_to: Mapped[str | None] = mapped_column(
        String(255), comment="Extension that pays when not the caller: whose forward or transfer took the call"
        " out; reports and budgets count the cost there. NULL: the caller pays."
    )
    billed_department: Mapped[str | None] = mapped_column(
        String(255), comment="Department of billed_to."
    )


class CallLeg(Base):
    """One attempt to reach one contact for a call (a B-leg INVITE)."""

    __tablename__ = "cdr_legs"
    __table_args__ = (
        UniqueConstraint("call_uuid", "attempt"),
        CheckConstraint("attempt >= 1", name="attempt"),
        CheckConstraint(_in("result", LegResult), name="result"),
        CheckConstraint("ended_at >= started_at", name="ended_after_start"),
        CheckConstraint(
            "answered_at IS NULL OR (answered_at >= started_at AND answered_at <= ended_at)",
            name="answered_between",
        ),
        CheckConstraint("status IS NULL OR status BETWEEN 100 AND 699", name="status"),
        {"comment": "Call detail records: each contact rung for a call, with its result."},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, comment="Surrogate key.")
    call_uuid: Mapped[str] = mapped_column(
        String(UUID_LENGTH),
        ForeignKey("cdr.call_uuid", ondelete="CASCADE"),
        comment="The call (cdr.call_uuid) this leg belongs to.",
    )
    attempt: Mapped[int] = mapped_column(
        Integer, comment="1 for the first contact tried for the call, then 2, 3 ..."
    )
    target: Mapped[str] = mapped_column(
        String(255), comment="Extension or number the leg tried to reach."
    )
    contact: Mapped[str] = mapped_column(
        String(2048), comment="Contact URI the INVITE was sent to."
    )
    call_id: Mapped[str | None] = mapped_column(
        String(255), comment="SIP Call-ID of this leg."
    )
    started_at: Mapped[datetime] = mapped_column(comment="UTC instant the INVITE was sent.")
    answered_at: Mapped[datetime | None] = mapped_column(
        comment="UTC instant the contact answered (2xx)."
    )
    ended_at: Mapped[datetime] = mapped_column(comment="UTC instant the attempt was over.")
    result: Mapped[LegResult] = mapped_column(
        _stored_by_value(LegResult), comment="Outcome: ANSWERED, NO_ANSWER, BUSY ..."
    )
    status: Mapped[int | None] = mapped_column(
        Integer, comment="Final SIP status the contact sent, if any."
    )
    reason: Mapped[str | None] = mapped_column(
        String(255), comment="Why, in words: Reason header or a snake_case tag."
    )


class NodeHeartbeat(Base):
    """When a PBX node was last known running: one row per node, stamped
    every few seconds while it has calls in progress (one tiny write, however
    many calls), so a crash's open rows can end there."""

    __tablename__ = "cdr_heartbeats"
    __table_args__ = ({"comment": "Call detail records: each node's last sign of life."},)

    node: Mapped[str] = mapped_column(
        String(255), primary_key=True, comment="Name of the PBX node (cdr.node)."
    )
    alive_at: Mapped[datetime] = mapped_column(
        comment="UTC instant the node was last known running with its calls in"
        " progress: the end of those a crash leaves open."
    )
