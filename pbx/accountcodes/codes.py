"""Account codes themselves: their form, how strong a chosen one is, the
keyed hash they are stored and looked up by, and whether a stored one may
be used at a given moment.

Pure: the random source, the server secret and the time come in as values.

Rules:

- a code is decimal digits only: on a keypad ``#`` ends an entry and ``*``
  starts it again, so neither can be part of a code;
- a code given by an administrator must have at least the configured
  length (:data:`DEFAULT_LENGTH` unless the dialplan says otherwise) and at
  most :data:`MAX_LENGTH` digits, and must not be trivially guessable: one
  digit repeated (``1111``), a run up or down (``1234``, ``9876``, wrapping
  ``8901``), or a short block repeated (``1212``, ``123123``);
- a generated code is drawn uniformly from the codes of that length and
  drawn again while it is guessable, so generated codes pass the same check;
- a code is never stored: its HMAC-SHA256 under a server secret kept
  outside the database is (:func:`code_digest`). Equal codes have equal
  digests, so the digest column's unique index finds a code without reading
  any other row, and a stolen table without the secret gives no code away
  (a plain hash of six digits would fall to a million guesses);
- a stored code may be used only while it is ``active`` and ``now`` lies in
  ``[valid_from, valid_until)`` (:func:`unusable_because`).
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

DEFAULT_LENGTH: Final = 6
"""Digits of a generated code, and the fewest a chosen one may have."""
MIN_LENGTH: Final = 4
"""No dialplan may ask for shorter codes: 4 digits are 10 000 guesses, the
least a lock-out after a handful of failures makes worth having."""
MAX_LENGTH: Final = 16
"""Longest code; the prompt stops collecting after this many keys."""
KEY_BYTES: Final = 32
"""Length of the server secret (HMAC-SHA256's block of security)."""

Status = Literal["active", "disabled"]
STATUSES: Final[tuple[Status, ...]] = ("active", "disabled")


class WeakCode(ValueError):
    """A chosen code the system refuses; the message says why (never the code)."""


def guessable(digits: str) -> str | None:
    """Why ``digits`` would be among an attacker's first guesses, or None."""
    if len(set(digits)) == 1:
        return "one digit repeated"
    steps = {(int(b) - int(a)) % 10 for a, b in zip(digits, digits[1:])}
    if steps in ({1}, {9}):
        return "a run of consecutive digits"
    for size in range(1, len(digits) // 2 + 1):
        if len(digits) % size == 0 and digits[:size] * (len(digits) // size) == digits:
            return "a short block repeated"
    return None


def check_chosen(digits: str, length: int = DEFAULT_LENGTH) -> None:
    """Refuse a code an administrator typed (:class:`WeakCode`), or pass."""
    if not digits.isascii() or not digits.isdigit():
        raise WeakCode("a code is digits 0-9 only (# ends it on the keypad, * starts it again)")
    if len(digits) < length:
        raise WeakCode(f"a code needs at least {length} digits")
    if len(digits) > MAX_LENGTH:
        raise WeakCode(f"a code has at most {MAX_LENGTH} digits")
    why = guessable(digits)
    if why is not None:
        raise WeakCode(f"the code is too easy to guess ({why})")


def generate(length: int, rng: random.Random) -> str:
    """A fresh code of ``length`` digits; pass :class:`random.SystemRandom`
    outside tests."""
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"code length must be {MIN_LENGTH} to {MAX_LENGTH}")
    while True:
        digits = "".join(rng.choice("0123456789") for _ in range(length))
        if guessable(digits) is None:
            return digits


def code_digest(key: bytes, digits: str) -> str:
    """The stored form of a code: HMAC-SHA256(key, digits), lowercase hex."""
    if len(key) < 16:
        raise ValueError("the account code secret is too short")
    return hmac.new(key, digits.encode("ascii"), hashlib.sha256).hexdigest()


FINGERPRINT_TEXT: Final = "pbx account code secret"
"""What a secret's fingerprint is the HMAC of: no code (codes are digits only)."""


def secret_fingerprint(key: bytes) -> str:
    """Tells two secrets apart and gives neither away: HMAC-SHA256 of a fixed
    text under ``key``. The database keeps it, so whoever brings another
    secret than the codes were made with is told so."""
    return hmac.new(key, FINGERPRINT_TEXT.encode("ascii"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredCode:
    """A code as the store keeps it: everything but the digits."""

    id: int
    owner: str
    employee_id: str | None
    department: str | None
    class_of_service: str
    """A key of the dialplan's ``classes_of_service``: the rights it carries."""
    status: Status
    valid_from: datetime | None
    valid_until: datetime | None
    failed_attempts: int = 0
    flagged_at: datetime | None = None

    @property
    def label(self) -> str:
        """``#12 Nguyễn Văn An``: the code's id and owner, for logs and the CDR."""
        return f"#{self.id} {self.owner}"


def unusable_because(code: StoredCode, now: datetime) -> str | None:
    """Why ``code`` cannot be used at ``now`` (a snake_case tag), or None."""
    if code.status != "active":
        return "disabled"
    if code.valid_from is not None and now < code.valid_from:
        return "not_yet_valid"
    if code.valid_until is not None and now >= code.valid_until:
        return "expired"
    return None
