"""Reading a dialplan in a child process, so a reload never holds the loop.

Reading a large plan is a second of Python work (YAML composition, the
node tree to data with every place, schema validation, the model's checks
and build: about 1.1 s of CPU for 20,000 extensions here, 1.7 s before the
places were kept compact (among other changes), 3.0 s before the compiled
schema check, 16 s before libyaml). In a thread of the server it would hold the GIL the event loop
needs, and every call would wait for it. A child process does the work on
its own interpreter and sends the result back pickled; unpickling the plan
(about 0.1 s for 20,000 extensions) happens on the reloader's thread, in
small steps the loop can interleave with.

The child is this module run with ``python -m``: no ``multiprocessing``, so
nothing of the server (its ``__main__``, its sockets, its threads) is
copied or imported into it. Its answer is trusted: it is our own code, read
from our own pipe.

Bad input is not an exception: the child's ``read_dialplan`` reports every
problem in the result. Only a child that dies (killed, out of memory, a bug)
raises :class:`PlanProcessError`; the reloader keeps the running plan.
"""

from __future__ import annotations

import copyreg
import gc
import os
import pickle
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pbx.routing.loader import LoadResult, read_dialplan

TIMEOUT: Final = 600.0
"""Seconds a child may take before it is killed (a plan ten times too big)."""

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class PlanProcessError(Exception):
    """The child reading the plan failed without a result."""


def read_in_child(path: Path, *, timeout: float = TIMEOUT) -> LoadResult:
    """``read_dialplan(path)`` done by a child process; blocks (run it in a thread)."""
    import subprocess  # the server's side only: the child never runs one

    # The child imports the same pbx as we do, whatever its working directory.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pbx.server.plan_process", os.fspath(path)],
            stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=timeout, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PlanProcessError(f"could not run the plan reader: {error}") from error
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise PlanProcessError(f"the plan reader exited with {done.returncode}: {tail[0]}")
    result = _unpickle_frozen(done.stdout)
    if not isinstance(result, LoadResult):
        raise PlanProcessError(f"the plan reader answered {type(result).__name__}")
    return result


def _unpickle_frozen(data: bytes) -> object:
    """Unpickle with the cyclic collector paused, then freeze what it made.

    A plan is a few hundred thousand objects. Made with the collector on,
    they would trigger collections that visit all of them, with the GIL held
    (tens of ms during which the event loop waits), and every young
    collection until they were promoted would visit them again. The plan
    lives until the next reload and is freed by reference counting, so it
    belongs in the permanent generation (as gc_tuning puts start-up's
    objects).
    """
    # Imported here, in the server: the child never needs it, and it brings
    # structlog and asyncio (a tenth of a second of the child's start).
    from pbx.server import gc_tuning

    with gc_tuning.paused():
        result = pickle.loads(data)
        gc.freeze()
    return result


SLICE: Final = 2000
"""Entries of a large mapping unpickled between two chances for the loop."""


def read_only_mapping(items: Mapping[Any, Any]) -> types.MappingProxyType[Any, Any]:
    """Rebuilds a plan's read-only mapping when the result is unpickled."""
    return types.MappingProxyType(dict(items))


def read_only_mapping_of(slices: tuple[dict[Any, Any], ...]) -> types.MappingProxyType[Any, Any]:
    """Rebuilds a large read-only mapping from its slices, in order."""
    merged: dict[Any, Any] = {}
    for part in slices:
        merged.update(part)
    return types.MappingProxyType(merged)


def mapping_slice(items: dict[Any, Any]) -> dict[Any, Any]:
    """One slice as unpickled. Building a dict of 100,000 entries is a single
    stretch of C that keeps the GIL (90 ms for a plan's places here), so
    the event loop waits; calling this Python function between slices lets
    the interpreter hand the GIL over."""
    return items


class _Slice:
    __slots__ = ("items",)

    def __init__(self, items: dict[Any, Any]) -> None:
        self.items = items

    def __reduce__(self) -> tuple[Any, tuple[dict[Any, Any]]]:
        return mapping_slice, (self.items,)


def _reduce_mapping(proxy: types.MappingProxyType[Any, Any]) -> tuple[Any, tuple[Any]]:
    items = dict(proxy)
    if len(items) <= SLICE:
        return read_only_mapping, (items,)
    keys = list(items)
    slices = tuple(_Slice({key: items[key] for key in keys[start:start + SLICE]})
                   for start in range(0, len(keys), SLICE))
    return read_only_mapping_of, (slices,)


def _main(argv: list[str]) -> int:
    # The plan holds read-only views (mappingproxy), which pickle cannot
    # write by itself: they travel as dicts and are wrapped again on arrival.
    copyreg.pickle(types.MappingProxyType, _reduce_mapping)
    gc.disable()  # a short-lived process: collections would only walk the plan (gc_tuning.paused)
    result = read_dialplan(Path(argv[0]))
    sys.stdout.buffer.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    # Run the imported module's copy, so what is pickled names
    # pbx.server.plan_process and not __main__.
    from pbx.server import plan_process

    sys.exit(plan_process._main(sys.argv[1:]))
