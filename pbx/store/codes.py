"""Account codes in SQL: ``account_codes`` (the codes, never their digits)
and ``account_code_lockouts`` (wrong codes per source), shared by every
node of one database.

A code is found by the HMAC of its digits (:func:`pbx.accountcodes.codes.code_digest`)
through the unique index on ``digest``: one index lookup, never a scan,
and nothing here ever sees a code it was not handed. What a lookup means
(usable now? locked? flagged?) is decided by the pure rules of
:mod:`pbx.accountcodes`; this module reads the rows, applies them and
writes the result in the same transaction, one lookup per source at a
time (:meth:`CodeStore._serialised`), so nodes and threads checking codes at
the same moment count every failure.

Each call's lookup reads the table afresh: ``pbx codes disable`` takes
effect for the very next call, on every node, without a reload.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import (CheckConstraint, Connection, Engine, Integer, String, Table, delete, insert, select, text,
                        update)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from pbx.accountcodes.codes import (STATUSES, Status, StoredCode, check_chosen, code_digest, generate, secret_fingerprint,
                                   unusable_because)
from pbx.accountcodes.lockout import LockoutPolicy, SourceState, after_failure, after_success, flags_now, locked
from pbx.store.code_key import CodeKeyError, key_source
from pbx.store.db import upsert
from pbx.store.models import Base, BigId, require_aware


class AccountCodeRow(Base):
    """One account code: whose it is and what it may do, never its digits."""

    __tablename__ = "account_codes"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'disabled')", name="status"),
        CheckConstraint("valid_until IS NULL OR valid_from IS NULL OR valid_until > valid_from", name="valid_span"),
        CheckConstraint("failed_attempts >= 0", name="failed_attempts"),
        {"comment": "Account codes: owner, rights and validity; the code itself only as a keyed hash."},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, comment="The code's id, shown in the CDR.")
    digest: Mapped[str] = mapped_column(
        String(64), unique=True, comment="HMAC-SHA256 of the digits under the server secret (hex)."
    )
    owner: Mapped[str] = mapped_column(String(255), comment="Whose code it is (a person's name).")
    employee_id: Mapped[str | None] = mapped_column(String(64), comment="The owner's employee id.")
    department: Mapped[str | None] = mapped_column(String(64), comment="The owner's department key.")
    class_of_service: Mapped[str] = mapped_column(
        String(64), comment="Rights the code carries: a class of service of the dialplan."
    )
    status: Mapped[str] = mapped_column(String(8), comment="active or disabled.")
    valid_from: Mapped[datetime | None] = mapped_column(comment="UTC instant the code starts to work.")
    valid_until: Mapped[datetime | None] = mapped_column(comment="UTC instant the code stops working.")
    failed_attempts: Mapped[int] = mapped_column(
        Integer, server_default="0", comment="Refused uses of the code, system-wide (disabled, expired, locked"
        " phone, rights exceeded)."
    )
    flagged_at: Mapped[datetime | None] = mapped_column(
        comment="UTC instant failed_attempts reached the flag threshold."
    )
    last_used_at: Mapped[datetime | None] = mapped_column(comment="UTC instant the code last placed a call.")
    created_at: Mapped[datetime] = mapped_column(comment="UTC instant the code was added.")
    updated_at: Mapped[datetime] = mapped_column(comment="UTC instant of the last change.")


class AccountCodeLockout(Base):
    """Wrong codes from one source (an extension), and its lock."""

    __tablename__ = "account_code_lockouts"
    __table_args__ = (
        CheckConstraint("failures >= 0", name="failures"),
        {"comment": "Account codes: wrong codes per source and lock-outs (brute-force protection)."},
    )

    source: Mapped[str] = mapped_column(
        String(64), primary_key=True, comment="Where the codes came from: ext:<extension>."
    )
    failures: Mapped[int] = mapped_column(Integer, comment="Wrong codes in the current window.")
    window_started_at: Mapped[datetime | None] = mapped_column(comment="UTC instant of the window's first failure.")
    locked_until: Mapped[datetime | None] = mapped_column(comment="UTC instant the lock ends; NULL: not locked.")
    updated_at: Mapped[datetime] = mapped_column(comment="UTC instant of the last change.")


class AccountCodeSecret(Base):
    """Which secret the codes are hashed with: its fingerprint, one row."""

    __tablename__ = "account_code_secret"
    __table_args__ = (
        CheckConstraint("id = 1", name="one_row"),
        {"comment": "Account codes: which secret the codes are hashed with (its fingerprint, never the secret)."},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False,
                                    comment="Always 1: one secret per database.")
    fingerprint: Mapped[str] = mapped_column(
        String(64), comment="HMAC-SHA256 of a fixed text under the secret (hex): tells secrets apart, gives none away."
    )
    created_at: Mapped[datetime] = mapped_column(comment="UTC instant the fingerprint was stored.")


CODES: Final[Table] = Base.metadata.tables[AccountCodeRow.__tablename__]
LOCKOUTS: Final[Table] = Base.metadata.tables[AccountCodeLockout.__tablename__]
SECRET: Final[Table] = Base.metadata.tables[AccountCodeSecret.__tablename__]


class SecretMismatch(CodeKeyError):
    """The database's codes were hashed with another secret than ours."""


class CodeInUse(ValueError):
    """Another code has these digits."""


class NoSuchCode(LookupError):
    """No code matches the id or owner given."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified:
    """What one entry at the prompt amounted to."""

    outcome: Literal["valid", "invalid", "locked"]
    code: StoredCode | None = None
    """The code, when valid."""
    reason: str = ""
    """Why not: ``unknown``, ``disabled``, ``expired``, ``not_yet_valid``,
    ``locked`` (the source was locked before), ``locked_now`` (this
    failure locked it)."""
    flagged: StoredCode | None = None
    """A code this attempt flagged (for the log)."""


def _stored(row: Any) -> StoredCode:
    status: Status = "active" if row.status == "active" else "disabled"
    return StoredCode(id=int(row.id), owner=row.owner, employee_id=row.employee_id, department=row.department,
                      class_of_service=row.class_of_service, status=status, valid_from=row.valid_from,
                      valid_until=row.valid_until, failed_attempts=int(row.failed_attempts),
                      flagged_at=row.flagged_at)


def _state(row: Any) -> SourceState:
    return SourceState(source=row.source, failures=int(row.failures), window_started_at=row.window_started_at,
                       locked_until=row.locked_until)


class CodeStore:
    """The codes and lock-outs; ``key`` is the server secret the digests are made with."""

    def __init__(self, engine: Engine, key: bytes) -> None:
        self._engine = engine
        self._key = key

    # ------------------------------------------------------------ the secret

    def check_secret(self, now: datetime, *, adopt: bool = True) -> None:
        """Refuse a secret the database's codes were not made with
        (:class:`SecretMismatch`), before any code is added or looked up
        with it: a new secret made by ``pbx codes`` run in another directory
        would print codes that never work, and a server with one would
        refuse every code (and lock out the phones typing right ones). A
        database without codes takes the secret it is given. One with codes
        but no fingerprint yet (codes made before there was one) takes it
        only with ``adopt`` (the server's start: ``pbx codes`` run from the
        wrong directory must not make the server's own secret the stranger)."""
        require_aware("now", now)
        try:
            self._check_secret(now, adopt)
        except IntegrityError:
            self._check_secret(now, adopt)  # another process stored its fingerprint first: compare with it

    def _check_secret(self, now: datetime, adopt: bool) -> None:
        mine = secret_fingerprint(self._key)
        with self._engine.begin() as conn:
            stored = conn.execute(select(SECRET.c.fingerprint)).scalar_one_or_none()
            if stored == mine:
                return
            has_codes = conn.execute(select(CODES.c.id).limit(1)).first() is not None
            if stored is None and has_codes and not adopt:
                return
            if stored is not None and has_codes:
                raise SecretMismatch(
                    f"the account codes in this database were made with another secret than {key_source()}:"
                    " use the server's (run where it runs, or set PBX_ACCOUNT_CODE_KEY or"
                    " PBX_ACCOUNT_CODE_KEY_FILE as it does)")
            conn.execute(delete(SECRET))
            conn.execute(insert(SECRET).values(id=1, fingerprint=mine, created_at=now))

    # ------------------------------------------------------------ administration

    def add(self, digits: str, *, owner: str, class_of_service: str, now: datetime, employee_id: str | None = None,
            department: str | None = None, valid_from: datetime | None = None,
            valid_until: datetime | None = None) -> StoredCode:
        """Store a new code (digits already checked for strength); :class:`CodeInUse` if taken."""
        require_aware("now", now)
        values = {"digest": code_digest(self._key, digits), "owner": owner, "employee_id": employee_id,
                  "department": department, "class_of_service": class_of_service, "status": "active",
                  "valid_from": valid_from, "valid_until": valid_until, "failed_attempts": 0,
                  "created_at": now, "updated_at": now}
        try:
            with self._engine.begin() as conn:
                new_id = conn.execute(insert(CODES).values(values).returning(CODES.c.id)).scalar_one()
                row = conn.execute(select(CODES).where(CODES.c.id == new_id)).one()
        except IntegrityError:
            raise CodeInUse("another code has these digits") from None
        return _stored(row)

    def find(self, which: str) -> list[StoredCode]:
        """Codes named by ``which``: an id (``12`` or ``#12``), else an owner's exact name."""
        query = select(CODES)
        text = which.removeprefix("#")
        query = query.where(CODES.c.id == int(text)) if text.isdigit() else query.where(CODES.c.owner == which)
        with self._engine.connect() as conn:
            return [_stored(row) for row in conn.execute(query.order_by(CODES.c.id))]

    def all(self) -> list[StoredCode]:
        with self._engine.connect() as conn:
            return [_stored(row) for row in conn.execute(select(CODES).order_by(CODES.c.id))]

    def set_status(self, code_id: int, status: Status, now: datetime) -> None:
        if status not in STATUSES:
            raise ValueError(f"status is one of {', '.join(STATUSES)}")
        self._change(code_id, {"status": status, "updated_at": now})

    def rotate(self, code_id: int, digits: str, now: datetime) -> None:
        """New digits for the code; the old ones stop working at once."""
        try:
            self._change(code_id, {"digest": code_digest(self._key, digits), "updated_at": now,
                                   "failed_attempts": 0, "flagged_at": None})
        except IntegrityError:
            raise CodeInUse("another code has these digits") from None

    def remove(self, code_id: int) -> None:
        with self._engine.begin() as conn:
            if conn.execute(delete(CODES).where(CODES.c.id == code_id)).rowcount == 0:
                raise NoSuchCode(f"no code #{code_id}")

    def taken(self, digits: str) -> bool:
        with self._engine.connect() as conn:
            query = select(CODES.c.id).where(CODES.c.digest == code_digest(self._key, digits))
            return conn.execute(query).first() is not None

    def _change(self, code_id: int, values: dict[str, Any]) -> None:
        with self._engine.begin() as conn:
            if conn.execute(update(CODES).where(CODES.c.id == code_id).values(values)).rowcount == 0:
                raise NoSuchCode(f"no code #{code_id}")

    # ------------------------------------------------------------ calls

    def locked(self, source: str, now: datetime) -> bool:
        """Is ``source`` locked out at ``now``?"""
        with self._engine.connect() as conn:
            row = conn.execute(select(LOCKOUTS).where(LOCKOUTS.c.source == source)).first()
        return locked(_state(row) if row is not None else None, now)

    def verify(self, digits: str, source: str, now: datetime, policy: LockoutPolicy) -> Verified:
        """Look up an entry from ``source`` at ``now``: a usable code, or a
        failure counted against the source (and against the code, if one
        has these digits)."""
        require_aware("now", now)
        digest = code_digest(self._key, digits)
        with self._serialised(source) as conn:
            state = self._source_state(conn, source)
            row = conn.execute(select(CODES).where(CODES.c.digest == digest)).first()
            code = _stored(row) if row is not None else None
            if locked(state, now):
                flagged = self._count_refusal(conn, code, now, policy) if code is not None else None
                return Verified(outcome="locked", reason="locked", flagged=flagged)
            why = "unknown" if code is None else unusable_because(code, now)
            if code is not None and why is None:
                cleared = after_success(state)
                if cleared is not state and cleared is not None:
                    self._save_state(conn, cleared, now)
                conn.execute(update(CODES).where(CODES.c.id == code.id).values(last_used_at=now))
                return Verified(outcome="valid", code=code)
            flagged = self._count_refusal(conn, code, now, policy) if code is not None else None
            new_state, locked_now = after_failure(state, source, now, policy)
            self._save_state(conn, new_state, now)
            assert why is not None
            if locked_now:
                return Verified(outcome="locked", reason="locked_now", flagged=flagged)
            return Verified(outcome="invalid", reason=why, flagged=flagged)

    def refused(self, code_id: int, now: datetime, policy: LockoutPolicy) -> StoredCode | None:
        """A right code was asked for a call its rights do not cover: count
        it against the code; the code when this flagged it."""
        with self._engine.begin() as conn:
            row = conn.execute(self._for_update(conn, select(CODES).where(CODES.c.id == code_id))).first()
            return self._count_refusal(conn, _stored(row), now, policy) if row is not None else None

    def lockouts(self, now: datetime) -> list[SourceState]:
        """Sources locked at ``now``."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(LOCKOUTS).where(LOCKOUTS.c.locked_until > now)).all()
        return [_state(row) for row in rows]

    def unlock(self, source: str) -> bool:
        with self._engine.begin() as conn:
            return bool(conn.execute(delete(LOCKOUTS).where(LOCKOUTS.c.source == source)).rowcount)

    # ------------------------------------------------------------ helpers

    @contextmanager
    def _serialised(self, source: str) -> Iterator[Connection]:
        """A transaction in which one lookup at a time reads and writes
        ``source``'s count. Calls placed at once (a burst of dial-prefix
        guesses, each looked up in its own thread or on another node) would
        otherwise each read the same count and write it back one higher, or
        write a lock away: a guesser would get many more tries than
        ``failures``. SQLite: the write lock from the start (BEGIN
        IMMEDIATE; the sqlite3 module would only take it at the first
        write, after the read). PostgreSQL: a lock on the source's name
        held to the commit (``FOR UPDATE`` locks no row that is not there
        yet, and a source's first failures have none)."""
        with self._engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('account_code_lockouts'), hashtext(:source))"),
                             {"source": source})
            yield conn

    @staticmethod
    def _for_update(conn: Connection, query: Any) -> Any:
        # Two nodes counting at once must both be counted: PostgreSQL locks
        # the row; SQLite has one writer at a time anyway.
        return query.with_for_update() if conn.dialect.name == "postgresql" else query

    def _source_state(self, conn: Connection, source: str) -> SourceState | None:
        row = conn.execute(self._for_update(conn, select(LOCKOUTS).where(LOCKOUTS.c.source == source))).first()
        return _state(row) if row is not None else None

    @staticmethod
    def _save_state(conn: Connection, state: SourceState, now: datetime) -> None:
        upsert(conn, LOCKOUTS, {"source": state.source, "failures": state.failures,
                                "window_started_at": state.window_started_at, "locked_until": state.locked_until,
                                "updated_at": now}, ("source",))

    @staticmethod
    def _count_refusal(conn: Connection, code: StoredCode, now: datetime, policy: LockoutPolicy) -> StoredCode | None:
        # The count as it is after this refusal, not as read before it (the
        # database adds one; another phone's refusal may have added one too),
        # and the flag set only where no refusal set it already: flagged
        # exactly once, however many are counted at the same moment.
        row = conn.execute(update(CODES).where(CODES.c.id == code.id)
                           .values(failed_attempts=CODES.c.failed_attempts + 1)
                           .returning(CODES.c.failed_attempts, CODES.c.flagged_at)).first()
        if row is None or not flags_now(int(row.failed_attempts), row.flagged_at is not None, policy):
            return None
        flagged = conn.execute(update(CODES).where(CODES.c.id == code.id, CODES.c.flagged_at.is_(None))
                               .values(flagged_at=now)).rowcount
        return code if flagged else None


def new_digits(store: CodeStore, length: int, rng: random.Random, given: str | None = None) -> str:
    """The digits for a new or rotated code: ``given`` once checked for
    strength (:class:`~pbx.accountcodes.codes.WeakCode`) and for being free
    (:class:`CodeInUse`), else fresh ones of ``length`` no code has yet.
    ``pbx codes`` and the API both choose digits here."""
    if given is None:
        while True:
            digits = generate(length, rng)
            if not store.taken(digits):
                return digits
    check_chosen(given, length)
    if store.taken(given):
        raise CodeInUse("that code is already in use; choose another")
    return given


def codes_matching(store: CodeStore, which: str) -> Sequence[StoredCode]:
    """``store.find(which)``, or :class:`NoSuchCode`."""
    found = store.find(which)
    if not found:
        raise NoSuchCode(f"no code with id or owner {which!r}")
    return found
