"""Telling the other PBX nodes that registrations changed: PostgreSQL
LISTEN/NOTIFY.

Each node keeps every binding in memory (``pbx.registrar.bindings``) and the
store is the truth shared by all nodes. When a node writes bindings it sends,
in the same transaction, a notification naming the addresses-of-record it
touched; PostgreSQL delivers it to every listening session at commit, so a
node re-reads only those AORs, a few milliseconds after the write. The
alternative, re-reading every binding every few seconds (a TTL), leaves a
phone unreachable from the other nodes for up to that long after it
registers, and costs a full table read per node per period however little
changed (bench/cluster_bindings.py measures both).

The channel is per schema (``pbx_bindings:<schema>``): notifications are per
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

CHANNEL_PREFIX: Final = "pbx_bindings:"
# PostgreSQL refuses a payload of 8000 bytes or more; AORs are short, so a
# few hundred fit in one notification and a burst is split into several.
MAX_PAYLOAD: Final = 7000
# How long the listener waits for a notification before checking whether it
# should stop; also how soon it notices that it must.
POLL_SECONDS: Final = 1.0
RECONNECT_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class BindingsChanged:
    """Node ``node`` changed the bindings of ``aors``."""

    node: str
    aors: tuple[str, ...]


def payloads(node: str, aors: Iterable[str]) -> Iterator[str]:
    """The notification payloads announcing ``aors`` (sorted, each once),
    split so each stays under ``MAX_PAYLOAD`` bytes."""
    chunk: list[str] = []
    size = 0
    budget = MAX_PAYLOAD - len(json.dumps({"node": node, "aors": []}).encode())
    for aor in sorted(set(aors)):
        cost = len(json.dumps(aor).encode()) + 2
        if chunk and size + cost > budget:
            yield json.dumps({"node": node, "aors": chunk})
            chunk, size = [], 0
        chunk.append(aor)
        size += cost
    if chunk:
        yield json.dumps({"node": node, "aors": chunk})


def parse_payload(payload: str) -> BindingsChanged | None:
    """The change a payload announces; None for anything else (another
    program on the channel must not crash the listener)."""
    try:
        data: Any = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    node, aors = data.get("node"), data.get("aors")
    if not isinstance(node, str) or not isinstance(aors, list) or not all(isinstance(a, str) for a in aors):
        return None
    return BindingsChanged(node=node, aors=tuple(aors))


def announce(conn: Connection, node: str, aors: Iterable[str]) -> None:
    """Op part: notify the other nodes, at this transaction's commit, that
    ``aors`` changed. Nothing on SQLite."""
    if conn.dialect.name != "postgresql":
        return
    for payload in payloads(node, aors):
        conn.execute(_NOTIFY, {"payload": payload})


_NOTIFY = text(f"SELECT pg_notify('{CHANNEL_PREFIX}' || current_schema(), :payload)")


class BindingListener:
    """A thread LISTENing on the bindings channel of ``engine``'s schema;
    calls ``on_change`` (from that thread) with every other node's change,
    and ``on_gap`` after (re)connecting, when notifications may have been
    missed and everything must be read again."""

    def __init__(self, engine: Engine, node: str, on_change: Callable[[BindingsChanged], None],
                 on_gap: Callable[[], None]) -> None:
        self._engine, self._node = engine, node
        self._on_change, self._on_gap = on_change, on_gap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pbx-binding-listener", daemon=True)
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
                log.warning("binding_listener_lost", error=type(error).__name__)
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
            log.info("binding_listener_started", channel=channel)
            while not self._stop.is_set():
                for notification in connection.notifies(timeout=POLL_SECONDS):
                    change = parse_payload(notification.payload)
                    if change is not None and change.node != self._node:
                        self._on_change(change)
                    if self._stop.is_set():
                        break
        finally:
            raw.invalidate()   # a LISTENing session must not go back to the pool
