"""Reports on the CDRs: who spent what (``pbx report --by …``) and when
people call (``pbx report traffic``).

Everything is counted by the database, in one aggregate query each, on
SQLite and PostgreSQL alike: a month's report reads only that month's rows
through the ``started_at`` index, and what comes back is one row per group
(or per hour, per second of wait), never the calls themselves. Money is
summed as integers of the minor unit (``cost_minor``).

A call belongs to the period it *started* in, as for budgets; a call still
in progress counts as a call, with no minutes or cost yet.

The traffic report groups by hour in UTC in SQL and turns each hour into
local time here, so any IANA zone works on both databases (zones whose
offset is not a whole number of hours put a call in the local hour its UTC
hour starts in).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Final, Literal, get_args

from sqlalchemy import ColumnElement, Engine, Integer, case, cast, func, literal_column, or_, select

from pbx.cdr.writer import CDR
from pbx.routing.budgets import Period

ReportBy = Literal["department", "extension", "code", "class", "trunk", "project"]
REPORT_BY: Final[tuple[str, ...]] = get_args(ReportBy)
_GROUP_COLUMN: Final = {
    "department": "caller_department", "extension": "caller_number", "code": "account_code",
    "class": "call_class", "trunk": "trunk", "project": "project",
}
WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Calls, answered calls, billed seconds and cost of one group (or all)."""

    key: str | None
    calls: int
    answered: int
    billsec: int
    cost: int
    """Minor units."""

    @property
    def minutes(self) -> float:
        return self.billsec / 60


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageReport:
    by: ReportBy
    period: Period
    rows: tuple[Usage, ...]
    total: Usage
    currencies: tuple[str, ...]
    """Currencies the period's costs are in (one, normally)."""


def payer_number() -> ColumnElement[Any]:
    """Who pays for a row: ``billed_to`` (the extension whose forward or
    transfer took the call out) if set, else the caller."""
    return func.coalesce(CDR.c.billed_to, CDR.c.caller_number)


def payer_department() -> ColumnElement[Any]:
    return func.coalesce(CDR.c.billed_department, CDR.c.caller_department)


def _group_column(by: ReportBy) -> ColumnElement[Any]:
    if by == "extension":
        return payer_number()
    if by == "department":
        return payer_department()
    return CDR.c[_GROUP_COLUMN[by]]


def _filters(period: Period, extension: str | None, numbers: Collection[str] | None = None,
             departments: Collection[str] | None = None) -> list[ColumnElement[bool]]:
    where = [CDR.c.started_at >= period.start, CDR.c.started_at < period.end]
    if extension is not None:
        where.append(payer_number() == extension)
    if numbers is not None or departments is not None:
        # A reader's scope: costs belong to whoever pays for the call (its
        # caller, or the extension that forwarded or transferred it out),
        # so the calls these numbers or departments pay for (empty: none).
        where.append(or_(payer_number().in_(list(numbers or ())),
                         payer_department().in_(list(departments or ()))))
    return where


def _measures() -> list[Any]:
    return [
        func.count().label("calls"),
        func.coalesce(func.sum(case((CDR.c.disposition == "ANSWERED", 1), else_=0)), 0).label("answered"),
        func.coalesce(func.sum(CDR.c.billsec), 0).label("billsec"),
        func.coalesce(func.sum(CDR.c.cost_minor), 0).label("cost"),
    ]


def _usage(key: str | None, row: Any) -> Usage:
    return Usage(key=key, calls=int(row.calls), answered=int(row.answered), billsec=int(row.billsec),
                 cost=int(row.cost))


def usage_report(engine: Engine, by: ReportBy, period: Period, *, extension: str | None = None,
                 numbers: Collection[str] | None = None, departments: Collection[str] | None = None) -> UsageReport:
    """Calls started in ``period`` grouped ``by`` a column, costliest first,
    and the total over all of them (``extension``: only its calls;
    ``numbers``/``departments``: only calls placed from them)."""
    if by not in _GROUP_COLUMN:
        raise ValueError(f"cannot report by {by!r}: one of {', '.join(REPORT_BY)}")
    column = _group_column(by)
    where = _filters(period, extension, numbers, departments)
    grouped = (select(column.label("key"), *_measures()).where(*where).group_by(column)
               .order_by(literal_column("cost").desc(), column))
    total = select(*_measures()).where(*where)
    currencies = select(CDR.c.currency).where(*where, CDR.c.currency.is_not(None)).distinct()
    with engine.connect() as conn:
        rows = tuple(_usage(None if row.key is None else str(row.key), row) for row in conn.execute(grouped))
        whole = _usage(None, conn.execute(total).one())
        found = tuple(sorted(str(c) for c in conn.execute(currencies).scalars()))
    return UsageReport(by=by, period=period, rows=rows, total=whole, currencies=found)


# ---------------------------------------------------------------- traffic


@dataclass(slots=True, kw_only=True)
class Traffic:
    """When calls come, how many are answered, how long callers wait."""

    period: Period
    zone: str
    by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    """Calls started in each local hour of the day, 0 to 23."""
    answered_by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    by_weekday: list[int] = field(default_factory=lambda: [0] * 7)
    """Calls per local weekday, Monday first."""
    calls: int = 0
    answered: int = 0
    wait_seconds: dict[int, int] = field(default_factory=dict)
    """Whole seconds from start to answer -> answered calls that waited that long."""
    busiest: tuple[datetime, int] | None = None
    """The single local clock hour with the most calls, and how many."""

    @property
    def answer_rate(self) -> float | None:
        return self.answered / self.calls if self.calls else None

    @property
    def average_wait(self) -> float | None:
        count = sum(self.wait_seconds.values())
        return sum(s * n for s, n in self.wait_seconds.items()) / count if count else None

    def wait_percentile(self, share: float) -> int | None:
        """The wait that ``share`` (0.9: p90) of answered calls did not exceed
        (nearest rank)."""
        count = sum(self.wait_seconds.values())
        if not count:
            return None
        rank, seen = max(1, math.ceil(share * count)), 0
        for seconds in sorted(self.wait_seconds):
            seen += self.wait_seconds[seconds]
            if seen >= rank:
                return seconds
        return max(self.wait_seconds)  # pragma: no cover - the loop always reaches rank

    @property
    def busiest_hour_of_day(self) -> int | None:
        return max(range(24), key=lambda hour: self.by_hour[hour]) if self.calls else None


def _hour_bucket(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.date_trunc("hour", func.timezone("UTC", CDR.c.started_at))
    return func.strftime("%Y-%m-%d %H:00:00", CDR.c.started_at)


def _wait(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        seconds: ColumnElement[Any] = func.extract("epoch", CDR.c.answered_at - CDR.c.started_at)
    else:
        seconds = (func.julianday(CDR.c.answered_at) - func.julianday(CDR.c.started_at)) * 86400
    return cast(func.round(seconds), Integer)


def _utc_hour(value: object) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def traffic_report(engine: Engine, period: Period, zone: tzinfo, *, extension: str | None = None,
                   numbers: Collection[str] | None = None, departments: Collection[str] | None = None) -> Traffic:
    """The traffic figures of the calls started in ``period``, in ``zone``'s hours."""
    traffic = Traffic(period=period, zone=str(zone))
    where = _filters(period, extension, numbers, departments)
    dialect = engine.dialect.name
    bucket = _hour_bucket(dialect).label("bucket")
    answered = func.coalesce(func.sum(case((CDR.c.disposition == "ANSWERED", 1), else_=0)), 0)
    hours = select(bucket, func.count().label("calls"), answered.label("answered")).where(*where).group_by(
        literal_column("bucket"))
    wait = _wait(dialect).label("wait")
    waits = (select(wait, func.count().label("calls")).where(*where, CDR.c.answered_at.is_not(None))
             .group_by(literal_column("wait")))
    local_hours: dict[datetime, int] = {}
    with engine.connect() as conn:
        for row in conn.execute(hours):
            local = _utc_hour(row.bucket).astimezone(zone)
            calls, took = int(row.calls), int(row.answered)
            traffic.by_hour[local.hour] += calls
            traffic.answered_by_hour[local.hour] += took
            traffic.by_weekday[local.weekday()] += calls
            traffic.calls += calls
            traffic.answered += took
            start = local.replace(minute=0, second=0, microsecond=0)
            local_hours[start] = local_hours.get(start, 0) + calls
        for row in conn.execute(waits):
            seconds = max(0, int(row.wait))
            traffic.wait_seconds[seconds] = traffic.wait_seconds.get(seconds, 0) + int(row.calls)
    if local_hours:
        traffic.busiest = max(sorted(local_hours.items()), key=lambda item: item[1])
    return traffic


# ---------------------------------------------------------------- a chart


def traffic_svg(traffic: Traffic, title: str) -> str:
    """A bar chart of calls (answered darker) per local hour of the day, as
    SVG: a browser or a spreadsheet shows it without anything installed."""
    width, height, left, bottom, top = 760, 300, 50, 40, 40
    plot_w, plot_h = width - left - 20, height - bottom - top
    peak = max(traffic.by_hour) or 1
    bar = plot_w / 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
             f' font-family="sans-serif" font-size="11">',
             f'<text x="{left}" y="20" font-size="14">{_escape(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
             f'<text x="{left - 8}" y="{top + 4}" text-anchor="end">{peak}</text>',
             f'<text x="{left - 8}" y="{top + plot_h}" text-anchor="end">0</text>']
    for hour in range(24):
        x = left + hour * bar
        for count, colour in ((traffic.by_hour[hour], "#9ecae1"), (traffic.answered_by_hour[hour], "#3182bd")):
            h = plot_h * count / peak
            parts.append(f'<rect x="{x + 2:.1f}" y="{top + plot_h - h:.1f}" width="{bar - 4:.1f}" height="{h:.1f}"'
                         f' fill="{colour}"><title>{hour:02d}:00 {count}</title></rect>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 15}" text-anchor="middle">{hour:02d}</text>')
    parts.append(f'<text x="{left + plot_w}" y="{height - 5}" text-anchor="end">hour of day ({_escape(traffic.zone)});'
                 ' light: calls, dark: answered</text>')
    parts.append("</svg>\n")
    return "\n".join(parts)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__: Sequence[str] = ("REPORT_BY", "WEEKDAYS", "ReportBy", "Traffic", "Usage", "UsageReport", "traffic_report",
                          "traffic_svg", "usage_report")
