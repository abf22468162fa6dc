"""Voicemail in SQL: ``voicemail_messages`` and ``voicemail_boxes``.

The metadata of every mailbox lives here, never only in one process's
memory, so several nodes sharing one database (and one voicemail
directory) see the same messages, lamps and PIN lock-outs. Each method is
one transaction (or joins the caller's ``conn``, as in
:mod:`pbx.store.features`); they block, so the asyncio edge runs them in a
thread.

PINs are stored as argon2id hashes only. A PIN check reads the box's
wrong-PIN count, applies the pure rules of
:mod:`pbx.accountcodes.lockout` and writes the result in the same
transaction (the row locked on PostgreSQL), so guesses spread over nodes
count together.
"""

from __future__ import annotations

import functools

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, Engine, Table, delete, func, insert, select, update

from pbx.accountcodes.lockout import LockoutPolicy, SourceState, after_failure, after_success, locked
from pbx.store.db import transaction, upsert
from pbx.store.models import Base, VoicemailBox, VoicemailMessage

MESSAGES: Final[Table] = Base.metadata.tables[VoicemailMessage.__tablename__]
BOXES: Final[Table] = Base.metadata.tables[VoicemailBox.__tablename__]

_HASHER: Final = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Checked against when a box has no PIN: a wrong mailbox costs as long
    as a wrong PIN. Made on first use: hashing at import cost every process
    that imports the store a tenth of a second or more."""
    return _HASHER.hash("no pin set")


PinOutcome = Literal["valid", "invalid", "locked"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMessage:
    id: int
    mailbox: str
    caller_number: str
    caller_name: str | None
    call_uuid: str
    received_at: datetime
    seconds: float
    file: str
    heard: bool


@dataclass(frozen=True, slots=True)
class Counts:
    """A mailbox's messages for its lamp (RFC 3842's new/old)."""

    new: int = 0
    old: int = 0


def _message(row: Mapping[Any, Any]) -> StoredMessage:
    return StoredMessage(id=int(row["id"]), mailbox=row["mailbox"], caller_number=row["caller_number"],
                         caller_name=row["caller_name"], call_uuid=row["call_uuid"], received_at=row["received_at"],
                         seconds=float(row["seconds"]), file=row["file"], heard=bool(row["heard"]))


def hash_pin(pin: str) -> str:
    return _HASHER.hash(pin)


def pin_matches(stored: str | None, pin: str) -> bool:
    """Whether ``pin`` is the box's (None: no PIN set, still one verification)."""
    try:
        return _HASHER.verify(stored if stored is not None else _dummy_hash(), pin) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class VoicemailStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # ------------------------------------------------------------ messages

    def add(self, *, mailbox: str, caller_number: str, caller_name: str | None, call_uuid: str,
            received_at: datetime, seconds: float, file: str, conn: Connection | None = None) -> int:
        values = {"mailbox": mailbox, "caller_number": caller_number[:64], "caller_name": caller_name,
                  "call_uuid": call_uuid, "received_at": received_at, "seconds": round(seconds, 2), "file": file,
                  "heard": False}
        with transaction(self._engine, conn) as c:
            result = c.execute(insert(MESSAGES).values(values).returning(MESSAGES.c.id))
            return int(result.scalar_one())

    def messages(self, mailbox: str, conn: Connection | None = None) -> list[StoredMessage]:
        """New messages, then heard ones, each oldest first."""
        query = select(MESSAGES).where(MESSAGES.c.mailbox == mailbox).order_by(
            MESSAGES.c.heard, MESSAGES.c.received_at, MESSAGES.c.id)
        with transaction(self._engine, conn) as c:
            return [_message(row._mapping) for row in c.execute(query)]

    def all_messages(self, conn: Connection | None = None) -> list[StoredMessage]:
        query = select(MESSAGES).order_by(MESSAGES.c.mailbox, MESSAGES.c.received_at, MESSAGES.c.id)
        with transaction(self._engine, conn) as c:
            return [_message(row._mapping) for row in c.execute(query)]

    def message(self, mailbox: str, message_id: int, conn: Connection | None = None) -> StoredMessage | None:
        query = select(MESSAGES).where(MESSAGES.c.mailbox == mailbox, MESSAGES.c.id == message_id)
        with transaction(self._engine, conn) as c:
            row = c.execute(query).first()
        return None if row is None else _message(row._mapping)

    def mark_heard(self, mailbox: str, message_id: int, at: datetime, conn: Connection | None = None) -> bool:
        """True when it was new until now."""
        statement = update(MESSAGES).where(MESSAGES.c.mailbox == mailbox, MESSAGES.c.id == message_id,
                                           MESSAGES.c.heard.is_(False)).values(heard=True, heard_at=at)
        with transaction(self._engine, conn) as c:
            return c.execute(statement).rowcount > 0

    def delete(self, mailbox: str, message_id: int, conn: Connection | None = None) -> StoredMessage | None:
        """Remove the row; the message it was (its file is the caller's to remove)."""
        with transaction(self._engine, conn) as c:
            found = self.message(mailbox, message_id, conn=c)
            if found is not None:
                c.execute(delete(MESSAGES).where(MESSAGES.c.id == message_id))
            return found

    def counts(self, mailbox: str | None = None, conn: Connection | None = None) -> dict[str, Counts]:
        """New and heard messages per mailbox (only mailboxes that have any)."""
        query = select(MESSAGES.c.mailbox, MESSAGES.c.heard, func.count()).group_by(
            MESSAGES.c.mailbox, MESSAGES.c.heard)
        if mailbox is not None:
            query = query.where(MESSAGES.c.mailbox == mailbox)
        found: dict[str, Counts] = {}
        with transaction(self._engine, conn) as c:
            for box, heard, count in c.execute(query):
                current = found.get(box, Counts())
                found[box] = Counts(current.new, int(count)) if heard else Counts(int(count), current.old)
        return found

    def purge(self, now: datetime, retention_days: Callable[[str], int | None],
              conn: Connection | None = None) -> list[StoredMessage]:
        """Delete the messages older than their mailbox's retention (None:
        the mailbox is gone from the plan, its messages are kept for an
        administrator); the messages deleted (their files are the caller's)."""
        gone: list[StoredMessage] = []
        with transaction(self._engine, conn) as c:
            oldest_kept = now - timedelta(days=1)  # no retention is shorter than a day
            query = select(MESSAGES).where(MESSAGES.c.received_at < oldest_kept)
            for row in c.execute(query).all():
                message = _message(row._mapping)
                days = retention_days(message.mailbox)
                if days is not None and message.received_at < now - timedelta(days=days):
                    gone.append(message)
            if gone:
                c.execute(delete(MESSAGES).where(MESSAGES.c.id.in_([m.id for m in gone])))
        return gone

    # ------------------------------------------------------------ the box

    def _box(self, c: Connection, mailbox: str, *, lock: bool = False) -> Mapping[Any, Any] | None:
        query = select(BOXES).where(BOXES.c.mailbox == mailbox)
        if lock:
            query = query.with_for_update()  # PostgreSQL: one PIN check per box at a time
        row = c.execute(query).first()
        return None if row is None else row._mapping

    def _save_box(self, c: Connection, mailbox: str, now: datetime, **changes: Any) -> None:
        current = self._box(c, mailbox)
        values: dict[str, Any] = {"mailbox": mailbox, "pin_hash": None, "greeting": None, "pin_failures": 0,
                                  "failures_since": None, "locked_until": None}
        if current is not None:
            values.update({k: current[k] for k in values if k != "mailbox"})
        values.update(changes)
        values["updated_at"] = now
        upsert(c, BOXES, values, ("mailbox",))

    def check_pin(self, mailbox: str, pin: str, now: datetime, policy: LockoutPolicy,
                  conn: Connection | None = None) -> PinOutcome:
        """Check ``pin`` against the box, counting a wrong one against it
        (``policy``); a locked box is not even checked."""
        with transaction(self._engine, conn) as c:
            box = self._box(c, mailbox, lock=True)
            state = None if box is None else SourceState(
                source=mailbox, failures=int(box["pin_failures"]), window_started_at=box["failures_since"],
                locked_until=box["locked_until"])
            if locked(state, now):
                return "locked"
            if pin_matches(box["pin_hash"] if box is not None else None, pin):
                cleared = after_success(state)
                if cleared is not None and cleared != state:
                    self._save_box(c, mailbox, now, pin_failures=0, failures_since=None)
                return "valid"
            if box is None:
                return "invalid"  # no such box: nothing to count against
            failed, now_locked = after_failure(state, mailbox, now, policy)
            self._save_box(c, mailbox, now, pin_failures=failed.failures, failures_since=failed.window_started_at,
                           locked_until=failed.locked_until)
            return "locked" if now_locked else "invalid"

    def set_pin(self, mailbox: str, pin: str, now: datetime, conn: Connection | None = None) -> None:
        """A new PIN (hashed), by the owner or an administrator: the count
        of wrong PINs starts again and a lock-out ends."""
        digest = hash_pin(pin)
        with transaction(self._engine, conn) as c:
            self._save_box(c, mailbox, now, pin_hash=digest, pin_failures=0, failures_since=None, locked_until=None)

    def has_pin(self, mailbox: str, conn: Connection | None = None) -> bool:
        with transaction(self._engine, conn) as c:
            box = self._box(c, mailbox)
        return box is not None and box["pin_hash"] is not None

    def greeting(self, mailbox: str, conn: Connection | None = None) -> str | None:
        with transaction(self._engine, conn) as c:
            box = self._box(c, mailbox)
        return None if box is None else box["greeting"]

    def set_greeting(self, mailbox: str, file: str | None, now: datetime, conn: Connection | None = None) -> None:
        with transaction(self._engine, conn) as c:
            self._save_box(c, mailbox, now, greeting=file)
