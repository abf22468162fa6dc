"""New extensions' SIP passwords from the server's periodic directory sync,
held until an admin collects them, once, through the API.

``pbx ldap sync`` prints them and the API's sync returns them, but the
periodic sync runs with nobody watching. Its passwords are kept here, in
the server's memory only (never a file, the database or a log line), and
``POST /api/dialplan/ldap-sync/passwords`` hands them over and forgets
them. A restart, or ``KEEP_SECONDS`` without a collection, forgets them
too; the admin then gives those extensions new ones (``POST
/api/extensions/N/password``). Time is passed in (a monotonic clock).
"""

from __future__ import annotations

import threading
from typing import Final

KEEP_SECONDS: Final = 7 * 86400.0


class PendingPasswords:
    """Written on the SIP loop's side, taken from the web thread: locked."""

    def __init__(self, keep_seconds: float = KEEP_SECONDS) -> None:
        self._keep = keep_seconds
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, float]] = {}

    def add(self, number: str, password: str, now: float) -> None:
        with self._lock:
            self._held[number] = (password, now)

    def take(self, now: float) -> list[tuple[str, str]]:
        """(number, password) of each held password not yet too old, in
        number order; none of them is held afterwards."""
        with self._lock:
            held, self._held = self._held, {}
        return sorted((number, password) for number, (password, at) in held.items() if now - at <= self._keep)
