"""Meet-me conference rooms (``conferences:``), as the dialplan describes
them; pure data, and the one rule about PINs.

A room is reached by its internal number. Its PIN and moderator PIN are
kept only as keyed hashes (PBKDF2-SHA256, the room's key as salt): the
plan object, a log line or an error never holds the digits. Whoever enters
the moderator PIN moderates; the PIN lets one in as a member. A room with a
moderator PIN but no PIN lets members in with ``#`` alone.

The running of a room (mixing, keys, lock) is :mod:`pbx.conference`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Final, Literal

PIN_ITERATIONS: Final = 20_000
"""PBKDF2 rounds: a PIN is short, so a leaked plan object must not give it
away at a glance; the check runs once per entry, not per packet."""
DEFAULT_MAX_MEMBERS: Final = 10

Role = Literal["member", "moderator"]


@dataclass(frozen=True, slots=True)
class PinHash:
    """A PIN as a keyed hash; :meth:`matches` compares in constant time."""

    digest: bytes = field(repr=False)

    @classmethod
    def of(cls, pin: str, salt: str) -> PinHash:
        return cls(_derive(pin, salt))


def _derive(pin: str, salt: str) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin.encode("ascii", "replace"), f"pbx-conference:{salt}".encode(),
                               PIN_ITERATIONS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Conference:
    """One entry of ``conferences:``."""

    key: str
    number: str
    """Internal number that reaches the room (``850``)."""
    pin: PinHash | None = None
    moderator_pin: PinHash | None = None
    max_members: int = DEFAULT_MAX_MEMBERS
    language: str | None = None
    """Prompt language; None: the caller's, else the plan's."""

    @property
    def asks_pin(self) -> bool:
        return self.pin is not None or self.moderator_pin is not None

    def role_for(self, entry: str) -> Role | None:
        """Who ``entry`` (the digits keyed, "" for ``#`` alone) lets in, or
        None for a wrong PIN. Both hashes are computed whatever the entry,
        so the time taken says nothing about which one was near."""
        derived = _derive(entry, self.key)
        moderator = self.moderator_pin is not None and hmac.compare_digest(derived, self.moderator_pin.digest)
        member = hmac.compare_digest(derived, self.pin.digest) if self.pin is not None else entry == ""
        if moderator:
            return "moderator"
        return "member" if member else None
