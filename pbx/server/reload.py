"""Reloading the dialplan while the PBX runs.

Three things trigger a reload: SIGHUP, ``pbx reload`` (which sends SIGHUP to
the pid in the pid file), and a change to any file the plan was read from,
seen by polling their ``stat``. Polling a handful of files once a second
costs nothing and, unlike inotify, also works for files on network mounts
and for editors that save by renaming a new file over the old one.

A reload reads and validates the files off the event loop. A plan with any
error is not applied: the running plan stays and every problem is logged
with its ``file:line:col``. A valid plan is handed to ``apply`` on the loop
in one step, so a call is routed by either the old plan or the new one,
never half of each; calls in progress keep the legs they have.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from pbx.routing.dialplan import Dialplan
from pbx.routing.loader import LoadResult, read_dialplan

log = structlog.get_logger("pbx.reload")

POLL_INTERVAL = 1.0

Signature = tuple[tuple[str, int, int, int], ...]


def files_signature(paths: Iterable[str | Path]) -> Signature:
    """What changes when a file or its directory listing changes.

    Each source file gives (path, mtime, size, inode); each directory that
    holds one gives its mtime too, so a file added to an included directory
    is noticed. A missing file gives zeros: its reappearance is a change.
    """
    entries: list[tuple[str, int, int, int]] = []
    folders: set[str] = set()
    for path in paths:
        text = os.fspath(path)
        folders.add(os.path.dirname(os.path.abspath(text)))
        try:
            st = os.stat(text)
        except OSError:
            entries.append((text, 0, 0, 0))
        else:
            entries.append((text, st.st_mtime_ns, st.st_size, st.st_ino))
    for folder in sorted(folders):
        try:
            entries.append((folder, os.stat(folder).st_mtime_ns, 0, 0))
        except OSError:
            entries.append((folder, 0, 0, 0))
    return tuple(entries)


class DialplanReloader:
    """Keeps the running plan in step with the files it came from."""

    def __init__(
        self,
        path: Path,
        plan: Dialplan,
        apply: Callable[[Dialplan], None],
        *,
        read: Callable[[Path], LoadResult] = read_dialplan,
    ) -> None:
        self.path = path
        self.plan = plan
        self.apply = apply
        self.read = read
        self.generation = 0
        """How many plans have been applied since start-up."""
        self._lock = asyncio.Lock()
        self._seen = files_signature(self._watched())

    def _watched(self) -> list[str | Path]:
        return [self.path, *self.plan.sources]

    async def reload(self, trigger: str) -> bool:
        """Read the files again and apply them if valid; True if applied."""
        async with self._lock:  # a burst of signals reloads one at a time
            self._seen = files_signature(self._watched())
            result = await asyncio.to_thread(self.read, self.path)
            for problem in result.warnings:
                log.warning("dialplan_warning", problem=str(problem))
            if result.dialplan is None:
                log.error(
                    "dialplan_reload_rejected", trigger=trigger, path=str(self.path),
                    errors=len(result.errors), problems=[str(p) for p in result.errors],
                    kept_generation=self.generation,
                )
                return False
            new = result.dialplan
            if new == self.plan:
                log.info("dialplan_unchanged", trigger=trigger, path=str(self.path))
                return False
            self.plan = new
            self.apply(new)
            self.generation += 1
            # A reload may add includes: watch the files the new plan came from.
            self._seen = files_signature(self._watched())
            log.info(
                "dialplan_reloaded", trigger=trigger, path=str(self.path), generation=self.generation,
                extensions=len(new.extensions), files=len(new.sources),
            )
            return True

    def changed(self) -> bool:
        """Whether the watched files differ from the last look at them."""
        return files_signature(self._watched()) != self._seen

    async def watch(self, interval: float = POLL_INTERVAL) -> None:
        """Poll the files for ever, reloading after each change."""
        while True:
            await asyncio.sleep(interval)
            try:
                if self.changed():
                    await self.reload("file_changed")
            except Exception:  # our bug: keep the running plan and keep watching
                log.exception("dialplan_watch_failed")
