"""Reading CDRs back: filtered listing, CSV for spreadsheets, a text table.

Rows come back as plain dicts (column name to value, timestamps aware UTC),
so the output side needs no SQLAlchemy.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from enum import Enum
from typing import Any, Final, TextIO

from sqlalchemy import Engine, or_, select

from pbx.cdr.writer import CDR, whole_seconds
from pbx.store.models import require_aware

# Columns of `list_calls` rows and of the CSV, in order.
COLUMNS: Final[tuple[str, ...]] = (
    "call_uuid",
    "node",
    "call_id",
    "started_at",
    "answered_at",
    "ended_at",
    "duration",
    "billsec",
    "caller_number",
    "caller_name",
    "caller_department",
    "dialed_number",
    "destination",
    "disposition",
    "hangup_status",
    "hangup_side",
    "reason",
    "rule",
    "call_class",
    "account_code",
    "account_owner",
    "account_rights",
    "hunt_group",
    "answered_by",
    "trunk",
    "short_number",
    "resolved_number",
    "member",
    "ivr_path",
    "transfer",
    "linked_call",
    "cost",
    "cost_minor",
    "currency",
    "tariff",
    "project",
    "recording",
    "billed_to",
    "billed_department",
    "wait",
)
"""``wait`` is computed, not stored: whole seconds from the INVITE to the
answer (for a hunt group, how long the caller waited for a member)."""
_STORED: Final = tuple(name for name in COLUMNS if name != "wait")

_TIME_COLUMNS: Final = frozenset({"started_at", "answered_at", "ended_at"})


def list_calls(
    engine: Engine,
    since: datetime | None = None,
    until: datetime | None = None,
    extension: str | None = None,
    limit: int | None = None,
    hunt_group: str | None = None,
    account_code: str | None = None,
    account_owner: str | None = None,
    *,
    disposition: str | None = None,
    department: str | None = None,
    call_class: str | None = None,
    min_cost: int | None = None,
    max_cost: int | None = None,
    numbers: Collection[str] | None = None,
    departments: Collection[str] | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Calls started in [since, until), oldest first.

    `extension` keeps calls it placed, dialled, or that reached it (caller,
    dialled number or destination).  With `limit`, the newest `limit` of
    them (still oldest first), after skipping the newest `offset`.
    `hunt_group` keeps the calls of that hunt group; `account_code` (an id)
    and `account_owner` keep the calls placed with an account code, or with
    any code of that owner. `disposition`, `department` (the caller's),
    `call_class` keep what they name; `min_cost`/`max_cost` (minor units,
    inclusive) keep priced calls in that range. Given `numbers` or
    `departments` (a reader's scope, or a department asked for), only calls
    involving one of those numbers as above, or placed from one of those
    departments, are kept; empty collections keep nothing.
    """
    query = select(*(CDR.c[name] for name in _STORED))
    for column, wanted in (("disposition", disposition), ("caller_department", department),
                           ("call_class", call_class)):
        if wanted is not None:
            query = query.where(CDR.c[column] == wanted)
    if min_cost is not None:
        query = query.where(CDR.c.cost_minor >= min_cost)
    if max_cost is not None:
        query = query.where(CDR.c.cost_minor <= max_cost)
    if since is not None:
        require_aware("since", since)
        query = query.where(CDR.c.started_at >= since)
    if until is not None:
        require_aware("until", until)
        query = query.where(CDR.c.started_at < until)
    if extension is not None:
        query = query.where(
            or_(
                CDR.c.caller_number == extension,
                CDR.c.dialed_number == extension,
                CDR.c.destination == extension,
            )
        )
    if hunt_group is not None:
        query = query.where(CDR.c.hunt_group == hunt_group)
    if account_code is not None:
        query = query.where(CDR.c.account_code == account_code.removeprefix("#"))
    if account_owner is not None:
        query = query.where(CDR.c.account_owner == account_owner)
    if numbers is not None or departments is not None:
        scope, scope_departments = list(numbers or ()), list(departments or ())
        query = query.where(or_(
            CDR.c.caller_number.in_(scope), CDR.c.dialed_number.in_(scope), CDR.c.destination.in_(scope),
            CDR.c.caller_department.in_(scope_departments)))
    if limit is not None:
        if limit < 1:
            raise ValueError("limit must be positive")
        query = query.order_by(CDR.c.started_at.desc(), CDR.c.id.desc()).limit(limit).offset(max(offset, 0))
    else:
        query = query.order_by(CDR.c.started_at, CDR.c.id)
    with engine.connect() as conn:
        rows = [_plain(row._mapping) for row in conn.execute(query)]
    if limit is not None:
        rows.reverse()
    return rows


def _plain(row: Mapping[Any, Any]) -> dict[str, Any]:
    # Enum members as their stored text, so callers see what the table holds.
    plain = {
        str(name): value.value if isinstance(value, Enum) else value
        for name, value in row.items()
    }
    started, answered = plain.get("started_at"), plain.get("answered_at")
    plain["wait"] = whole_seconds(answered - started) if started is not None and answered is not None else None
    return plain


def show_time(value: datetime, zone: tzinfo | None) -> datetime:
    """`value` in `zone`, or in the system's local zone when None."""
    return value.astimezone(zone) if zone is not None else value.astimezone()


# A leading = + - @ (or tab, CR) makes a spreadsheet read a cell as a
# formula; a caller's display name is chosen by the caller.  Such cells get a
# leading apostrophe (OWASP "CSV injection"), except plain phone numbers
# like +84912345678 or -5.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_NUMBER: Final = re.compile(r"[+-]?[0-9][0-9 .()-]*")


def _csv_cell(name: str, value: Any, zone: tzinfo | None) -> str:
    if value is None:
        return ""
    if name in _TIME_COLUMNS and isinstance(value, datetime):
        return show_time(value, zone).isoformat(timespec="seconds")
    if isinstance(value, Decimal):
        return format(value, "f")
    return spreadsheet_safe(str(value))


def spreadsheet_safe(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet will not run as a formula."""
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_csv(rows: Iterable[Mapping[str, Any]], out: TextIO, zone: tzinfo | None) -> None:
    """RFC 4180 CSV of `rows`: a header row of column names, then one line
    per call; times ISO 8601 with their offset, in `zone` (None: local).

    `out` should be opened with ``newline=""`` (the csv module writes CRLF).
    """
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_csv_cell(name, row.get(name), zone) for name in COLUMNS])


# -- text table --------------------------------------------------------------

_TABLE: Final[tuple[tuple[str, str], ...]] = (
    ("started", "started_at"),
    ("caller", "caller_number"),
    ("name", "caller_name"),
    ("dialled", "dialed_number"),
    ("destination", "destination"),
    ("disposition", "disposition"),
    ("duration", "duration"),
    ("billsec", "billsec"),
    ("wait", "wait"),
    ("hangup", "hangup_side"),
    ("status", "hangup_status"),
)
_ACCOUNT: Final = (("code", "account_code"), ("code owner", "account_owner"))
"""Shown only when some row was placed with an account code."""
_NUMERIC: Final = frozenset({"duration", "billsec", "wait", "hangup_status"})
_MAX_CELL: Final = 24


def display_width(text: str) -> int:
    """Terminal columns `text` takes: CJK wide characters count two,
    combining marks (Vietnamese tones in decomposed form) none."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _clip(text: str, width: int) -> str:
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for char in text:
        w = display_width(char)
        if used + w > width - 1:
            break
        out.append(char)
        used += w
    return "".join(out) + "…"


def _table_cell(name: str, value: Any, zone: tzinfo | None) -> str:
    if value is None:
        return "-" if name != "disposition" else "IN PROGRESS"
    if name in _TIME_COLUMNS and isinstance(value, datetime):
        return show_time(value, zone).strftime("%Y-%m-%d %H:%M:%S")
    # Control characters would break the layout (and could drive the terminal).
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return _clip(text, _MAX_CELL)


def format_table(rows: Sequence[Mapping[str, Any]], zone: tzinfo | None) -> list[str]:
    """Lines of an aligned text table of `rows` (one per call, a header first)."""
    zone_name = "UTC" if zone is UTC else "local" if zone is None else str(zone)
    table = _TABLE + (_ACCOUNT if any(row.get("account_code") for row in rows) else ())
    headers = [f"started ({zone_name})"] + [title for title, _ in table[1:]]
    cells = [[_table_cell(name, row.get(name), zone) for _, name in table] for row in rows]
    widths = [
        max([display_width(headers[i])] + [display_width(line[i]) for line in cells])
        for i in range(len(table))
    ]

    def layout(values: Sequence[str]) -> str:
        parts = []
        for (_, name), value, width in zip(table, values, widths, strict=True):
            pad = " " * (width - display_width(value))
            parts.append(pad + value if name in _NUMERIC else value + pad)
        return "  ".join(parts).rstrip()

    return [layout(headers)] + [layout(line) for line in cells]
