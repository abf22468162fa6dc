"""Writing CDRs without waiting on the database, and without losing them.

The call controller reports what happens (`pbx.cdr.records`) to a
`CdrWriter` from the event loop.  Each report becomes one op on the store's
`BackgroundWriter`: an upsert of the call's whole row as known so far, keyed
on ``call_uuid``.  So

* the SIP path only builds a dict and appends to a queue;
* reports may be committed in any grouping (one batch or three) and a write
  run twice leaves one row: no duplicates;
* a later write never erases what an earlier one recorded (COALESCE).

The end of a call is the one report someone waits for: `CdrWriter.ended`
takes `on_durable`, called once the row (and its legs) is committed.  The
controller sends the caller's final response, or the 200 to a BYE, from that
callback, so any call whose end the caller has seen has a CDR that survives
kill -9.  The price is one group commit of latency on that response; while
the database is unreachable the callback waits (the `BackgroundWriter`
retries until it is back).

A call still in progress when the PBX dies keeps an open row (no
``ended_at``); `recover_interrupted` closes those as INTERRUPTED when the node
starts again, before it takes calls.  Their end is the last moment they were
known alive, not the restart: `heartbeat` stamps the node's row in
``cdr_heartbeats`` every few seconds (and `alive` between beats, on in-dialog
requests).  One row's write whatever the number of calls: stamping each
call's own row instead cost 0.6 s a beat for 18,000 calls on PostgreSQL
(bench/cdr_heartbeat.py).  It is enough because ops commit in submission
order: a stamp taken at T is durable only if every report submitted before T
is, so a row opened before a durable stamp T and still open belongs to a
call that was in progress at T.

Thread rule: `CdrWriter`'s methods are for one thread (the event loop); the
ops it submits carry their own copies of the values.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final

import structlog
from sqlalchemy import Connection, Engine, Enum, String, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.expression import Executable

from pbx.cdr.models import CallLeg, CallRecord, NodeHeartbeat
from pbx.cdr.records import (
    CallAnswer,
    CallEnd,
    CallRouted,
    CallStart,
    Disposition,
    HangupSide,
    LegAttempt,
    LegResult,
    whole_seconds,
)
from pbx.store.models import Base, require_aware
from pbx.store.prepared import Prepared, PreparedCache
from pbx.store.writer import BackgroundWriter, Together, WriterClosed

log = structlog.get_logger(__name__)

CDR: Final[Table] = Base.metadata.tables[CallRecord.__tablename__]
CDR_LEGS: Final[Table] = Base.metadata.tables[CallLeg.__tablename__]
HEARTBEATS: Final[Table] = Base.metadata.tables[NodeHeartbeat.__tablename__]

Callback = Callable[[], None]
# loop.call_soon_threadsafe fits (its Handle is ignored).
Notify = Callable[[Callback], object]

# The `reason` written on rows closed by `recover_interrupted`.
INTERRUPTED_REASON: Final = "process ended; end time is the last moment the call was known alive"

# An in-dialog request stamps the node only if its last stamp is older than
# this: a burst of INFO digits costs one write, not one each.
ALIVE_RESOLUTION: Final = timedelta(seconds=1)

_ROUTING_FIELDS: Final = (
    "rule",
    "call_class",
    "account_code",
    "account_owner",
    "account_rights",
    "hunt_group",
    "trunk",
    "short_number",
    "resolved_number",
    "member",
    "ivr_path",
    "transfer",
    "linked_call",
    "destination",
    "billed_to",
    "billed_department",
)


class UnknownCall(LookupError):
    """A report for a call_uuid that `started` never saw (or already ended)."""


def _lengths(table: Table) -> dict[str, int]:
    return {
        column.name: column.type.length
        for column in table.columns
        if isinstance(column.type, String)
        and not isinstance(column.type, Enum)  # enum values always fit
        and column.type.length is not None
    }


def _fit(value: str, length: int) -> str:
    # What a phone sends ends up here (display names, Reason text): a value
    # PostgreSQL would refuse must not cost the whole row.  NUL is not
    # allowed in PostgreSQL text; lone surrogates (undecodable bytes) do not
    # encode as UTF-8.  Most values are short ASCII: checked without copying.
    if len(value) <= length and value.isascii() and "\x00" not in value:
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:length]


def _upserts(dialect: str) -> tuple[Executable, Executable]:
    """The two upsert statements for `dialect`.

    Built without VALUES: each execution's parameters name the columns it
    writes.  A column it leaves out is NULL in ``excluded`` (no defaults on
    these tables), so COALESCE keeps what the row already holds.
    """
    if dialect == "postgresql":
        pg_call, pg_leg = postgresql.insert(CDR), postgresql.insert(CDR_LEGS)
        call: Executable = pg_call.on_conflict_do_update(
            index_elements=["call_uuid"],
            set_={n: func.coalesce(pg_call.excluded[n], CDR.c[n]) for n in _CALL_MERGED},
        )
        leg: Executable = pg_leg.on_conflict_do_update(
            index_elements=list(_LEG_KEY), set_={n: pg_leg.excluded[n] for n in _LEG_REPLACED}
        )
    elif dialect == "sqlite":
        lite_call, lite_leg = sqlite.insert(CDR), sqlite.insert(CDR_LEGS)
        call = lite_call.on_conflict_do_update(
            index_elements=["call_uuid"],
            set_={n: func.coalesce(lite_call.excluded[n], CDR.c[n]) for n in _CALL_MERGED},
        )
        leg = lite_leg.on_conflict_do_update(
            index_elements=list(_LEG_KEY), set_={n: lite_leg.excluded[n] for n in _LEG_REPLACED}
        )
    else:
        raise NotImplementedError(f"upsert not supported on {dialect}")
    return call, leg


def _fitter(length: int) -> Callable[[str], str]:
    def fit(value: str) -> str:
        # `_fit`'s own first test, inline: most values are short ASCII, and
        # this runs for every text value of every row.
        if type(value) is str and (len(value) > length or not value.isascii() or "\x00" in value):
            return _fit(value, length)
        return value

    return fit


def _prepare(dialect: Dialect) -> tuple[Prepared, ...]:
    call, leg = _upserts(dialect.name)
    return (
        Prepared.compile(call, ("call_uuid", *_CALL_MERGED), dialect, _FITS[CDR.name]),
        Prepared.compile(leg, (*_LEG_KEY, *_LEG_REPLACED), dialect, _FITS[CDR_LEGS.name]),
    )


_FITS: Final = {
    table.name: {name: _fitter(length) for name, length in _lengths(table).items()} for table in (CDR, CDR_LEGS)
}
# The upserts run with the driver's executemany (`pbx.store.prepared`).
_PREPARED: Final = PreparedCache(_prepare)
_CALL_MERGED: Final = tuple(c.name for c in CDR.columns if c.name not in ("id", "call_uuid"))
_LEG_KEY: Final = ("call_uuid", "attempt")
_LEG_REPLACED: Final = tuple(c.name for c in CDR_LEGS.columns if c.name not in ("id", *_LEG_KEY))


# One report: the call's row as known so far, and its legs (only at the end).
Report = tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]
_NO_VALUES: Final[dict[str, Any]] = dict.fromkeys(("call_uuid", *_CALL_MERGED))


def upsert_calls(conn: Connection, reports: list[Report]) -> None:
    """Op for many reports at once (`Together`): insert each call's row, or
    merge its values into the one with the same call_uuid (None never
    replaces a value); then upsert the legs on (call_uuid, attempt),
    replacing them.

    Reports of one call are merged first, the same way the database would
    merge them one after the other, so a call started and answered within
    one batch costs one row write.  Then one executemany per table: every
    row names every column (left-out ones as None, which COALESCE turns into
    "keep"), so all share one statement.
    """
    merged: dict[str, dict[str, Any]] = {}
    leg_rows: list[Mapping[str, Any]] = []
    for values, legs in reports:
        key = values["call_uuid"]
        row = merged.get(key)
        if row is None:
            merged[key] = row = dict(_NO_VALUES)
        for name, value in values.items():
            if value is not None:
                row[name] = value
        leg_rows.extend(legs)
    call, leg = _PREPARED.get(conn.dialect)
    call.run(conn, list(merged.values()))
    if leg_rows:
        # Every leg row has every column, so one executemany fits all.
        leg.run(conn, leg_rows)


def upsert_call(
    values: Mapping[str, Any], legs: Sequence[Mapping[str, Any]], conn: Connection
) -> None:
    """Op: `upsert_calls` for one report."""
    upsert_calls(conn, [(values, legs)])


def mark_node_alive(node: str, now: datetime, conn: Connection) -> None:
    """Op: `node` was running at `now`, its calls in progress with it: one
    row's upsert, however many calls.  Never moves the stamp back (stamps may
    run out of order)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(HEARTBEATS).values(node=node, alive_at=now)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["node"],
            set_={"alive_at": statement.excluded.alive_at},
            where=HEARTBEATS.c.alive_at < statement.excluded.alive_at,
        )
    )


@dataclass(slots=True)
class _OpenCall:
    """A call in progress: its start as reported and the columns reported
    since, from which each write's whole row is made (ten thousand calls
    up need not hold ten thousand rows)."""

    start: CallStart
    changed: dict[str, Any]
    uuid_text: str
    """``str(start.call_uuid)``, made once for the call's writes."""
    answered_at: datetime | None = None
    clock_warned: bool = False


def _note_routing(call: _OpenCall, routing: CallRouted) -> None:
    for name in _ROUTING_FIELDS:
        value = getattr(routing, name)
        if value is not None:
            call.changed[name] = value


class CdrWriter:
    """Turns a call controller's reports into CDR rows; see the module docstring.

    `node` names this PBX in every row (crash recovery closes only its own
    rows).  `notify` runs `on_durable` callbacks where the caller wants them:
    they are handed over in the database writer thread, so pass
    ``loop.call_soon_threadsafe`` to get them on the event loop.
    """

    def __init__(self, writer: BackgroundWriter, node: str, notify: Notify) -> None:
        if not node:
            raise ValueError("node must not be empty")
        self._writer = writer
        self._node = node
        self._notify = notify
        self._calls: dict[uuid.UUID, _OpenCall] = {}
        self._alive_at: datetime | None = None

    @property
    def open_calls(self) -> int:
        """Calls started and not yet ended."""
        return len(self._calls)

    def heartbeat(self, now: datetime) -> None:
        """Record that this node is running at `now` with its calls in
        progress: one row's write, however many calls.  The edge calls it
        every few seconds; a crash then ends each open call's row at most
        that long before the call really stopped."""
        require_aware("now", now)
        if not self._calls:
            return  # nothing a crash could leave open
        self._alive_at = now
        try:
            self._writer.submit(partial(mark_node_alive, self._node, now))
        except WriterClosed:
            pass  # shutting down: the calls' ends follow, or recovery does

    def alive(self, at: datetime) -> None:
        """A sign of life at `at` between heartbeats (an in-dialog request):
        a heartbeat, unless the last one is less than `ALIVE_RESOLUTION` old."""
        require_aware("at", at)
        if self._alive_at is None or at - self._alive_at >= ALIVE_RESOLUTION:
            self.heartbeat(at)

    def started(self, start: CallStart, routing: CallRouted | None = None) -> None:
        """Record a new call (an open row, so a crash leaves a trace), with
        what routing decided if that is known already: one write for both,
        as `routed` right after would have made."""
        if start.call_uuid in self._calls:
            raise ValueError(f"call {start.call_uuid} was already started")
        if routing is not None and routing.call_uuid != start.call_uuid:
            raise ValueError(f"routing of call {routing.call_uuid} given with the start of {start.call_uuid}")
        call = self._calls[start.call_uuid] = _OpenCall(start=start, changed={}, uuid_text=str(start.call_uuid))
        if routing is not None:
            _note_routing(call, routing)
        self._submit(start.call_uuid, self._row(call), [], None)

    def routed(self, routing: CallRouted) -> None:
        """Record what routing decided; None fields keep earlier values."""
        call = self._open(routing.call_uuid)
        _note_routing(call, routing)
        self._submit(routing.call_uuid, self._row(call), [], None)

    def answered(self, answer: CallAnswer) -> None:
        """Record that the caller was sent a 2xx."""
        call = self._open(answer.call_uuid)
        answered_at = self._not_before(call, answer.answered_at, call.start.started_at)
        call.answered_at = answered_at
        changed = call.changed
        changed["answered_at"] = answered_at
        changed["destination"] = answer.destination
        if answer.answered_by is not None:
            changed["answered_by"] = answer.answered_by
        if answer.recording is not None:
            changed["recording"] = answer.recording
        self._submit(answer.call_uuid, self._row(call), [], None)

    def ended(
        self,
        end: CallEnd,
        legs: Sequence[LegAttempt] = (),
        on_durable: Callback | None = None,
    ) -> None:
        """Close the call's row and record its `legs` (in the order they were
        tried), then call `on_durable` through `notify` once all of it is
        committed.

        `on_durable` is called even if the write is lost (the writer is
        closed, or the database refused the row, both logged as errors), so
        a call waiting on it never hangs.  Raises `UnknownCall` or, for an
        ANSWERED end of a call never answered, ValueError: bugs in the
        caller, found before anything is queued.
        """
        call = self._open(end.call_uuid)
        if end.disposition is Disposition.ANSWERED and call.answered_at is None:
            raise ValueError(f"call {end.call_uuid} ended ANSWERED but was never answered")
        del self._calls[end.call_uuid]
        started_at = call.start.started_at
        ended_at = self._not_before(call, end.ended_at, call.answered_at or started_at)
        row = self._row(call)
        row["ended_at"] = ended_at
        row["duration"] = whole_seconds(ended_at - started_at)
        row["billsec"] = 0 if call.answered_at is None else whole_seconds(ended_at - call.answered_at)
        row["disposition"] = end.disposition
        row["hangup_side"] = end.hangup_side
        row["hangup_status"] = end.hangup_status
        row["reason"] = end.reason
        row["cost"] = end.cost
        row["cost_minor"] = end.cost_minor
        row["currency"] = end.currency
        row["tariff"] = end.tariff
        if end.recording is not None:
            row["recording"] = end.recording
        if end.destination is not None and row.get("destination") is None:
            row["destination"] = end.destination
        leg_rows = [_leg_row(call.uuid_text, n, leg) for n, leg in enumerate(legs, start=1)]
        self._submit(end.call_uuid, row, leg_rows, on_durable)

    # -- internals -------------------------------------------------------------

    def _row(self, call: _OpenCall) -> dict[str, Any]:
        """The call's whole row as known so far: a new dict, the op's own."""
        start = call.start
        row: dict[str, Any] = {
            "call_uuid": call.uuid_text,
            "node": self._node,
            "call_id": start.call_id,
            "started_at": start.started_at,
            "caller_number": start.caller_number,
            "caller_name": start.caller_name,
            "caller_department": start.caller_department,
            "project": start.project,
            "dialed_number": start.dialed_number,
        }
        row.update(call.changed)
        return row

    def _open(self, call_uuid: uuid.UUID) -> _OpenCall:
        try:
            return self._calls[call_uuid]
        except KeyError:
            raise UnknownCall(f"no call {call_uuid} in progress") from None

    def _not_before(self, call: _OpenCall, value: datetime, floor: datetime) -> datetime:
        # The wall clock can step back (NTP) during a call; a row breaking
        # "ended_at >= started_at" would be refused by the database and lost.
        if value >= floor:
            return value
        if not call.clock_warned:
            call.clock_warned = True
            log.warning("cdr_clock_went_back", call_uuid=str(call.start.call_uuid))
        return floor

    def _submit(
        self,
        call_uuid: uuid.UUID,
        row: dict[str, Any],
        legs: list[dict[str, Any]],
        on_durable: Callback | None,
    ) -> None:
        """Queue the upsert of ``row``, which the op then owns."""
        op = Together(upsert_calls, (row, legs))
        on_commit = None if on_durable is None else partial(self._notify, on_durable)
        try:
            self._writer.submit(op, on_commit)
        except WriterClosed:
            log.error("cdr_lost", call_uuid=str(call_uuid), reason="writer_closed")
            if on_durable is not None:
                self._notify(on_durable)


def _leg_row(call_uuid: str, attempt: int, leg: LegAttempt) -> dict[str, Any]:
    ended_at = max(leg.ended_at, leg.started_at)
    answered_at = leg.answered_at
    if answered_at is not None:
        answered_at = min(max(answered_at, leg.started_at), ended_at)
    return {
        "call_uuid": call_uuid,
        "attempt": attempt,
        "target": leg.target,
        "contact": leg.contact,
        "call_id": leg.call_id,
        "started_at": leg.started_at,
        "answered_at": answered_at,
        "ended_at": ended_at,
        "result": LegResult(leg.result),
        "status": leg.status,
        "reason": leg.reason,
    }


def recover_interrupted(engine: Engine, node: str, now: datetime) -> int:
    """Close the rows `node` left open (calls in progress when it died) as
    INTERRUPTED by the pbx; returns how many.

    Run it at start-up before the node takes calls: a call started after it
    would be closed too.  Running it again changes nothing.  Each ends at the
    last moment it was known alive: the node's last heartbeat, or its answer
    or start if later (never after `now`, the restart).  That is a lower
    bound, off by at most the heartbeat interval; the restart time would be
    an upper bound off by however long the node was down.
    """
    require_aware("now", now)
    if not node:
        raise ValueError("node must not be empty")
    open_rows = select(CDR.c.id, CDR.c.call_uuid, CDR.c.started_at, CDR.c.answered_at).where(
        CDR.c.node == node, CDR.c.ended_at.is_(None)
    )
    closed = 0
    with engine.begin() as conn:
        alive: datetime | None = conn.execute(
            select(HEARTBEATS.c.alive_at).where(HEARTBEATS.c.node == node)
        ).scalar()
        if conn.dialect.name == "postgresql":
            open_rows = open_rows.with_for_update()
        for row in conn.execute(open_rows).all():
            answered_at: datetime | None = row.answered_at
            floor: datetime = answered_at or row.started_at
            ended_at = max(floor, min(alive, now)) if alive is not None else floor
            billsec = 0 if answered_at is None else whole_seconds(ended_at - answered_at)
            result = conn.execute(
                update(CDR)
                .where(CDR.c.id == row.id, CDR.c.ended_at.is_(None))
                .values(
                    ended_at=ended_at,
                    duration=whole_seconds(ended_at - row.started_at),
                    billsec=billsec,
                    disposition=Disposition.INTERRUPTED,
                    hangup_side=HangupSide.PBX,
                    reason=INTERRUPTED_REASON,
                )
            )
            closed += result.rowcount
            log.warning("cdr_interrupted", call_uuid=row.call_uuid, node=node)
    return closed


def dead_nodes(engine: Engine, me: str, now: datetime, stale: timedelta) -> list[str]:
    """The other nodes sharing the store that died with calls in progress:
    they hold a row open since before ``now - stale`` and have not stamped
    their heartbeat since then. A live node with a call in progress stamps
    every few seconds, so with ``stale`` many beats long only a dead (or cut
    off) node looks like this; a node idle for hours that has just taken a
    call has no row that old."""
    require_aware("now", now)
    cutoff = now - stale
    open_nodes = select(CDR.c.node).where(
        CDR.c.ended_at.is_(None), CDR.c.node != me, CDR.c.started_at < cutoff).distinct()
    with engine.connect() as conn:
        candidates = [row.node for row in conn.execute(open_nodes)]
        if not candidates:
            return []
        alive = {row.node: row.alive_at for row in conn.execute(
            select(HEARTBEATS.c.node, HEARTBEATS.c.alive_at).where(HEARTBEATS.c.node.in_(candidates)))}
    return sorted(node for node in candidates if alive.get(node) is None or alive[node] < cutoff)


__all__ = [
    "CDR",
    "CDR_LEGS",
    "HEARTBEATS",
    "INTERRUPTED_REASON",
    "CdrWriter",
    "UnknownCall",
    "dead_nodes",
    "mark_node_alive",
    "recover_interrupted",
    "upsert_call",
    "upsert_calls",
    "whole_seconds",
]
