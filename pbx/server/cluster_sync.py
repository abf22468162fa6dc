"""Keeps this node's in-memory state in step with the other nodes'.

Glue between ``pbx.store.change_events`` (a thread hearing what another
node changed) and the caches the event loop uses:

* bindings: the AORs named are read back from the store in a worker thread
  and replaced in the registrar's ``BindingTable`` on the loop. An AOR with
  a change of this node's own still waiting to be written is left alone:
  the store does not have that change yet, and this node's write will tell
  the others;
* hunt groups and features (forwards, DND): their tables are small, so the
  topic's ``reload`` reads and merges the whole of it (the same merge the
  sweeper does every few seconds, which stays as the safety net);
* presence: the other nodes' calls of the extensions named.

A topic's ``reload`` gets the keys named, or None for everything (after
the listener reconnected).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone

import structlog
from sqlalchemy import Engine

from pbx.registrar.bindings import Binding, BindingTable
from pbx.registrar.persist import BindingWriteBehind
from pbx.store.change_events import ChangeListener, StoreChanged
from pbx.store.bindings import BindingRecord, BindingStore

log = structlog.get_logger("pbx.cluster")


class ClusterSync:
    def __init__(self, *, engine: Engine, node: str, store: BindingStore, table: BindingTable,
                 pending: BindingWriteBehind, to_binding: Callable[[BindingRecord], Binding],
                 wall_clock: Callable[[], float], changed: Callable[[str], None],
                 reload: Mapping[str, Callable[[tuple[str, ...] | None], Awaitable[None]]]) -> None:
        self._loop = asyncio.get_running_loop()
        self._store, self._table, self._pending = store, table, pending
        self._to_binding, self._wall = to_binding, wall_clock
        self._changed = changed
        self._reload = reload
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: set[str] = set()
        self._waiting: dict[str, set[str] | None] = {}
        self.listener = ChangeListener(engine, node, self._heard, self._gap) \
            if ChangeListener.applies(engine) else None

    def start(self) -> None:
        if self.listener is not None:
            self.listener.start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()

    # -- the listener's thread -------------------------------------------------

    def _heard(self, change: StoreChanged) -> None:
        self._loop.call_soon_threadsafe(self._spawn, change.topic, change.keys)

    def _gap(self) -> None:
        self._loop.call_soon_threadsafe(self._spawn, None, None)

    # -- the event loop ----------------------------------------------------------

    def _spawn(self, topic: str | None, keys: tuple[str, ...] | None) -> None:
        """Read back ``topic`` (None: everything) for ``keys``."""
        for name in ([*self._reload, "bindings"] if topic is None else [topic]):
            if name == "bindings" or name in self._reload:
                self._want(name, keys)

    def _want(self, topic: str, keys: tuple[str, ...] | None) -> None:
        """One read per topic at a time: what is heard meanwhile is gathered
        (None: everything) and read once the running read is done, so a busy
        node's notifications cost a read per read's duration, not one each."""
        if topic in self._running:
            gathered = self._waiting.get(topic, set())
            self._waiting[topic] = None if keys is None or gathered is None else gathered | set(keys)
            return
        self._running.add(topic)
        task = self._loop.create_task(self._read(topic, keys))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, topic: str, keys: tuple[str, ...] | None) -> None:
        try:
            if topic == "bindings":
                await self.refresh(keys)
            else:
                await self._reloaded(topic, keys)
        finally:
            self._running.discard(topic)
            if topic in self._waiting:
                more = self._waiting.pop(topic)
                self._want(topic, None if more is None else tuple(sorted(more)))

    async def _reloaded(self, topic: str, keys: tuple[str, ...] | None) -> None:
        try:
            await self._reload[topic](keys)
        except Exception:
            log.exception("store_reload_failed", topic=topic)
            return
        log.info("store_reloaded", topic=topic)

    async def refresh(self, aors: tuple[str, ...] | None) -> None:
        """Read ``aors`` (None: every AOR) back from the store and use them."""
        now = datetime.now(timezone.utc)
        try:
            if aors is None:
                records = await asyncio.to_thread(self._store.load_active, now)
                wanted = set(self._table.aors()) | {record.aor for record in records}
            else:
                records = await asyncio.to_thread(self._store.for_aors, aors, now)
                wanted = set(aors)
        except Exception:
            log.exception("binding_refresh_failed")
            return
        by_aor: dict[str, list[Binding]] = {aor: [] for aor in wanted}
        for record in records:
            by_aor.setdefault(record.aor, []).append(self._to_binding(record))
        wall = self._wall()
        pending = self._pending.pending_aors()
        for aor, bindings in by_aor.items():
            if aor in pending:
                continue
            before = {b.contact for b in self._table.current(aor, wall)}
            self._table.replace_aor(aor, bindings, wall)
            if {b.contact for b in self._table.current(aor, wall)} != before:
                self._changed(aor)
        # One line per notification heard (a flush of another node's
        # writes, at most five a second from each node).
        log.info("bindings_refreshed", count=len(by_aor), aors=sorted(by_aor)[:20])
