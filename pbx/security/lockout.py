"""Counting authentication failures and blocking guessers, without turning
the block on innocent users.

Pure: times (wall clock, seconds) are passed in. The rules, after
Kamailio's htable bans and Asterisk's per-account security events, but
keyed so that a block cannot be aimed at someone else:

- Failures are counted per (source address, username). ``max_failures``
  within ``window`` seconds block that pair for ``block_seconds``.
- A source that fails for ``scan_usernames`` different usernames within the
  window is a scanner: the whole source is blocked.
- Failures per username (from any source) are counted too; crossing
  ``targeted_failures`` is reported once per window, for the log: a
  username attacked from many addresses is worth an operator's look, but
  blocking the username would hand every attacker a way to lock its owner
  out, so it is not blocked.
- A block only silences requests whose credentials *fail*; requests with
  valid credentials are served as always (an office behind one NAT address
  keeps working while one of its PCs guesses passwords), and requests
  without credentials still get their challenge (every phone needs one
  before it can log in; the per-source rate limit, not the block, bounds
  those).
- A blocked pair (or, under a source block, a pair that has failed before)
  gets its credentials checked at most once per ``retry_seconds``; the
  rest are dropped unchecked. That is what stops the guessing: a blocked
  guesser tries one password per ``retry_seconds`` at most, while the real
  phone, if it shares the address and the username, gets through on a
  retransmission that comes first after a wait. A request from the very
  address and port a live registration of the username came from skips
  that wait (the phone itself: a guesser behind the same NAT has another
  port and would otherwise take most turns), and forged packets from
  outside take no turn at all, nonces being bound to the address (see
  pbx/registrar/auth.py).

Blocks are kept in the store by the edge (so a restart, or another node
sharing the database, keeps them); `load` refreshes this cache from there.
Memory is bounded: at most ``max_entries`` pairs, sources and usernames are
counted; past that the oldest counts are forgotten first.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")

ANY_USER = ""
"""The username of a block that covers every username from its source."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """A block in force (or just set) on a source, for one username or all."""

    source: str
    username: str
    """The username blocked from ``source``; `ANY_USER` for a scanner."""
    until: float
    failures: int

    @property
    def scope(self) -> str:
        return "source" if self.username == ANY_USER else "username"


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """What one counted failure caused."""

    blocks: tuple[Block, ...] = ()
    """Blocks this failure set (empty most of the time)."""
    targeted: int = 0
    """Failures for the username in the window, when it just crossed the
    ``targeted_failures`` line (reported once per window); else 0."""


_NOTHING = Failure()


class Lockout:
    def __init__(self, *, max_failures: int, window: float, block_seconds: float, scan_usernames: int = 10,
                 targeted_failures: int = 50, retry_seconds: float = 2.0, max_entries: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self.block_seconds = block_seconds
        self.scan_usernames = scan_usernames
        self.targeted_failures = targeted_failures
        self.retry_seconds = retry_seconds
        self.max_entries = max_entries
        self._pairs: dict[tuple[str, str], deque[float]] = {}
        # source -> username -> last failure time, for the scanner rule
        self._users_by_source: dict[str, dict[str, float]] = {}
        self._users: dict[str, deque[float]] = {}
        self._reported: dict[str, float] = {}
        self._blocks: dict[tuple[str, str], Block] = {}
        self._last_check: dict[tuple[str, str], float] = {}
        # Blocks set by this process, and when: not yet in the store, maybe.
        self._set_here: dict[tuple[str, str], float] = {}
        # The blocks the store held at the last `load`.
        self._stored: set[tuple[str, str]] = set()

    # ------------------------------------------------------------ questions

    def blocked(self, source: str, username: str, now: float) -> Block | None:
        """The block that covers ``username`` from ``source`` at ``now``."""
        for key in ((source, username), (source, ANY_USER)):
            block = self._blocks.get(key)
            if block is not None and block.until > now:
                return block
        return None

    def may_check(self, source: str, username: str, now: float) -> bool:
        """Whether credentials for ``username`` from ``source`` may be
        checked now. True unless the pair is under a block (its own, or its
        source's after it has failed there) and had a check less than
        ``retry_seconds`` ago; a True under a block starts a new wait."""
        key = (source, username)
        block = self.blocked(source, username, now)
        if block is None:
            return True
        if block.username == ANY_USER and key not in self._pairs and username not in self._users_by_source.get(
                source, {}):
            return True  # a neighbour behind the scanner's address, never failed here
        last = self._last_check.get(key)
        if last is not None and now - last < self.retry_seconds:
            return False
        if key not in self._last_check:
            self._trim(self._last_check)
        self._last_check[key] = now
        return True

    # ------------------------------------------------------------ counting

    def failure(self, source: str, username: str, now: float) -> Failure:
        """Count one failed check of ``username``'s credentials from ``source``."""
        horizon = now - self.window
        new: list[Block] = []
        pair = self._count(self._pairs, (source, username), now, horizon)
        if len(pair) >= self.max_failures and self.blocked(source, username, now) is None:
            new.append(self._block(source, username, now, len(pair)))
        seen = self._users_by_source.get(source)
        if seen is None:
            self._trim(self._users_by_source)
            seen = self._users_by_source[source] = {}
        seen[username] = now
        for name in [n for n, at in seen.items() if at <= horizon]:
            del seen[name]
        scanning = self._blocks.get((source, ANY_USER))
        if len(seen) >= self.scan_usernames and (scanning is None or scanning.until <= now):
            new.append(self._block(source, ANY_USER, now, len(seen)))
        per_user = self._count(self._users, username, now, horizon)
        targeted = 0
        if len(per_user) >= self.targeted_failures and self._reported.get(username, -1e18) <= horizon:
            self._reported[username] = now
            targeted = len(per_user)
        if new:
            self._last_check[(source, username)] = now  # this very check: the next waits
        if not new and not targeted:
            return _NOTHING
        return Failure(blocks=tuple(new), targeted=targeted)

    def _count(self, table: dict[_K, deque[float]], key: _K, now: float, horizon: float) -> deque[float]:
        times = table.get(key)
        if times is None:
            self._trim(table)
            times = table[key] = deque()
        times.append(now)
        while times[0] <= horizon:
            times.popleft()
        return times

    def _trim(self, table: dict[_K, _V]) -> None:
        # Oldest first: dicts keep insertion order.
        while len(table) >= self.max_entries:
            del table[next(iter(table))]

    def _block(self, source: str, username: str, now: float, failures: int) -> Block:
        block = Block(source=source, username=username, until=now + self.block_seconds, failures=failures)
        self._trim(self._blocks)
        self._blocks[(source, username)] = block
        self._set_here[(source, username)] = now
        return block

    def _live(self, now: float) -> dict[tuple[str, str], Block]:
        return {key: block for key, block in self._blocks.items() if block.until > now}

    # ------------------------------------------------------------ the store's side

    def load(self, blocks: Iterable[Block], *, read_at: float) -> None:
        """Replace the blocks with those read from the store at ``read_at``
        (the store is the truth: a block lifted there, by `pbx security
        blocks clear` or on another node, is lifted here). Blocks set here
        since ``read_at`` may not have reached the store yet: kept."""
        fresh = {key: self._blocks[key] for key, at in self._set_here.items() if at >= read_at and key in self._blocks}
        self._set_here = {key: at for key, at in self._set_here.items() if key in fresh}
        stored = {(block.source, block.username): block for block in blocks}
        # A block the store held at the last read, still in force, and gone
        # from it now was lifted (`pbx security blocks clear`, another
        # node). Its failures go with it: kept, the owner's next typo would
        # add up with the guesses before the lift and block them again at
        # once. (A block set here and not yet seen in the store is not
        # taken for lifted: its write may simply not have landed.)
        for key in self._stored - stored.keys():
            block = self._blocks.get(key)
            if block is not None and block.until > read_at and key not in fresh:
                self._forget_failures(*key)
        self._stored = set(stored)
        self._blocks = stored
        self._blocks.update(fresh)

    def _forget_failures(self, source: str, username: str) -> None:
        """Count ``username`` from ``source`` (every username, for a source
        block) from nothing again."""
        if username == ANY_USER:
            self._users_by_source.pop(source, None)
            keys = [key for key in self._pairs if key[0] == source]
        else:
            keys = [(source, username)]
        for key in keys:
            self._pairs.pop(key, None)
            self._last_check.pop(key, None)

    def blocks(self, now: float) -> list[Block]:
        return list(self._live(now).values())

    def sweep(self, now: float) -> None:
        """Forget old failures and ended blocks, so memory stays bounded."""
        horizon = now - self.window
        for table in (self._pairs, self._users):
            for key in [k for k, times in table.items() if not times or times[-1] <= horizon]:
                del table[key]  # type: ignore[arg-type]
        for source in [s for s, seen in self._users_by_source.items() if max(seen.values(), default=horizon) <= horizon]:
            del self._users_by_source[source]
        for name in [n for n, at in self._reported.items() if at <= horizon]:
            del self._reported[name]
        for key in [k for k, block in self._blocks.items() if block.until <= now]:
            del self._blocks[key]
            self._set_here.pop(key, None)
        for key in [k for k, at in self._last_check.items() if now - at >= self.retry_seconds]:
            del self._last_check[key]

