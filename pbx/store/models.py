"""SQLAlchemy 2 models of the lasting PBX state.

Rules kept by every table here:

* Timestamps are timezone-aware UTC (`UtcDateTime`).  A naive datetime is
  refused when bound, because guessing its zone is how registrations expire
  an hour early after a DST change.
* Invariants the database can check are `CheckConstraint`s, so a bug in one
  PBX node cannot write a row another node would choke on.
* Constraint names follow `NAMING_CONVENTION`, so Alembic migrations can
  refer to them by name on every backend.

The schema itself is created by the Alembic chain in `migrations/`; these
classes must stay in step with it (tests compare the two).  Later tables (the
CDRs) subclass the same `Base` so they share metadata and migrations.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def require_aware(name: str, value: datetime) -> None:
    """ValueError unless `value` is a timezone-aware datetime."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


class UtcDateTime(TypeDecorator[datetime]):
    """An instant in time, stored and returned as timezone-aware UTC.

    PostgreSQL keeps `timestamptz` natively.  SQLite has no date type and
    SQLAlchemy's SQLite DATETIME silently drops the offset, so values are
    converted to UTC first and stored as naive UTC text (fixed width, so text
    comparison in SQL is time comparison); reading them back re-attaches UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        require_aware("timestamp", value)
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # The same text as SQLite's DATETIME processor after
        # `process_bind_param` (zero-padded, microseconds always written), in
        # one C call instead of a format over seven attributes: the CDR
        # writer binds three per row (tests/store/test_utc_datetime.py).
        def to_text(value: datetime | None) -> str | None:
            if value is None:
                return None
            if type(value) is datetime and value.tzinfo is UTC:
                # What the PBX makes: no conversion, only the "+00:00" cut.
                return value.isoformat(" ", "microseconds")[:-6]
            require_aware("timestamp", value)
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

        return to_text

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base shared by every PBX table (registrations, blocks, CDRs)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UtcDateTime(),
        str: String(255),
        float: Float(),
        int: Integer(),
    }


# Every module that declares tables on `Base`.  Alembic's autogenerate and
# the schema test import them all, so `Base.metadata` is complete; a new
# model module must be added here.
MODEL_MODULES: Final = ("pbx.store.models", "pbx.cdr.models", "pbx.store.codes", "pbx.web.models")


def load_all_models() -> MetaData:
    """Import every model module and return the complete metadata."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return Base.metadata


# PostgreSQL's ON CONFLICT DO UPDATE takes a sequence value on every call even
# when it ends up updating, and phones refresh their registration every few
# minutes: a 32-bit id would run out within months on a busy system.
BigId = BigInteger().with_variant(Integer(), "sqlite")

TRANSPORTS: tuple[str, ...] = ("udp", "tcp", "tls")


class RegistrationBinding(Base):
    """One Contact bound to an address-of-record (RFC 3261 §10.3).

    Unique on (aor, contact): a refresh REGISTER for the same Contact URI
    replaces the row, a different Contact adds one (§10.3 step 7).
    """

    __tablename__ = "registration_bindings"
    __table_args__ = (
        UniqueConstraint("aor", "contact"),
        Index("ix_registration_bindings_expires_at", "expires_at"),
        CheckConstraint("transport IN ('udp', 'tcp', 'tls')", name="transport"),
        CheckConstraint("source_port BETWEEN 1 AND 65535", name="source_port"),
        CheckConstraint("cseq >= 0", name="cseq"),
        CheckConstraint("q IS NULL OR (q >= 0 AND q <= 1)", name="q"),
        {"comment": "Active registrations: where each extension can be reached."},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, comment="Surrogate key.")
    aor: Mapped[str] = mapped_column(
        String(255), comment="Address-of-record user part: the extension, e.g. 1001."
    )
    contact: Mapped[str] = mapped_column(
        String(2048), comment="Contact URI exactly as registered (RFC 3261 §10.2.1)."
    )
    expires_at: Mapped[datetime] = mapped_column(
        comment="UTC instant the binding lapses unless refreshed (§10.2.1.1)."
    )
    call_id: Mapped[str] = mapped_column(
        String(255), comment="Call-ID of the REGISTER that made the binding (§10.3 step 7)."
    )
    cseq: Mapped[int] = mapped_column(
        BigInteger, comment="CSeq number of that REGISTER; refreshes must be higher."
    )
    q: Mapped[float | None] = mapped_column(
        comment="Contact q preference 0..1 (§10.2.1.2); NULL when the phone sent none."
    )
    transport: Mapped[str] = mapped_column(
        String(8), comment="Transport the REGISTER came over: udp, tcp or tls."
    )
    source_host: Mapped[str] = mapped_column(
        String(64), comment="IP the REGISTER came from; requests to a NATed phone go here."
    )
    source_port: Mapped[int] = mapped_column(comment="Port the REGISTER came from.")
    connection_id: Mapped[str | None] = mapped_column(
        String(255), comment="TCP/TLS connection on `node` the phone registered over."
    )
    node: Mapped[str] = mapped_column(
        String(255), comment="Name of the PBX node that took the registration."
    )
    user_agent: Mapped[str | None] = mapped_column(
        String(512), comment="User-Agent header of the REGISTER, for diagnostics."
    )
    instance_id: Mapped[str | None] = mapped_column(
        String(512), comment="+sip.instance Contact parameter (RFC 5626 §4.1)."
    )
    reg_id: Mapped[int | None] = mapped_column(
        comment="reg-id Contact parameter (RFC 5626 §4.2)."
    )
    updated_at: Mapped[datetime] = mapped_column(comment="UTC instant of the last write.")
    path: Mapped[str | None] = mapped_column(
        Text, comment="Path header of the REGISTER (RFC 3327), comma-separated; the route to the phone."
    )


class HoursOverrideRow(Base):
    """An administrator's override of a schedule (``pbx hours``)."""

    __tablename__ = "hours_overrides"
    __table_args__ = (
        CheckConstraint("mode IN ('open', 'closed')", name="mode"),
        CheckConstraint("until IS NULL OR until > set_at", name="until_after_set"),
        {"comment": "Schedules forced open or closed by an administrator (pbx hours)."},
    )

    schedule: Mapped[str] = mapped_column(
        String(64), primary_key=True, comment="Schedule key in the dialplan, or * for every schedule."
    )
    mode: Mapped[str] = mapped_column(String(8), comment="open or closed.")
    until: Mapped[datetime | None] = mapped_column(
        comment="UTC instant the override ends by itself; NULL: until pbx hours auto."
    )
    set_at: Mapped[datetime] = mapped_column(comment="UTC instant it was set.")


class BlockedSource(Base):
    """A source address whose failing logins go unanswered for a while, for
    one username or (empty username) for all."""

    __tablename__ = "blocked_sources"
    __table_args__ = (
        Index("ix_blocked_sources_blocked_until", "blocked_until"),
        CheckConstraint("failures >= 0", name="failures"),
        {"comment": "Source IPs temporarily refused (brute-force protection)."},
    )

    source: Mapped[str] = mapped_column(
        String(64), primary_key=True, comment="Blocked IP address, canonical text form."
    )
    username: Mapped[str] = mapped_column(
        String(255), primary_key=True, server_default="",
        comment="Username blocked from the source; empty: every username (a scanner).",
    )
    blocked_until: Mapped[datetime] = mapped_column(comment="UTC instant the block ends.")
    reason: Mapped[str] = mapped_column(
        String(255), comment="Stable snake_case tag of why, e.g. auth_failures."
    )
    failures: Mapped[int] = mapped_column(comment="Failures counted when the block was set.")
    created_at: Mapped[datetime] = mapped_column(comment="UTC instant first blocked.")


class HuntMemberState(Base):
    """An agent in a hunt group: logged in or out, and what the strategies
    remember of them (``pbx.calls.hunt_state``)."""

    __tablename__ = "hunt_member_state"
    __table_args__ = (
        CheckConstraint("calls_count >= 0", name="calls_count"),
        {"comment": "Hunt group members: log-in state, last calls, today's count."},
    )

    group_number: Mapped[str] = mapped_column(
        String(16), primary_key=True, comment="The hunt group's number (hunt_groups.<number>)."
    )
    member: Mapped[str] = mapped_column(
        String(64), primary_key=True, comment="The member: an extension, or an outside number."
    )
    logged_in: Mapped[bool] = mapped_column(
        Boolean, server_default="1", comment="False once the agent logged out (*46, pbx hunt logout)."
    )
    login_changed_at: Mapped[datetime | None] = mapped_column(
        comment="UTC instant the log-in state last changed; the newest change wins across nodes."
    )
    last_answered_at: Mapped[datetime | None] = mapped_column(
        comment="UTC instant the member last took a call of the group."
    )
    last_ended_at: Mapped[datetime | None] = mapped_column(
        comment="UTC instant the member's last call of the group ended (longest_idle)."
    )
    calls_day: Mapped[str | None] = mapped_column(
        String(10), comment="Day calls_count counts, YYYY-MM-DD in the dialplan's time zone."
    )
    calls_count: Mapped[int] = mapped_column(
        server_default="0", comment="Calls of the group the member took on calls_day (fewest_calls)."
    )


class HuntGroupState(Base):
    """What a hunt group's strategy remembers: who last took a call (circular)."""

    __tablename__ = "hunt_group_state"
    __table_args__ = ({"comment": "Hunt groups: the round-robin position."},)

    group_number: Mapped[str] = mapped_column(
        String(16), primary_key=True, comment="The hunt group's number (hunt_groups.<number>)."
    )
    last_member: Mapped[str | None] = mapped_column(
        String(64), comment="The member who last took a call; circular starts after them."
    )
    updated_at: Mapped[datetime | None] = mapped_column(comment="UTC instant of the last change.")


class ExtensionFeatures(Base):
    """What a user set for their extension from the phone (``*72``, ``*78``
    ...) or an administrator with ``pbx ext forward``: do not disturb and
    the four forwards (``pbx.calls.features``)."""

    __tablename__ = "extension_features"
    __table_args__ = ({"comment": "Per-extension call features: do not disturb and call forwarding."},)

    extension: Mapped[str] = mapped_column(String(8), primary_key=True, comment="The extension number.")
    dnd: Mapped[bool] = mapped_column(
        Boolean, server_default="0", comment="Do not disturb: callers get busy (or the busy forward)."
    )
    forward_always: Mapped[str | None] = mapped_column(
        String(32), comment="Unconditional forward target (*72); NULL: off."
    )
    forward_busy: Mapped[str | None] = mapped_column(String(32), comment="Forward when busy (*90); NULL: off.")
    forward_no_answer: Mapped[str | None] = mapped_column(
        String(32), comment="Forward after the ring time (*92); NULL: off."
    )
    forward_unreachable: Mapped[str | None] = mapped_column(
        String(32), comment="Forward when no phone is registered; NULL: off."
    )
    updated_at: Mapped[datetime] = mapped_column(comment="UTC instant of the last change; the newest wins.")


class OfflineMessage(Base):
    """A SIP MESSAGE (RFC 3428) kept for an extension with no phone
    registered, delivered when one registers (``pbx.presence.chat``)."""

    __tablename__ = "offline_messages"
    __table_args__ = (
        Index("ix_offline_messages_recipient_created_at", "recipient", "created_at"),
        CheckConstraint("expires_at > created_at", name="expires_after_created"),
        {"comment": "Chat messages waiting for their recipient to register."},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, comment="Surrogate key, in arrival order.")
    recipient: Mapped[str] = mapped_column(String(8), comment="The extension it is for.")
    sender: Mapped[str] = mapped_column(String(8), comment="The authenticated extension that sent it.")
    content_type: Mapped[str] = mapped_column(String(128), comment="Its Content-Type, e.g. text/plain.")
    body: Mapped[bytes] = mapped_column(LargeBinary, comment="The message body as sent.")
    created_at: Mapped[datetime] = mapped_column(comment="UTC instant it arrived.")
    expires_at: Mapped[datetime] = mapped_column(comment="UTC instant it is dropped undelivered.")
class ExtensionCalls(Base):
    """How many calls an extension is on through one node: the other nodes
    read it so a member busy on node A is busy for node B too."""

    __tablename__ = "extension_calls"
    __table_args__ = (
        CheckConstraint("calls > 0", name="calls"),
        {"comment": "Presence shared by nodes: calls in progress per extension and node."},
    )

    node: Mapped[str] = mapped_column(String(255), primary_key=True, comment="The PBX node (cdr.node).")
    extension: Mapped[str] = mapped_column(String(32), primary_key=True, comment="The extension number.")
    calls: Mapped[int] = mapped_column(comment="Calls it is on through that node; no row at zero.")
    updated_at: Mapped[datetime] = mapped_column(comment="UTC instant of the last change.")


class OutsideCallStart(Base):
    """An extension's outside call, on any node: with several nodes its caps
    (simultaneous, per minute) are counted here (``pbx.store.budgets``)."""

    __tablename__ = "outside_call_starts"
    __table_args__ = (
        Index("ix_outside_call_starts_extension_started_at", "extension", "started_at"),
        Index("ix_outside_call_starts_node", "node"),
        {"comment": "Outside calls per extension, for caps shared by nodes; kept a minute after they end."},
    )

    call_uuid: Mapped[str] = mapped_column(String(64), primary_key=True, comment="The call (cdr.uuid).")
    extension: Mapped[str] = mapped_column(String(32), comment="The calling (paying) extension.")
    node: Mapped[str] = mapped_column(String(255), comment="PBX node of the call.")
    started_at: Mapped[datetime] = mapped_column(comment="UTC instant it was let through.")
    ended_at: Mapped[datetime | None] = mapped_column(comment="UTC instant it ended; NULL: up.")


class BudgetReservation(Base):
    """What a paid call in progress holds against one budget, on any node:
    with several nodes a budget's room is checked here, under the lock of
    its ``budget_spend`` row (``pbx.store.budgets.reserve``)."""

    __tablename__ = "budget_reservations"
    __table_args__ = (
        CheckConstraint("amount_minor >= 0", name="amount_minor"),
        Index("ix_budget_reservations_budget_period", "budget", "period"),
        Index("ix_budget_reservations_node", "node"),
        {"comment": "Budgets: the cost of reserve_seconds held by each paid call in progress."},
    )

    call_uuid: Mapped[str] = mapped_column(
        String(64), primary_key=True, comment="The call (cdr.uuid) holding the reservation."
    )
    budget: Mapped[str] = mapped_column(
        String(128), primary_key=True, comment="The budget: kind:name, e.g. department:sales."
    )
    period: Mapped[str] = mapped_column(String(16), comment="Period label, as budget_spend.period.")
    amount_minor: Mapped[int] = mapped_column(
        BigInteger, comment="Held: the cost of reserve_seconds of the call, in minor units."
    )
    node: Mapped[str] = mapped_column(
        String(255), comment="PBX node of the call; its rows go when it starts again after a crash."
    )
    created_at: Mapped[datetime] = mapped_column(comment="UTC instant the reservation was made.")


class BudgetSpend(Base):
    """What one budget has spent in one period: the settled cost of the
    calls started in it, kept here so nodes sharing the database count
    together, and recountable from the CDRs (``pbx budget recount``)."""

    __tablename__ = "budget_spend"
    __table_args__ = (
        CheckConstraint("spent_minor >= 0", name="spent_minor"),
        {"comment": "Budgets: spend per budget and period, and whether its alert went out."},
    )

    budget: Mapped[str] = mapped_column(
        String(128), primary_key=True, comment="The budget: kind:name, e.g. department:sales."
    )
    period: Mapped[str] = mapped_column(
        String(16), primary_key=True, comment="Period label: 2026-12, 2026-W51 or 2026-12-24."
    )
    spent_minor: Mapped[int] = mapped_column(
        BigInteger, comment="Cost of the period's settled calls, in minor units of the plan's currency."
    )
    warned_at: Mapped[datetime | None] = mapped_column(
        comment="UTC instant the warning alert was claimed (one per budget and period); NULL: not yet."
    )
    updated_at: Mapped[datetime] = mapped_column(comment="UTC instant of the last write.")


class VoicemailMessage(Base):
    """A message a caller left in a mailbox (``pbx.voicemail``): its audio
    is a WAV file under the voicemail directory, named here."""

    __tablename__ = "voicemail_messages"
    __table_args__ = (
        Index("ix_voicemail_messages_mailbox_received_at", "mailbox", "received_at"),
        CheckConstraint("seconds >= 0", name="seconds"),
        {"comment": "Voicemail messages: who left them, when, how long, heard or not."},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, comment="Surrogate key, in arrival order.")
    mailbox: Mapped[str] = mapped_column(String(8), comment="The extension whose mailbox it is in.")
    caller_number: Mapped[str] = mapped_column(String(64), comment="Who left it: extension or presented number.")
    caller_name: Mapped[str | None] = mapped_column(String(255), comment="The caller's display name, if any.")
    call_uuid: Mapped[str] = mapped_column(String(64), comment="The call it was left in (cdr.call_uuid).")
    received_at: Mapped[datetime] = mapped_column(comment="UTC instant the message ended.")
    seconds: Mapped[float] = mapped_column(Float, comment="Length of the recording in seconds.")
    file: Mapped[str] = mapped_column(String(255), comment="WAV file, relative to the voicemail directory.")
    heard: Mapped[bool] = mapped_column(
        Boolean, server_default="0", comment="Played to the owner (saved); false: new, the lamp is lit."
    )
    heard_at: Mapped[datetime | None] = mapped_column(comment="UTC instant it was first heard; NULL: new.")


class VoicemailBox(Base):
    """A mailbox's own state: the owner's PIN (hashed), greeting and the
    count of wrong PINs that locks it."""

    __tablename__ = "voicemail_boxes"
    __table_args__ = (
        CheckConstraint("pin_failures >= 0", name="pin_failures"),
        {"comment": "Voicemail mailboxes: PIN hash, greeting file and PIN lock-out."},
    )

    mailbox: Mapped[str] = mapped_column(String(8), primary_key=True, comment="The extension number.")
    pin_hash: Mapped[str | None] = mapped_column(
        String(255), comment="argon2id hash of the PIN (PHC string); NULL: no PIN set, *98 cannot open it."
    )
    greeting: Mapped[str | None] = mapped_column(
        String(255), comment="The owner's recorded greeting, relative to the voicemail directory; NULL: none."
    )
    pin_failures: Mapped[int] = mapped_column(
        Integer, server_default="0", comment="Wrong PINs in the current window."
    )
    failures_since: Mapped[datetime | None] = mapped_column(comment="UTC instant the window of wrong PINs opened.")
    locked_until: Mapped[datetime | None] = mapped_column(comment="UTC instant the lock-out ends; NULL: not locked.")
    updated_at: Mapped[datetime] = mapped_column(comment="UTC instant of the last change.")
