"""`pbx report` on SQLite and PostgreSQL: its totals are the sums of the CDR
rows (a property over random CDR sets), every grouping adds up to the
total, the CSV is ready for a spreadsheet (BOM, Vietnamese and Chinese
names intact), and the traffic figures are those of the calls."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert

from pbx.cdr.reports import REPORT_BY, traffic_report, usage_report
from pbx.cdr.writer import CDR, CDR_LEGS
from pbx.cli.main import main
from pbx.routing.budgets import parse_period
from tests.cdr.conftest import db_url, engine, migrated

__all__ = ["db_url", "engine", "migrated"]

HCMC = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
DECEMBER = parse_period("2026-12", HCMC)
DEPARTMENTS = ["Kế toán", "台北辦公室", "sales", None]


def cdr_row(*, started_at: datetime, department: str | None, caller: str, answered_after: int | None,
            billsec: int, cost: int | None, call_class: str | None = "mobile", trunk: str | None = "viettel",
            project: str | None = None, code: str | None = None) -> dict[str, Any]:
    answered_at = None if answered_after is None else started_at + timedelta(seconds=answered_after)
    billsec = billsec if answered_at is not None else 0
    duration = (answered_after or 0) + billsec
    return {
        "call_uuid": str(uuid.uuid4()), "node": "pbx-a", "call_id": uuid.uuid4().hex, "started_at": started_at,
        "answered_at": answered_at, "ended_at": started_at + timedelta(seconds=duration), "duration": duration,
        "billsec": billsec, "caller_number": caller, "caller_department": department, "dialed_number": "0912345678",
        "disposition": "ANSWERED" if answered_at is not None else "NO_ANSWER", "hangup_side": "caller",
        "call_class": call_class, "trunk": trunk, "project": project, "account_code": code,
        "cost_minor": cost if answered_at is not None else None, "currency": "VND" if cost is not None else None,
    }


rows_strategy = st.lists(st.builds(
    lambda minutes, department, caller, answered_after, billsec, cost, project: cdr_row(
        started_at=datetime(2026, 11, 25, tzinfo=UTC) + timedelta(minutes=minutes), department=department,
        caller=caller, answered_after=answered_after, billsec=billsec, cost=cost, project=project),
    minutes=st.integers(0, 60 * 24 * 45),  # 25 November to 9 January: the edges of December on both sides
    department=st.sampled_from(DEPARTMENTS),
    caller=st.sampled_from(["1001", "1003", "1010", "+84912345678"]),
    answered_after=st.none() | st.integers(0, 40),
    billsec=st.integers(0, 4000),
    cost=st.none() | st.integers(0, 10**9),
    project=st.sampled_from([None, "expo"]),
), max_size=40)


def load(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(delete(CDR_LEGS))
        conn.execute(delete(CDR))
        if rows:
            conn.execute(insert(CDR), rows)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy)
def test_report_totals_are_the_sums_of_the_cdr_rows(migrated: Engine, rows: list[dict[str, Any]]) -> None:
    load(migrated, rows)
    inside = [r for r in rows if DECEMBER.start <= r["started_at"] < DECEMBER.end]
    for by in REPORT_BY:
        found = usage_report(migrated, by, DECEMBER)  # type: ignore[arg-type]
        total = found.total
        assert (total.calls, total.answered, total.billsec, total.cost) == (
            len(inside), sum(r["disposition"] == "ANSWERED" for r in inside), sum(r["billsec"] for r in inside),
            sum(r["cost_minor"] or 0 for r in inside))
        assert sum(row.calls for row in found.rows) == total.calls
        assert sum(row.cost for row in found.rows) == total.cost
        assert sum(row.billsec for row in found.rows) == total.billsec
    own = usage_report(migrated, "class", DECEMBER, extension="1003").total
    assert own.cost == sum(r["cost_minor"] or 0 for r in inside if r["caller_number"] == "1003")


def test_by_department_csv_is_ready_for_a_spreadsheet(migrated: Engine, db_url: str, tmp_path: Path) -> None:
    start = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    load(migrated, [
        cdr_row(started_at=start, department="Kế toán", caller="1008", answered_after=5, billsec=61, cost=2400),
        cdr_row(started_at=start, department="Kế toán", caller="1009", answered_after=None, billsec=0, cost=None),
        cdr_row(started_at=start, department="台北辦公室", caller="1010", answered_after=3, billsec=120, cost=1200),
        cdr_row(started_at=start, department="=HYPERLINK(1)", caller="1011", answered_after=3, billsec=0, cost=0),
    ])
    result = CliRunner().invoke(main, ["report", "--by", "department", "--period", "2026-12", "--tz",
                                       "Asia/Ho_Chi_Minh", "--csv", "--db", db_url])
    assert result.exit_code == 0, result.output
    data = result.stdout_bytes
    assert data.startswith("\ufeff".encode())
    assert data.decode("utf-8-sig").splitlines() == [
        "department,calls,answered,minutes,cost,currency,period",
        "Kế toán,2,1,1.02,2400,VND,2026-12",
        "台北辦公室,1,1,2.00,1200,VND,2026-12",
        "'=HYPERLINK(1),1,1,0.00,0,VND,2026-12",
        "TOTAL,4,3,3.02,3600,VND,2026-12",
    ]
    table = CliRunner().invoke(main, ["report", "--by", "department", "--period", "2026-12", "--tz",
                                      "Asia/Ho_Chi_Minh", "--db", db_url])
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0] == "period 2026-12 (Asia/Ho_Chi_Minh)"
    assert table.output.splitlines()[-1].split() == ["TOTAL", "4", "3", "3.0", "3,600"]


def test_traffic_counts_local_hours_waits_and_the_busiest_hour(migrated: Engine, db_url: str,
                                                               tmp_path: Path) -> None:
    def at(day: int, hour: int, minute: int) -> datetime:  # local time in Ho Chi Minh City
        return datetime(2026, 12, day, hour, minute, tzinfo=HCMC).astimezone(UTC)

    rows = [cdr_row(started_at=at(7, 9, m), department="sales", caller="1003", answered_after=wait, billsec=30,
                    cost=100) for m, wait in ((0, 2), (10, 4), (20, 6), (30, None), (40, 10))]
    rows += [cdr_row(started_at=at(8, 14, 5), department="sales", caller="1003", answered_after=20, billsec=30,
                     cost=100)]
    rows.append(cdr_row(started_at=at(1, 0, 30) - timedelta(hours=1), department="sales", caller="1003",
                        answered_after=1, billsec=1, cost=1))  # 23:30 on 30 November: another period
    load(migrated, rows)
    found = traffic_report(migrated, DECEMBER, HCMC)
    assert (found.calls, found.answered) == (6, 5)
    assert found.by_hour[9] == 5 and found.by_hour[14] == 1 and sum(found.by_hour) == 6
    assert found.answered_by_hour[9] == 4
    assert found.by_weekday == [5, 1, 0, 0, 0, 0, 0]  # 7 December 2026 is a Monday
    assert found.average_wait == (2 + 4 + 6 + 10 + 20) / 5
    assert found.wait_percentile(0.9) == 20 and found.wait_percentile(0.5) == 6
    assert found.busiest == (datetime(2026, 12, 7, 9, 0, tzinfo=HCMC), 5)
    assert found.busiest_hour_of_day == 9
    svg = tmp_path / "traffic.svg"
    result = CliRunner().invoke(main, ["report", "traffic", "--period", "2026-12", "--tz", "Asia/Ho_Chi_Minh",
                                       "--db", db_url, "--svg", str(svg)])
    assert result.exit_code == 0, result.output
    assert "6 calls, 5 answered (83.3%)" in result.output
    assert "wait before answer: average 8.4 s, 90th percentile 20 s" in result.output
    assert "busiest hour: 2026-12-07 09:00 (5 calls); busiest hour of the day: 09:00" in result.output
    assert svg.read_text().startswith("<svg") and "<title>09:00 5</title>" in svg.read_text()


def test_a_bad_period_is_a_clear_error(migrated: Engine, db_url: str) -> None:
    result = CliRunner().invoke(main, ["report", "--period", "2026-13", "--db", db_url])
    assert result.exit_code == 2 and "period '2026-13' must be a year" in result.output


def test_cdr_list_filters_by_disposition_department_class_and_cost(migrated: Engine, db_url: str) -> None:
    start = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    rows = [
        cdr_row(started_at=start, department="Kế toán", caller="1001", answered_after=2, billsec=60, cost=1200),
        cdr_row(started_at=start + timedelta(minutes=1), department="Kế toán", caller="1002", answered_after=2,
                billsec=600, cost=12000),
        cdr_row(started_at=start + timedelta(minutes=2), department="Kế toán", caller="1003", answered_after=None,
                billsec=0, cost=None),
        cdr_row(started_at=start + timedelta(minutes=3), department="Kế toán", caller="1004", answered_after=2,
                billsec=60, cost=900, call_class="national"),
        cdr_row(started_at=start + timedelta(minutes=4), department="sales", caller="1005", answered_after=2,
                billsec=60, cost=1100),
        cdr_row(started_at=start + timedelta(minutes=5), department="Kế toán", caller="1006", answered_after=2,
                billsec=0, cost=0),
    ]
    load(migrated, rows)

    def listed(*args: str) -> list[str]:
        result = CliRunner().invoke(main, ["cdr", "list", "--db", db_url, "--csv", *args])
        assert result.exit_code == 0, result.output
        return [line.split(",")[0] for line in result.stdout_bytes.decode("utf-8-sig").splitlines()[1:]]

    callers = {row["call_uuid"]: row["caller_number"] for row in rows}

    def who(*args: str) -> list[str]:
        return [callers[key] for key in listed(*args)]

    assert listed()[0] in callers  # the first column is the call's uuid
    assert who("--disposition", "answered", "--department", "Kế toán", "--class", "mobile") == [
        "1001", "1002", "1006"]
    assert who("--disposition", "NO_ANSWER") == ["1003"]
    assert who("--min-cost", "1000", "--max-cost", "5000") == ["1001", "1005"]
    assert who("--min-cost", "1") == ["1001", "1002", "1004", "1005"]   # unpriced and free calls left out
    assert who("--department", "Kế toán", "--max-cost", "0") == ["1006"]
    refused = CliRunner().invoke(main, ["cdr", "list", "--db", db_url, "--min-cost", "-5"])
    assert refused.exit_code == 2 and "--min-cost" in refused.output


def test_an_employee_sees_their_own_usage(migrated: Engine, db_url: str) -> None:
    start = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    load(migrated, [
        cdr_row(started_at=start, department="sales", caller="1003", answered_after=2, billsec=90, cost=1800),
        cdr_row(started_at=start, department="sales", caller="1003", answered_after=2, billsec=30, cost=600,
                call_class="national"),
        cdr_row(started_at=start, department="sales", caller="1003", answered_after=None, billsec=0, cost=None),
        cdr_row(started_at=start, department="sales", caller="1004", answered_after=2, billsec=600, cost=9000),
    ])
    result = CliRunner().invoke(main, ["report", "--extension", "1003", "--by", "class", "--period", "2026-12",
                                       "--tz", "Asia/Ho_Chi_Minh", "--csv", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes.decode("utf-8-sig").splitlines() == [
        "class,calls,answered,minutes,cost,currency,period",
        "mobile,2,1,1.50,1800,VND,2026-12",
        "national,1,1,0.50,600,VND,2026-12",
        "TOTAL,3,2,2.00,2400,VND,2026-12",
    ]
