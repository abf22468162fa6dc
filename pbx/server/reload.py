"""Reloading the dialplan while the PBX runs.

Three things trigger a reload: SIGHUP, ``pbx reload`` (which sends SIGHUP to
the pid in the pid file), and a change to any file the plan was read from,
seen by polling their ``stat``. Polling a handful of files once a second
costs nothing and, unlike inotify, also works for files on network mounts
and for editors that save by renaming a new file over the old one.

Exactly the plan's files are watched: the YAML files, their includes, the
members files, and the ``.yaml`` listing of folders included whole. Other
files beside them (a database's WAL, a load tool's output, an editor's swap
file) are not: with a large directory each needless reload costs seconds of
CPU.

A reload reads and validates the files off the event loop. A small plan
(under ``CHILD_PROCESS_BYTES`` of YAML, a few hundred extensions) is read on
a thread: tens of milliseconds, in GIL slices the loop interleaves with. A
large one is read in a child process (:mod:`pbx.server.plan_process`): its
second of CPU would otherwise hold the GIL the loop needs (a 20,000
extension plan held it for up to 0.8 s). The child is started with the
server when the plan is large, imports the loader once and forks a reader
for each reload; a small plan's quick edit is still quicker on a thread.
Either way the result is compared with the running plan on the thread. A plan
with any error is not applied: the running plan stays and every problem is
logged with its ``file:line:col``. A valid plan is handed to ``apply`` on
the loop in one step, so a call is routed by either the old plan or the new
one, never half of each; calls in progress keep the legs they have.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import holidays  # noqa: F401  (a plan's calendars import it on first use: here, not on the loop)
import structlog

from pbx.routing.dialplan import Dialplan
from pbx.routing.loader import LoadResult, Problem, read_dialplan, yaml_files_in
from pbx.server.plan_process import PlanProcessError, PlanReader

log = structlog.get_logger("pbx.reload")

POLL_INTERVAL = 1.0

CHILD_PROCESS_BYTES = 256 * 1024
"""A plan whose files (as last read) total this many bytes is read in a child process."""

Signature = tuple[tuple[str, int, int, int], ...]


def _file_entry(path: str) -> tuple[str, int, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return path, 0, 0, 0
    return path, st.st_mtime_ns, st.st_size, st.st_ino


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
        entries.append(_file_entry(text))
    for folder in sorted(folders):
        try:
            entries.append((folder, os.stat(folder).st_mtime_ns, 0, 0))
        except OSError:
            entries.append((folder, 0, 0, 0))
    return tuple(entries)


PlanSignature = tuple[Signature, tuple[tuple[str, tuple[str, ...]], ...]]


def plan_signature(files: Iterable[str | Path], folders: Iterable[str | Path] = ()) -> PlanSignature:
    """What changes when a plan's own files change, and nothing else.

    Each file gives (path, mtime, size, inode), zeros when missing (its
    reappearance is a change); each folder included whole gives the names of
    its ``.yaml`` files, so one added or removed is noticed while any other
    file written there is not.
    """
    entries = [_file_entry(os.fspath(path)) for path in files]
    listings: list[tuple[str, tuple[str, ...]]] = []
    for folder in folders:
        try:
            names = tuple(p.name for p in yaml_files_in(Path(folder)))
        except OSError:
            names = ()
        listings.append((os.fspath(folder), names))
    return tuple(entries), tuple(listings)


FREE_CHUNK = 2000
"""Entries of a plan's large mappings freed per turn of the loop."""


def free_gradually(plan: Dialplan, loop: asyncio.AbstractEventLoop, *, chunk: int = FREE_CHUNK) -> None:
    """Let the loop free a discarded plan a slice at a time.

    Freeing 20,000 extensions at once is one uninterrupted cascade of
    deallocations in C (about 40 ms here) on whichever thread drops the
    last reference; a thread would hold the GIL just the same. So the
    values of the plan's large mappings are kept in a list that the loop
    empties ``chunk`` at a time, between other callbacks; the caller then
    drops its own reference, and what remains of the plan (its mappings'
    tables, small now) goes at once. A plan still referenced elsewhere (by
    a call in progress) loses only these extra references.
    """
    pieces: list[object] = []
    for field in dataclasses.fields(plan):
        value = getattr(plan, field.name)
        if isinstance(value, Mapping) and len(value) > chunk:
            pieces.extend(value.values())
    if not pieces:
        return

    def free_some() -> None:
        del pieces[-chunk:]
        if pieces:
            loop.call_soon(free_some)

    loop.call_soon(free_some)


def plans_equal(a: Dialplan, b: Dialplan) -> bool:
    """``a == b``, in steps another thread can run between.

    Comparing two dicts is one call into C that keeps the GIL until it is
    done: for the 100,000 places a plan kept as a dict about 50 ms, during
    which the event loop waits even though the comparison runs on another
    thread. Large mappings are compared entry by entry in Python instead,
    where the interpreter hands the GIL over every switch interval. (The
    places are now a few strings and arrays,
    :class:`~pbx.routing.places.RulePlaces`, compared in a few milliseconds.)
    """
    for field in dataclasses.fields(a):
        if not field.compare:
            continue
        mine, theirs = getattr(a, field.name), getattr(b, field.name)
        if isinstance(mine, Mapping) and isinstance(theirs, Mapping) and len(mine) > FREE_CHUNK:
            if len(mine) != len(theirs):
                return False
            for key, value in mine.items():
                if key not in theirs or theirs[key] != value:
                    return False
        elif mine != theirs:
            return False
    return True


class DialplanReloader:
    """Keeps the running plan in step with the files it came from."""

    def __init__(
        self,
        path: Path,
        plan: Dialplan,
        apply: Callable[[Dialplan], None],
        *,
        read: Callable[[Path], LoadResult] | None = None,
    ) -> None:
        self.path = path
        self.plan = plan
        self.apply = apply
        self.read = read
        """How the files are read; None: by size, on a thread or in a child."""
        self.generation = 0
        """How many plans have been applied since start-up."""
        self._lock = asyncio.Lock()
        self._seen = self._signature()
        self._reader = PlanReader()
        if read is None and self._large():
            # Its interpreter and imports now, at start-up, not in each reload.
            self._reader.start()

    def close(self) -> None:
        """End the plan reader's child, if one was started."""
        self._reader.close()

    def _large(self) -> bool:
        """Whether the plan's files, as last seen, are for a child to read."""
        return sum(entry[2] for entry in self._seen[0]) >= CHILD_PROCESS_BYTES

    def _signature(self) -> PlanSignature:
        return plan_signature([self.path, *self.plan.sources], self.plan.source_folders)

    def _read(self) -> tuple[LoadResult, bool]:
        """The files read again, and whether they give the running plan
        (comparing 20,000 extensions is work for this thread, not the loop)."""
        read = self.read
        if read is None:
            read = self._reader.read if self._large() else read_dialplan
        try:
            result = read(self.path)
        except PlanProcessError as error:
            problem = Problem(os.fspath(self.path), 1, 1, f"could not be read: {error}")
            return LoadResult(dialplan=None, problems=(problem,)), False
        return result, result.dialplan is not None and plans_equal(result.dialplan, self.plan)

    async def reload(self, trigger: str) -> bool:
        """Read the files again and apply them if valid; True if applied."""
        async with self._lock:  # a burst of signals reloads one at a time
            self._seen = self._signature()
            result, unchanged = await asyncio.to_thread(self._read)
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
            loop = asyncio.get_running_loop()
            if unchanged:
                log.info("dialplan_unchanged", trigger=trigger, path=str(self.path))
                free_gradually(new, loop)
                del result, new
                return False
            old, self.plan = self.plan, new
            self.apply(new)
            free_gradually(old, loop)
            del old
            self.generation += 1
            # A reload may add includes: watch the files the new plan came from.
            self._seen = self._signature()
            log.info(
                "dialplan_reloaded", trigger=trigger, path=str(self.path), generation=self.generation,
                extensions=len(new.extensions), files=len(new.sources),
            )
            return True

    def changed(self) -> bool:
        """Whether the watched files differ from the last look at them."""
        return self._signature() != self._seen

    async def watch(self, interval: float = POLL_INTERVAL) -> None:
        """Poll the files for ever, reloading after each change."""
        while True:
            await asyncio.sleep(interval)
            try:
                if self.changed():
                    await self.reload("file_changed")
            except Exception:  # our bug: keep the running plan and keep watching
                log.exception("dialplan_watch_failed")
