"""Chat messages kept for extensions that could not take them
(``offline_messages``; :mod:`pbx.presence.chat`). Bounded twice: a message
is dropped ``chat_retention_hours`` after it arrived, and at most
``chat_max_stored`` wait per recipient (saving one more drops the oldest).
Methods take an optional ``conn`` as in :mod:`pbx.store.hunt`, so the
background writer can batch them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, Engine, Table, delete, insert, select

from pbx.store.db import transaction
from pbx.store.models import Base, OfflineMessage, require_aware

MESSAGES: Final[Table] = Base.metadata.tables[OfflineMessage.__tablename__]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMessage:
    id: int
    recipient: str
    sender: str
    content_type: str
    body: bytes
    created_at: datetime


class OfflineMessageStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def save(self, recipient: str, sender: str, content_type: str, body: bytes, *, now: datetime,
             expires_at: datetime, keep: int, conn: Connection | None = None) -> None:
        """Keep a message for ``recipient``; the oldest beyond ``keep`` go."""
        require_aware("now", now)
        with transaction(self._engine, conn) as c:
            c.execute(insert(MESSAGES).values(recipient=recipient, sender=sender, content_type=content_type,
                                              body=body, created_at=now, expires_at=expires_at))
            # The id of the oldest message kept; everything older goes.
            oldest_kept = c.execute(select(MESSAGES.c.id).where(MESSAGES.c.recipient == recipient)
                                    .order_by(MESSAGES.c.id.desc()).offset(keep - 1).limit(1)).scalar()
            if oldest_kept is not None:
                c.execute(delete(MESSAGES).where(MESSAGES.c.recipient == recipient, MESSAGES.c.id < oldest_kept))

    def pending(self, recipient: str, now: datetime, conn: Connection | None = None) -> list[StoredMessage]:
        """Messages waiting for ``recipient`` at ``now``, oldest first."""
        require_aware("now", now)
        query = select(MESSAGES).where(MESSAGES.c.recipient == recipient, MESSAGES.c.expires_at > now) \
            .order_by(MESSAGES.c.id)
        with transaction(self._engine, conn) as c:
            return [StoredMessage(id=row.id, recipient=row.recipient, sender=row.sender,
                                  content_type=row.content_type, body=bytes(row.body), created_at=row.created_at)
                    for row in c.execute(query)]

    def recipients(self, now: datetime, conn: Connection | None = None) -> set[str]:
        """Who has messages waiting at ``now``."""
        require_aware("now", now)
        query = select(MESSAGES.c.recipient).where(MESSAGES.c.expires_at > now).distinct()
        with transaction(self._engine, conn) as c:
            return {row[0] for row in c.execute(query)}

    def delete(self, message_id: int, conn: Connection | None = None) -> None:
        """A message delivered."""
        with transaction(self._engine, conn) as c:
            c.execute(delete(MESSAGES).where(MESSAGES.c.id == message_id))

    def sweep(self, now: datetime, conn: Connection | None = None) -> int:
        """Drop messages past their retention; how many went."""
        require_aware("now", now)
        with transaction(self._engine, conn) as c:
            return c.execute(delete(MESSAGES).where(MESSAGES.c.expires_at <= now)).rowcount
