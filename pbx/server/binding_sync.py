"""Keeps this node's in-memory bindings in step with the other nodes'.

Glue between ``pbx.store.binding_events`` (a thread hearing which AORs
another node changed) and the registrar's ``BindingTable`` (the event
loop's): each change is read back from the store in a worker thread and the
AOR's bindings replaced on the loop. An AOR with a change of this node's own
still waiting to be written is left alone: the store does not have that
change yet, and this node's write will tell the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone

import structlog
from sqlalchemy import Engine

from pbx.registrar.bindings import Binding, BindingTable
from pbx.registrar.persist import BindingWriteBehind
from pbx.store.binding_events import BindingListener, BindingsChanged
from pbx.store.bindings import BindingRecord, BindingStore

log = structlog.get_logger("pbx.cluster")


class BindingSync:
    def __init__(self, *, engine: Engine, node: str, store: BindingStore, table: BindingTable,
                 pending: BindingWriteBehind, to_binding: Callable[[BindingRecord], Binding],
                 wall_clock: Callable[[], float], changed: Callable[[str], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._store, self._table, self._pending = store, table, pending
        self._to_binding, self._wall = to_binding, wall_clock
        self._changed = changed
        self._tasks: set[asyncio.Task[None]] = set()
        self.listener = BindingListener(engine, node, self._heard, self._gap) \
            if BindingListener.applies(engine) else None

    def start(self) -> None:
        if self.listener is not None:
            self.listener.start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()

    # -- the listener's thread -------------------------------------------------

    def _heard(self, change: BindingsChanged) -> None:
        self._loop.call_soon_threadsafe(self._spawn, change.aors)

    def _gap(self) -> None:
        self._loop.call_soon_threadsafe(self._spawn, None)

    # -- the event loop ----------------------------------------------------------

    def _spawn(self, aors: tuple[str, ...] | None) -> None:
        task = self._loop.create_task(self.refresh(aors))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        for aor, bindings in by_aor.items():
            if self._pending.pending(aor):
                continue
            before = {b.contact for b in self._table.current(aor, wall)}
            self._table.replace_aor(aor, bindings, wall)
            if {b.contact for b in self._table.current(aor, wall)} != before:
                self._changed(aor)
        # One line per notification heard (a flush of another node's
        # writes, at most five a second from each node).
        log.info("bindings_refreshed", count=len(by_aor), aors=sorted(by_aor)[:20])
