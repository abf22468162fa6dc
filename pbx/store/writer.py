"""The one thread that writes to the database.

The asyncio SIP path must never wait on SQL, so it hands each write to
`BackgroundWriter.submit` as an *op*: a callable taking a `Connection` and
running its statements on it, without committing.  `submit` appends to an
unbounded queue and returns at once.

The thread takes everything queued (up to `max_batch`) and runs it in ONE
transaction: group commit, so a burst of a thousand re-registrations costs
one commit (one WAL append on SQLite, one round of fsync on PostgreSQL)
instead of a thousand.  Ops run in submission order.

When a batch fails:

1. If the database cannot even answer ``SELECT 1`` it is down: nothing is
   blamed on the ops, the batch is retried with capped exponential back-off
   until the database is back (or `close` gives up on it).
2. Otherwise the batch is retried `retries` times with back-off (a deadlock
   or a lock timeout may go away), then each op is run in its own transaction,
   each with the same retries, so one bad op costs only itself.  An op that
   still fails is dropped and logged as ``db_op_failed``.

An op may come with an `on_commit` callback, called by the writer thread
once the transaction holding the op has committed: from then on its writes
survive the process being killed.  If the op is dropped instead, the callback
is still called (after an error log, ``db_op_dropped``) so whoever waits on
it is never stuck; the write is lost and the log says so.  Callbacks run
before `flush` returns for their ops, must be quick and must not block: the
usual one is ``loop.call_soon_threadsafe``.

An op may instead be a `Together`: one item of work plus the function that
writes many such items at once.  Within one transaction the writer hands all
the queued items of the same function to it in one call (in submission
order), at the place of the first of them: so a burst of CDR upserts costs
one statement execution, not one per call.  Such a function must only touch
tables no other op writes, since it runs out of submission order relative to
them.  Run alone (a failed batch is split op by op), a `Together` gets a list
of its single item, so the same code path takes both.

Logs carry the op's name and the exception's type, never its message or
SQL parameters: those may hold user data or secrets.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import structlog
from sqlalchemy import Connection, Engine, text

log = structlog.get_logger(__name__)

# The return value, if any, is ignored (so `store.delete` etc. work as ops).
Op: TypeAlias = Callable[[Connection], object]
# Called without arguments, in the writer thread, once an op is finished;
# any return value is ignored.
OnCommit: TypeAlias = Callable[[], object]

# Writes every item of a list, in order, on a connection, without committing.
RunMany: TypeAlias = Callable[[Connection, list[Any]], object]


@dataclass(frozen=True, slots=True)
class Together:
    """An op that may share one call of `run_many` with the other items queued
    for the same function in the same transaction (see the module docstring)."""

    run_many: RunMany
    item: Any

    def __call__(self, conn: Connection) -> object:
        return self.run_many(conn, [self.item])


# Queue depth at which a warning is logged (once per excursion): the
# database is not keeping up, and memory grows with the queue.
QUEUE_WARNING_DEPTH: Final = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterStats:
    """Counters since the writer started, for metrics."""

    submitted: int      # ops handed to submit()
    committed: int      # ops whose transaction committed
    failed: int         # ops dropped after their retries (logged db_op_failed)
    batches: int        # transactions committed
    queued: int         # ops waiting now
    max_queued: int     # highest queue depth seen


class WriterClosed(RuntimeError):
    """`submit` was called after `close`."""


def _op_name(op: Op) -> str:
    named: object = op.run_many if isinstance(op, Together) else op
    while isinstance(named, functools.partial):
        named = named.func
    return getattr(named, "__qualname__", type(named).__name__)


def _grouped(ops: list[Op]) -> list[Op]:
    """`ops` in order, each `Together` function's items joined into one op at
    the place of its first item."""
    if len(ops) < 2:
        return ops
    steps: list[Op] = []
    joined: dict[RunMany, list[Any]] = {}
    for op in ops:
        if not isinstance(op, Together):
            steps.append(op)
            continue
        items = joined.get(op.run_many)
        if items is None:
            joined[op.run_many] = items = []
            steps.append(_RunAll(op.run_many, items))
        items.append(op.item)  # the list is complete before any step runs
    return steps


@dataclass(frozen=True, slots=True)
class _RunAll:
    run_many: RunMany
    items: list[Any]

    def __call__(self, conn: Connection) -> object:
        return self.run_many(conn, self.items)


class BackgroundWriter:
    """Runs submitted ops on `engine` in a daemon thread, batched per transaction.

    `retries` is how many times a failing batch (then each op alone) is tried;
    `backoff` the first pause in seconds, doubled each time up to
    `max_backoff`.  `max_batch` bounds one transaction.  `gather`: seconds
    to wait, once woken for work, for more ops to join the same transaction;
    under call load this trades that much latency for fewer commits and less
    time holding the GIL the event loop wants.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        retries: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 5.0,
        max_batch: int = 5000,
        gather: float = 0.0,
        name: str = "pbx-db-writer",
    ) -> None:
        if retries < 1:
            raise ValueError("retries must be at least 1")
        if backoff < 0 or max_backoff < backoff:
            raise ValueError("need 0 <= backoff <= max_backoff")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if gather < 0:
            raise ValueError("gather must not be negative")
        self._gather = gather
        self._engine = engine
        # On SQLite the thread keeps its one connection from batch to batch
        # (a file cannot drop it), saving the pool's check-out and the
        # rollback of each check-in; elsewhere each batch checks one out, so
        # the pool's pre-ping replaces one the server dropped.
        self._keep_connection = engine.dialect.name == "sqlite"
        self._kept: Connection | None = None
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_batch = max_batch

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)      # the thread waits for work
        self._progress = threading.Condition(self._lock)  # flush() waits for the thread
        self._queue: deque[tuple[int, Op, OnCommit | None]] = deque()
        self._closing = False
        self._abandon = threading.Event()  # close() timed out: stop retrying
        self._submitted = 0   # sequence number of the last op submitted
        self._done = 0        # every op up to this sequence number is finished
        self._committed = 0
        self._failed = 0
        self._batches = 0
        self._max_queued = 0
        self._warned_depth = False

        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- caller side (any thread, including the event loop) ------------------

    def submit(self, op: Op, on_commit: OnCommit | None = None) -> None:
        """Queue `op`; never blocks on the database.  Raises `WriterClosed`
        after `close`.

        `on_commit`, if given, is called from the writer thread after the
        transaction containing `op` committed, or after `op` was dropped
        (logged as ``db_op_dropped``); see the module docstring.
        """
        with self._lock:
            if self._closing:
                raise WriterClosed("the database writer is closed")
            self._submitted += 1
            self._queue.append((self._submitted, op, on_commit))
            depth = len(self._queue)
            self._max_queued = max(self._max_queued, depth)
            warn = depth >= QUEUE_WARNING_DEPTH and not self._warned_depth
            if warn:
                self._warned_depth = True
            self._wake.notify()
        if warn:
            log.warning("db_writer_queue_deep", queued=depth)

    def flush(self, timeout: float) -> bool:
        """Wait until every op submitted before this call is finished
        (committed, or dropped as `db_op_failed`).  False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._submitted
            while self._done < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._progress.wait(remaining)
            return True

    def close(self, timeout: float) -> bool:
        """Refuse new ops, finish the queued ones and stop the thread.

        Returns True if everything was written within `timeout`.  Otherwise
        the thread is told to give up (the unwritten ops are logged as
        ``db_writer_abandoned``) and False is returned.
        """
        with self._lock:
            self._closing = True
            self._wake.notify()
        flushed = self.flush(timeout)
        if not flushed:
            self._abandon.set()
        self._thread.join(timeout if flushed else max(timeout, 1.0))
        return flushed and not self._thread.is_alive()

    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(
                submitted=self._submitted,
                committed=self._committed,
                failed=self._failed,
                batches=self._batches,
                queued=len(self._queue),
                max_queued=self._max_queued,
            )

    # -- writer thread --------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._wake.wait()
                gather = self._gather > 0 and not self._closing and len(self._queue) < self._max_batch
            if gather:
                time.sleep(self._gather)  # let the ops of a busy moment share one transaction
            with self._lock:
                if not self._queue:
                    self._let_go()
                    return  # closing and drained
                count = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft() for _ in range(count)]
                if len(self._queue) < QUEUE_WARNING_DEPTH // 2:
                    self._warned_depth = False
            ops = [op for _, op, _ in batch]
            try:
                outcomes = self._write(ops)
            except Exception:  # our bug; never let the thread die with ops queued
                log.exception("db_writer_error", size=len(batch))
                outcomes = [False] * len(batch)
            committed = sum(outcomes)
            # Callbacks before `_done` moves, so flush() also waits for them.
            self._call_backs(batch, outcomes)
            with self._lock:
                self._committed += committed
                self._failed += len(batch) - committed
                self._done = batch[-1][0]
                self._progress.notify_all()
            # Not kept while waiting for the next batch: the ops' rows and
            # callbacks (with the calls they close over) are done with.
            del batch, ops, outcomes

    def _call_backs(self, batch: list[tuple[int, Op, OnCommit | None]], outcomes: list[bool]) -> None:
        for (_, op, on_commit), ok in zip(batch, outcomes, strict=True):
            if on_commit is not None:
                self._call_back(op, on_commit, ok)

    def _call_back(self, op: Op, on_commit: OnCommit, committed: bool) -> None:
        if not committed:
            # Whoever waits on this op is released, but its write is lost.
            log.error("db_op_dropped", op=_op_name(op))
        try:
            on_commit()
        except Exception:  # the callback's bug must not stop the writer
            log.exception("db_on_commit_error", op=_op_name(op))

    def _write(self, ops: list[Op]) -> list[bool]:
        """Commit `ops`; returns, per op, whether it committed (else dropped)."""
        if self._abandon.is_set():
            return self._give_up(ops)
        if self._commit_with_retries(ops):
            return [True] * len(ops)
        if self._abandon.is_set():
            return self._give_up(ops)
        if len(ops) > 1:
            log.warning("db_batch_split", size=len(ops))
        outcomes: list[bool] = []
        for position, op in enumerate(ops):
            ok = not self._abandon.is_set() and self._commit_with_retries([op])
            if not ok and self._abandon.is_set():
                # close() gave up: this op and the rest are counted as abandoned.
                return outcomes + self._give_up(ops[position:])
            outcomes.append(ok)
            if not ok:
                log.error("db_op_failed", op=_op_name(op))
        return outcomes

    def _commit_with_retries(self, ops: list[Op]) -> bool:
        """Try `ops` in one transaction up to `retries` times (without limit
        while the database is unreachable, until abandoned)."""
        attempts = 0
        pause = self._backoff
        while True:
            error = self._commit(ops)
            if error is None:
                return True
            reachable = self._reachable()
            if reachable:
                attempts += 1
            log.warning(
                "db_batch_failed" if reachable else "db_unreachable",
                size=len(ops),
                attempt=attempts,
                error=type(error).__name__,
                op=_op_name(ops[0]) if len(ops) == 1 else None,
            )
            if attempts >= self._retries or self._abandon.is_set():
                return False
            if self._abandon.wait(pause):
                return False
            pause = min(max(pause * 2, self._backoff), self._max_backoff)

    def _commit(self, ops: list[Op]) -> Exception | None:
        conn = self._kept
        try:
            if conn is None:
                conn = self._engine.connect()
            with conn.begin():
                for step in _grouped(ops):
                    step(conn)
        except Exception as error:  # any op may raise anything; it is reported
            self._kept = None
            if conn is not None:
                _discard(conn)  # the next try starts on a fresh connection
            return error
        if self._keep_connection:
            self._kept = conn
        else:
            conn.close()
        with self._lock:
            self._batches += 1
        return None

    def _let_go(self) -> None:
        """Return the kept connection to the pool (rolled back), if any."""
        conn, self._kept = self._kept, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection: the pool discards it
                pass

    def _reachable(self) -> bool:
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def _give_up(self, ops: list[Op]) -> list[bool]:
        log.error("db_writer_abandoned", dropped=len(ops))
        return [False] * len(ops)


def _discard(conn: Connection) -> None:
    """Close `conn` for good rather than hand it back to the pool. After a
    failure the connection itself may be what is wrong: a SQLite file
    replaced or removed under it (it keeps the old one open), a PostgreSQL
    session the server ended or left in a bad state. Returned to the pool it
    would be checked out again by the very next retry and fail the same way,
    retry after retry."""
    try:
        conn.invalidate()
        conn.close()
    except Exception:  # already broken: nothing more to release
        pass
