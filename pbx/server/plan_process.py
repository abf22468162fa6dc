"""Reading a dialplan in a child process, so a reload never holds the loop.

Reading a large plan is most of a second of Python work (YAML to data with
every place, schema validation, the model's checks and build): for 20,000
extensions 0.54-0.56 s of CPU in a fork of the reader child here, where a
child started for each reload took 0.79 s before this reader and the line
reader of plain YAML (``python -m pbx.server.plan_process plan.yaml``, 5
paired runs; 1.1 s on a busier machine, 3.0 s before the compiled schema
check, 16 s before libyaml). In a thread of the server it would hold the
GIL the event loop needs, and every call would wait for it. A child
process does the work on its own interpreter and sends the result back
pickled; unpickling the plan (about 0.06 s for 20,000 extensions) happens
on the reloader's thread, in small steps the loop can interleave with.

The child is this module run with ``python -m``: no ``multiprocessing``, so
nothing of the server (its ``__main__``, its sockets, its threads) is
copied or imported into it. A server keeps one (:class:`PlanReader`),
which imports the loader once and forks a reader per reload; ``python -m
pbx.server.plan_process PLAN`` reads one plan and writes it pickled to
stdout. The answer is trusted: it is our own code, read from our own pipe.

Bad input is not an exception: the child's ``read_dialplan`` reports every
problem in the result. Only a reader that dies (killed, out of memory, out
of time, a bug) raises :class:`PlanProcessError`; the reloader keeps the
running plan.
"""

from __future__ import annotations

import copyreg
import gc
import math
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import types
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Final

from pbx.routing.loader import LoadResult, prepare, read_dialplan

TIMEOUT: Final = 600.0
"""Seconds a child may take before it is killed (a plan ten times too big)."""

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class PlanProcessError(Exception):
    """The child reading the plan failed without a result."""


_REQUEST: Final = struct.Struct(">I")
"""A request to the reader: the length of the plan's path, then the path."""
_ANSWER: Final = struct.Struct(">iQ")
"""An answer: the fork's exit code and the length of what follows (the
pickled result, or what went wrong)."""


class PlanReader:
    """A child that has imported the loader once and forks a reader per plan.

    Starting Python and importing the loader was about 0.1 s of CPU of each
    reload (of 0.8 s for 20,000 extensions); forking a process that has done
    it costs a few milliseconds. The child is started with ``python -m``,
    never forked from the server, which holds threads and sockets: only the
    child forks, with one thread, no socket and nothing of the server. For
    each request (a plan's path on its stdin) it forks; the fork reads the
    plan, pickles the result and exits, and the child relays the bytes and
    the fork's exit code. A fork that crashes, is killed or runs out of time
    takes only that read with it.

    The child ends when its stdin closes: :meth:`close`, or the server's
    exit, however it comes. Thread-safe; reads run one at a time.
    """

    def __init__(self, *, timeout: float = TIMEOUT) -> None:
        self._timeout = max(1, math.ceil(timeout))
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PlanReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The child's process id; None before it is started."""
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the child now (it imports the loader while the caller goes on)."""
        with self._lock:
            self._running()

    def read(self, path: Path) -> LoadResult:
        """``read_dialplan(path)`` in a fork of the child; blocks (run it in a thread)."""
        with self._lock:
            try:
                answer = self._ask(path)
            except _ChildGone:
                # Killed since the last read (out of memory, by hand): once
                # more with a new child, which reports its own failure.
                answer = self._ask(path)
        code, payload = answer
        if code != 0:
            raise PlanProcessError(f"the plan reader exited with {code}: {payload.decode('utf-8', 'replace')}")
        result = _unpickle_frozen(payload)
        if not isinstance(result, LoadResult):
            raise PlanProcessError(f"the plan reader answered {type(result).__name__}")
        return result

    def close(self) -> None:
        """End the child (it exits when its stdin closes)."""
        with self._lock:
            self._stop()

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        # The child imports the same pbx as we do, whatever its working directory.
        path = os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pbx.server.plan_process", "--serve", str(self._timeout)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path},
            )
        except OSError as error:
            raise PlanProcessError(f"could not run the plan reader: {error}") from error
        return self._process

    def _ask(self, path: Path) -> tuple[int, bytes]:
        process = self._running()
        assert process.stdin is not None and process.stdout is not None
        request = os.fsencode(path)
        try:
            process.stdin.write(_REQUEST.pack(len(request)) + request)
            process.stdin.flush()
            code, size = _ANSWER.unpack(_read_exactly(process.stdout, _ANSWER.size))
            return code, _read_exactly(process.stdout, size)
        except (OSError, EOFError) as error:
            self._stop()
            raise _ChildGone(str(error)) from error

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a fork still reading: the child waits for it
            process.kill()
            process.wait()


class _ChildGone(PlanProcessError):
    """The child itself died (not a fork of it)."""


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the plan reader ended before its answer")
    return data


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
        gc_tuning.freeze_new()
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


def _result_bytes(path: Path) -> bytes:
    """The pickled ``read_dialplan(path)``."""
    return pickle.dumps(read_dialplan(path), protocol=pickle.HIGHEST_PROTOCOL)


def _serve(timeout: int) -> int:
    """The child of a :class:`PlanReader`: a fork per request, until stdin closes."""
    # ^C in a terminal reaches the whole process group: it is the server's
    # to handle, and the server's exit closes our stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prepare()
    gc.freeze()  # what the forks share stays shared: no collection will touch it
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while len(header := requests.read(_REQUEST.size)) == _REQUEST.size:
        (size,) = _REQUEST.unpack(header)
        if len(path := requests.read(size)) != size:
            break  # the server went away mid-request
        code, payload = _fork_reader(Path(os.fsdecode(path)), timeout)
        try:
            answers.write(_ANSWER.pack(code, len(payload)))
            answers.write(payload)
            answers.flush()
        except BrokenPipeError:  # the server went away while its plan was read
            os._exit(0)  # no flushing at exit into the broken pipe either
    return 0


def _fork_reader(path: Path, timeout: int) -> tuple[int, bytes]:
    """The fork's exit code and what it wrote: the pickled result, or what went wrong."""
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # the fork: one thread (the child has no other), no sockets
        os.close(readable)
        code = 1
        try:
            signal.alarm(timeout)  # SIGALRM ends it: a plan ten times too big, a FIFO for a file
            data = _result_bytes(path)
            code = 0
        except BaseException as error:  # reported to the server, which keeps its plan
            data = f"{type(error).__name__}: {error}".encode()
        try:
            with open(writable, "wb") as out:
                out.write(data)
        finally:
            os._exit(code)  # no exit handlers, no flushing of the child's streams
    os.close(writable)
    with open(readable, "rb") as stream:
        payload = stream.read()
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code == -signal.SIGALRM:
        payload = f"took more than {timeout} s".encode()
    elif code < 0:
        payload = f"killed by signal {-code}".encode()
    return code, payload


def _main(argv: list[str]) -> int:
    # The plan holds read-only views (mappingproxy), which pickle cannot
    # write by itself: they travel as dicts and are wrapped again on arrival.
    copyreg.pickle(types.MappingProxyType, _reduce_mapping)
    gc.disable()  # a short-lived process: collections would only walk the plan (gc_tuning.paused)
    if argv[:1] == ["--serve"]:
        return _serve(int(argv[1]))
    sys.stdout.buffer.write(_result_bytes(Path(argv[0])))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    # Run the imported module's copy, so what is pickled names
    # pbx.server.plan_process and not __main__.
    from pbx.server import plan_process

    sys.exit(plan_process._main(sys.argv[1:]))
