"""The edge of the lock-out and the rate limit: log lines, the store, the
cache refresh, and the gate in front of new requests.

The registrar and the calling path both authenticate; whatever a failure
caused (a block, a username under attack) is reported here once, so both
paths log, store and count it the same way.

Before parsing, every datagram and TCP message takes a token from its
source's packet bucket (``source_packets_per_second``); a source out of
them is dropped unparsed, except a trunk's gateways.

The gate: a new request (out of any dialog) from a source that is not a
trunk's gateway takes a token from its source's bucket if it carries no
credentials, and so does every authentication that does not succeed. A
source out of tokens gets no answer to such requests, while requests with
valid credentials are served all the same (`SourceRateLimit`).

Log lines an operator (or fail2ban) relies on, one JSON object per line
with ``source`` always the first key (see deploy/fail2ban/):

- ``auth_failed``: credentials were checked and were wrong;
- ``security_block``: a (source, username) pair, or a whole source
  (``scope: source``), is blocked; one line per block set;
- ``auth_username_targeted``: one username failed ``targeted_failures``
  times within the window, from any sources (not blocked: see lockout.py);
- ``source_rate_limited``: a source ran out of tokens (once per dry spell);
- ``message_dropped`` / ``messages_dropped``: junk, the first of a kind in
  full, then a summary per kind every ten seconds.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import structlog
from sqlalchemy import Connection

from pbx.registrar.auth import Challenge
from pbx.security.lockout import Block, Lockout
from pbx.security.rate_limit import SourceRateLimit
from pbx.security.sampling import DropSampler, Summary
from pbx.sip.address import Peer
from pbx.sip.message import Request
from pbx.store.blocks import BlockStore, StoredBlock
from pbx.store.change_events import announce
from pbx.store.writer import BackgroundWriter

log = structlog.get_logger("pbx.security")

REASON = "auth_failures"
SCAN_REASON = "auth_scan"


_CREDENTIALS = ("authorization", "proxy-authorization")


class SecurityEvents:
    def __init__(self, lockout: Lockout, limit: SourceRateLimit, writer: BackgroundWriter, blocks: BlockStore,
                 wall_clock: Callable[[], float], *, exempt: Callable[[Peer], bool] = lambda _: False,
                 packets: SourceRateLimit | None = None) -> None:
        self.lockout = lockout
        self.limit = limit
        # Not `packets or ...`: a SourceRateLimit has a length, so a fresh
        # (empty) one is falsy, and the dialplan's rate was ignored.
        self.packets = packets if packets is not None else SourceRateLimit(rate=2000, burst=4000)
        """Every datagram or message per source, before parsing."""
        self.writer = writer
        self.blocks = blocks
        self.wall_clock = wall_clock
        self.exempt = exempt
        """Sources never limited nor counted: the trunks' gateways."""
        self.drops = DropSampler()
        self.blocks_set = 0
        """Blocks set since start, for metrics."""

    def admit_bytes(self, source: Peer, now: float) -> bool:
        """Whether to parse what ``source`` just sent at all: False once it
        sends more than the per-source packet rate (a flood costs a lookup
        per packet then, not a parse)."""
        if self.packets.consume(source.host, now) or self.exempt(source):
            return True
        self.dropped("source_flooding", source, now)
        return False

    def admit(self, request: Request, source: Peer, now: float) -> bool:
        """Whether to handle a new request at all (see the module)."""
        if self.exempt(source):
            return True
        if any(request.has(header) for header in _CREDENTIALS):
            return True  # judged by its credentials: a failure takes its token then
        return self._take(source, now)

    def answer(self, challenge: Challenge, source: Peer, method: str) -> bool:
        """Log, count and store what ``challenge`` (an authentication that
        did not succeed) says happened; whether to send its 401/407."""
        silent = challenge.silent
        if challenge.reason != "no_credentials" and not self.exempt(source):
            # The request carried credentials, so `admit` took no token.
            silent = not self._take(source, self.wall_clock()) or silent
        self._report(challenge, source, method, answered=not silent)
        return not silent

    def _take(self, source: Peer, now: float) -> bool:
        had = self.limit.has_tokens(source.host, now)
        limited = self.limit.take(source.host, now)
        if limited is not None:
            log.warning("source_rate_limited", source=source.host, rate=limited.rate, burst=limited.burst)
        return had

    def dropped(self, reason: str, source: Peer, now: float, **fields: object) -> None:
        """Log junk (or a request refused before it was looked at) sampled."""
        full, summary = self.drops.drop(reason, source.host, now)
        if summary is not None:
            self._summarise(summary)
        if full:
            log.info("message_dropped", source=source.host, port=source.port, reason=reason,
                     sampled=f"later ones summarised every {self.drops.interval:g} s", **fields)

    def _summarise(self, summary: Summary) -> None:
        log.info("messages_dropped", reason=summary.reason, count=summary.count, seconds=summary.seconds,
                 sources=dict(summary.sources))

    def _report(self, challenge: Challenge, source: Peer, method: str, *, answered: bool) -> None:
        if challenge.failed:
            log.warning("auth_failed", source=source.host, port=source.port, username=challenge.username,
                        method=method, reason=challenge.reason, answered=answered)
        failure = challenge.failure
        if failure is None:
            return
        for block in failure.blocks:
            self._block(block)
        if failure.targeted:
            log.warning("auth_username_targeted", username=challenge.username, failures=failure.targeted,
                        window=self.lockout.window)

    def _block(self, block: Block) -> None:
        self.blocks_set += 1  # for metrics
        wall = self.wall_clock()
        log.warning("security_block", source=block.source, username=block.username, scope=block.scope,
                    failures=block.failures, seconds=round(block.until - wall))
        until = datetime.fromtimestamp(block.until, timezone.utc)
        reason = SCAN_REASON if block.scope == "source" else REASON

        def write(conn: Connection) -> None:
            self.blocks.block(block.source, until, reason, block.failures, conn=conn, username=block.username)
            # Every node sharing the store reads its blocks again now, not at
            # its next sweep (this one too: it names no node).
            announce(conn, "", "blocks", [block.source])

        self.writer.submit(write)

    def sweep(self, now: float) -> None:
        """Periodic: forget refilled buckets and old counts; write held-back
        drop summaries."""
        self.limit.sweep(now)
        self.packets.sweep(now)
        self.lockout.sweep(now)
        for summary in self.drops.flush(now):
            self._summarise(summary)

    def refresh(self, stored: list[StoredBlock], read_at: float) -> None:
        """Take the store's blocks (read off the event loop at wall time
        ``read_at``) as the truth: blocks set on other nodes hold here,
        lifted ones are lifted."""
        self.lockout.load(
            (Block(source=b.source, username=b.username, until=b.until.timestamp(), failures=b.failures)
             for b in stored),
            read_at=read_at,
        )
