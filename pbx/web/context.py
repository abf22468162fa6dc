"""What the web app needs from the rest of the PBX, and the plain views of
live state it shows. The app never reaches into the SIP core: it asks a
:class:`LiveSource` (``pbx.web.live`` implements it over the running
server) on the event loop, where that state lives."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine

from pbx.routing.dialplan import Dialplan
from pbx.ldap.passwords import PendingPasswords
from pbx.security.lockout import Lockout
from pbx.store.codes import CodeStore
from pbx.web.store import WebStore


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationView:
    extension: str
    contact: str
    user_agent: str | None
    source: str
    expires_in: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LegView:
    target: str | None
    contact: str
    state: str
    trunk: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallView:
    uuid: str
    caller: str
    caller_department: str | None
    dialled: str
    destination: str | None
    state: str
    started_at: float
    answered_at: float | None
    legs: tuple[LegView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockView:
    source: str
    username: str
    until: float
    failures: int


class LiveSource(Protocol):
    """The running server's state; called on the event loop only."""

    def registrations(self) -> list[RegistrationView]: ...

    def calls(self) -> list[CallView]: ...

    def blocks(self) -> list[BlockView]: ...

    def sockets_bound(self) -> bool: ...


async def _no_reload(trigger: str) -> bool:
    return False


# Log-in guessing: 5 failures of one (address, username) within 5 minutes
# block that pair for 15 minutes; 20 usernames from one address block the
# address. The real user on another address is never locked out.
LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW = 300.0
LOGIN_BLOCK_SECONDS = 900.0


def login_lockout() -> Lockout:
    return Lockout(max_failures=LOGIN_MAX_FAILURES, window=LOGIN_WINDOW, block_seconds=LOGIN_BLOCK_SECONDS,
                   scan_usernames=20, retry_seconds=LOGIN_BLOCK_SECONDS)


@dataclass(kw_only=True)
class WebContext:
    engine: Engine
    store: WebStore
    dialplan_path: Path
    plan: Callable[[], Dialplan]
    """The plan in force (the running server's, or read from the file)."""
    reload: Callable[[str], Awaitable[bool]] = _no_reload
    """Ask the server to read the dialplan now; True if a new plan applied."""
    live: LiveSource | None = None
    secure_cookies: bool = True
    lockout: Lockout = field(default_factory=login_lockout)
    clock: Callable[[], float] = time.time
    metrics_text: Callable[[], tuple[bytes, str]] | None = None
    """Prometheus exposition (body, content type), when metrics are on."""
    metrics_open_on_loopback: bool = False
    """Let a scraper on this machine (127.0.0.0/8, ::1) read ``/metrics``
    without a token (``pbx serve --metrics-open-on-loopback``)."""
    codes: CodeStore | None = None
    """Account codes (the server's secret); None: the API answers 503."""
    pending_passwords: PendingPasswords = field(default_factory=PendingPasswords)
    """New SIP passwords from the server's periodic directory sync, until collected."""
