"""Registration bindings kept in SQL (RFC 3261 §10.3).

Every method takes an optional ``conn``:

* without it the method opens its own transaction on the engine and commits
  (start-up loading, tests, admin tools);
* with it the statement runs inside the caller's transaction and nothing is
  committed here.  That is how the `BackgroundWriter` batches writes::

      writer.submit(lambda conn: bindings.upsert(record, conn=conn))

The registrar keeps its working set in memory; this table is what survives a
restart and what other PBX nodes sharing the database read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Engine, Table, delete, select

from pbx.store.db import transaction, upsert
from pbx.store.models import TRANSPORTS, Base, RegistrationBinding, require_aware

BINDINGS: Final[Table] = Base.metadata.tables[RegistrationBinding.__tablename__]


@dataclass(frozen=True, slots=True, kw_only=True)
class BindingRecord:
    """One row of ``registration_bindings`` (without the surrogate id).

    Checked on construction so a bad value fails at the caller, not later in
    the writer thread.
    """

    aor: str
    contact: str
    expires_at: datetime
    call_id: str
    cseq: int
    q: float | None
    transport: str          # "udp", "tcp" or "tls"
    source_host: str        # where the REGISTER came from (NAT: send there)
    source_port: int
    connection_id: str | None
    node: str
    user_agent: str | None
    instance_id: str | None  # +sip.instance, RFC 5626 §4.1
    reg_id: int | None       # reg-id, RFC 5626 §4.2
    updated_at: datetime
    path: str | None = None  # RFC 3327 Path, as a comma-separated header value

    def __post_init__(self) -> None:
        if not self.aor:
            raise ValueError("aor must not be empty")
        if not self.contact:
            raise ValueError("contact must not be empty")
        require_aware("expires_at", self.expires_at)
        require_aware("updated_at", self.updated_at)
        # §8.1.1.5: the CSeq number is a 32-bit unsigned integer.
        if not 0 <= self.cseq < 2**32:
            raise ValueError("cseq must be in 0..2**32-1")
        if self.q is not None and not 0.0 <= self.q <= 1.0:
            raise ValueError("q must be between 0 and 1")  # §20.10
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
        try:
            ipaddress.ip_address(self.source_host)
        except ValueError:
            raise ValueError("source_host must be an IP address") from None
        if not 1 <= self.source_port <= 65535:
            raise ValueError("source_port must be in 1..65535")
        if self.reg_id is not None and self.reg_id < 1:
            raise ValueError("reg_id must be positive")  # RFC 5626 §4.2: 1 to 2**31-1
        if not self.node:
            raise ValueError("node must not be empty")

    def values(self) -> dict[str, Any]:
        """Column name to value, as written to the table."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> BindingRecord:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


_COLUMNS: Final = tuple(BINDINGS.c[f.name] for f in fields(BindingRecord))
_KEY: Final = ("aor", "contact")


class BindingStore:
    """Reads and writes ``registration_bindings``; see the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def load_active(self, now: datetime, conn: Connection | None = None) -> list[BindingRecord]:
        """Every binding not yet expired at `now`, ordered by aor then contact."""
        require_aware("now", now)
        query = (
            select(*_COLUMNS)
            .where(BINDINGS.c.expires_at > now)
            .order_by(BINDINGS.c.aor, BINDINGS.c.contact)
        )
        with transaction(self._engine, conn) as c:
            return [BindingRecord.from_row(row._mapping) for row in c.execute(query)]

    def for_aor(
        self, aor: str, now: datetime, conn: Connection | None = None
    ) -> list[BindingRecord]:
        """The unexpired bindings of one address-of-record, ordered by contact."""
        require_aware("now", now)
        query = (
            select(*_COLUMNS)
            .where(BINDINGS.c.aor == aor, BINDINGS.c.expires_at > now)
            .order_by(BINDINGS.c.contact)
        )
        with transaction(self._engine, conn) as c:
            return [BindingRecord.from_row(row._mapping) for row in c.execute(query)]

    def for_aors(
        self, aors: Collection[str], now: datetime, conn: Connection | None = None
    ) -> list[BindingRecord]:
        """The unexpired bindings of several addresses-of-record (another
        node changed them), ordered by aor then contact."""
        require_aware("now", now)
        query = (
            select(*_COLUMNS)
            .where(BINDINGS.c.aor.in_(list(aors)), BINDINGS.c.expires_at > now)
            .order_by(BINDINGS.c.aor, BINDINGS.c.contact)
        )
        with transaction(self._engine, conn) as c:
            return [BindingRecord.from_row(row._mapping) for row in c.execute(query)]

    def upsert(self, record: BindingRecord, conn: Connection | None = None) -> None:
        """Insert the binding, or replace every field of the one with the same
        (aor, contact): a refresh (§10.3 step 7)."""
        with transaction(self._engine, conn) as c:
            upsert(c, BINDINGS, record.values(), _KEY)

    def delete(self, aor: str, contact: str, conn: Connection | None = None) -> int:
        """Remove one binding (a REGISTER with expires=0, §10.3 step 7); rows removed."""
        query = delete(BINDINGS).where(BINDINGS.c.aor == aor, BINDINGS.c.contact == contact)
        with transaction(self._engine, conn) as c:
            return c.execute(query).rowcount

    def delete_aor(self, aor: str, conn: Connection | None = None) -> int:
        """Remove every binding of `aor` (Contact: * with expires=0, §10.2.2)."""
        with transaction(self._engine, conn) as c:
            return c.execute(delete(BINDINGS).where(BINDINGS.c.aor == aor)).rowcount

    def sweep(self, now: datetime, conn: Connection | None = None) -> int:
        """Delete bindings expired at `now`; returns how many."""
        require_aware("now", now)
        with transaction(self._engine, conn) as c:
            return c.execute(delete(BINDINGS).where(BINDINGS.c.expires_at <= now)).rowcount

