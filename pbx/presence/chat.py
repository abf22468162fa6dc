"""Chat between extensions: SIP MESSAGE (RFC 3428) relayed by the PBX.

The PBX takes an authenticated MESSAGE for an extension and relays it as
a B2BUA does: a new MESSAGE (its own transaction, Call-ID and tags) to
every registered contact of the recipient, From the sender's address of
record. The sender is answered once:

- ``200 OK`` as soon as one contact accepts (a 2xx);
- ``202 Accepted`` when it is kept for later (RFC 3428 §7: 202 means
  accepted for delivery, not delivered): the recipient has no contact, or
  none accepted within ``RELAY_WAIT`` seconds; it is delivered when the
  recipient registers again;
- ``413`` for a body larger than ``chat_max_bytes``, ``415`` without a
  Content-Type, ``404`` for a recipient who is not an extension.

"Is typing" notices (RFC 3994, ``application/im-iscomposing+xml``) are
relayed but never kept: they mean nothing later; without a contact they
get 480.

Pure: the caller passes ``now`` and sends what these say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

RELAY_WAIT: Final = 8.0
"""Seconds to wait for any contact to accept before keeping the message
(well inside the sender's own 32 s transaction timeout, RFC 3261 §17.1.2.2)."""
IS_COMPOSING: Final = "application/im-iscomposing+xml"

Outcome = Literal["delivered", "undelivered"]


def refusal(content_type: str | None, body: bytes, max_bytes: int) -> tuple[int, str] | None:
    """Why a MESSAGE cannot be relayed at all, as (status, phrase); None: fine."""
    if len(body) > max_bytes:
        return 413, "Request Entity Too Large"
    if not content_type or not content_type.strip():
        return 415, "Unsupported Media Type"
    if not body:
        return 400, "Empty Message"
    return None


def storable(content_type: str) -> bool:
    """Whether a message undelivered now is kept for later."""
    return content_type.split(";")[0].strip().lower() != IS_COMPOSING


@dataclass(slots=True, eq=False, kw_only=True)
class ChatRelay:
    """One message on its way to a recipient's contacts."""

    sender: str
    recipient: str
    content_type: str
    body: bytes
    waiting: int
    """Contacts whose answer has not come yet."""
    due: float
    """When to stop waiting (``now + RELAY_WAIT``)."""
    stored_id: int | None = None
    """The stored row it came from (a delivery on registration)."""
    outcome: Outcome | None = None

    def answered(self, status: int) -> Outcome | None:
        """A contact answered ``status`` (408 for none); the outcome, once."""
        if self.outcome is not None:
            return None
        if 200 <= status < 300:
            self.outcome = "delivered"
            return self.outcome
        self.waiting -= 1
        if self.waiting <= 0:
            self.outcome = "undelivered"
            return self.outcome
        return None

    def on_timer(self, now: float) -> Outcome | None:
        if self.outcome is None and now >= self.due:
            self.outcome = "undelivered"
            return self.outcome
        return None
