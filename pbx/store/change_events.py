"""Telling the other PBX nodes that lasting state changed: PostgreSQL
LISTEN/NOTIFY.

Each node keeps what it needs on the call path in memory (every binding,
``pbx.registrar.bindings``; hunt groups' rotation and log-ins; forwards and
DND) and the store is the truth shared by all nodes. When a node writes such
a row it sends, in the same transaction, a notification naming the topic
(``bindings``, ``hunt``, ``features``, ``presence``, ``blocks``, ``voicemail``) and the keys it touched
(AORs, group numbers, extensions, mailboxes); ``auth_failures`` carries events, not keys (each a
failed authentication: time, source, username, see pbx/server/security.py); PostgreSQL delivers it to every listening session at
commit, so a node re-reads only that, a few milliseconds after the write. The
alternative, re-reading every binding every few seconds (a TTL), leaves a
phone unreachable from the other nodes for up to that long after it
registers, and costs a full table read per node per period however little
changed (bench/cluster_bindings.py measures both).

The channel is per schema (``pbx_changes:<schema>``): notifications are per
database, and two deployments (or two tests) may share one database in
separate schemas. A notification from this node itself is ignored.

SQLite has one node only: nothing is sent, nothing listened for.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import structlog
from sqlalchemy import Connection, Engine, text

log = structlog.get_logger(__name__)

CHANNEL_PREFIX: Final = "pbx_changes:"
TOPICS: Final = frozenset({"bindings", "hunt", "features", "presence", "blocks", "auth_failures", "voicemail"})
# PostgreSQL refuses a payload of 8000 bytes or more; keys are short, so a
# few hundred fit in one notification and a burst is split into several.
MAX_PAYLOAD: Final = 7000
# How long the listener waits for a notification before checking whether it
# should stop; also how soon it notices that it must.
POLL_SECONDS: Final = 1.0
RECONNECT_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class StoreChanged:
    """Node ``node`` changed the ``topic`` rows of ``keys``."""

    node: str
    topic: str
    keys: tuple[str, ...]


def payloads(node: str, topic: str, keys: Iterable[str]) -> Iterator[str]:
    """The notification payloads announcing ``keys`` (sorted, each once),
    split so each stays under ``MAX_PAYLOAD`` bytes."""
    chunk: list[str] = []
    size = 0
    budget = MAX_PAYLOAD - len(json.dumps({"node": node, "topic": topic, "keys": []}).encode())
    for key in sorted(set(keys)):
        cost = len(json.dumps(key).encode()) + 2
        if chunk and size + cost > budget:
            yield json.dumps({"node": node, "topic": topic, "keys": chunk})
            chunk, size = [], 0
        chunk.append(key)
        size += cost
    if chunk:
        yield json.dumps({"node": node, "topic": topic, "keys": chunk})


def parse_payload(payload: str) -> StoreChanged | None:
    """The change a payload announces; None for anything else (another
    program on the channel must not crash the listener)."""
    try:
        data: Any = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    node, topic, keys = data.get("node"), data.get("topic"), data.get("keys")
    if not isinstance(node, str) or topic not in TOPICS or not isinstance(keys, list) \
            or not all(isinstance(key, str) for key in keys):
        return None
    return StoreChanged(node=node, topic=topic, keys=tuple(keys))


def announce(conn: Connection, node: str, topic: str, keys: Iterable[str]) -> None:
    """Op part: notify the other nodes, at this transaction's commit, that
    the ``topic`` rows of ``keys`` changed. Nothing on SQLite."""
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}")
    if conn.dialect.name != "postgresql":
        return
    for payload in payloads(node, topic, keys):
        conn.execute(_NOTIFY, {"payload": payload})


_NOTIFY = text(f"SELECT pg_notify('{CHANNEL_PREFIX}' || current_schema(), :payload)")


class ChangeListener:
    """A thread LISTENing on the changes channel of ``engine``'s schema;
    calls ``on_change`` (from that thread) with every other node's change,
    and ``on_gap`` after (re)connecting, when notifications may have been
    missed and everything must be read again."""

    def __init__(self, engine: Engine, node: str, on_change: Callable[[StoreChanged], None],
                 on_gap: Callable[[], None]) -> None:
        self._engine, self._node = engine, node
        self._on_change, self._on_gap = on_change, on_gap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pbx-change-listener", daemon=True)
        self.listening = threading.Event()
        """Set once the first LISTEN is in place (tests wait on it)."""

    @staticmethod
    def applies(engine: Engine) -> bool:
        return engine.dialect.name == "postgresql"

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 2 * POLL_SECONDS) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                self._listen(first)
            except Exception as error:  # noqa: BLE001 - the database went away: listen again
                log.warning("change_listener_lost", error=type(error).__name__)
            first = False
            self._stop.wait(RECONNECT_SECONDS)

    def _listen(self, first: bool) -> None:
        raw = self._engine.raw_connection()
        try:
            connection: Any = raw.driver_connection
            connection.autocommit = True
            schema = connection.execute("SELECT current_schema()").fetchone()[0]
            channel = (CHANNEL_PREFIX + schema).replace('"', '""')
            connection.execute(f'LISTEN "{channel}"')
            self.listening.set()
            if not first:
                self._on_gap()   # what changed while we were not listening
            log.info("change_listener_started", channel=channel)
            while not self._stop.is_set():
                for notification in connection.notifies(timeout=POLL_SECONDS):
                    change = parse_payload(notification.payload)
                    if change is not None and change.node != self._node:
                        self._on_change(change)
                    if self._stop.is_set():
                        break
        finally:
            raw.invalidate()   # a LISTENing session must not go back to the pool
