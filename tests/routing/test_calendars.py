"""Schedules and holiday calendars with an injected moment: time zones,
slots past midnight, public holidays from the holidays package, lunar
dates (Tết 2027 begins on Saturday 2027-02-06)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from pbx.routing.calendars import (
    Calendar,
    DateSpan,
    Schedule,
    WeeklySlot,
    YearlySpan,
    lunar_month_day,
    parse_days,
    parse_month_day,
    parse_time,
)

HCMC = ZoneInfo("Asia/Ho_Chi_Minh")
TAIPEI = ZoneInfo("Asia/Taipei")


def slot(days: str, start: str, end: str) -> WeeklySlot:
    return WeeklySlot(days=parse_days(days), start=parse_time(start), end=parse_time(end),
                      text=f"{days} {start}-{end}")


@pytest.mark.parametrize(
    ("text", "days"),
    [("mon-fri", {0, 1, 2, 3, 4}), ("sat", {5}), ("mon,wed,fri", {0, 2, 4}), ("fri-mon", {4, 5, 6, 0}),
     ("Mon - Fri", {0, 1, 2, 3, 4}), ("mon-sun", set(range(7)))],
)
def test_parse_days(text: str, days: set[int]) -> None:
    assert parse_days(text) == days


@pytest.mark.parametrize("text", ["", "monday", "mon-", "mon,,fri", "funday"])
def test_bad_days(text: str) -> None:
    with pytest.raises(ValueError):
        parse_days(text)


@pytest.mark.parametrize(("text", "minutes"), [("00:00", 0), ("08:30", 510), ("23:59", 1439), ("24:00", 1440)])
def test_parse_time(text: str, minutes: int) -> None:
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["8:30", "24:01", "12:60", "noon", "25:00"])
def test_bad_times(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


@pytest.mark.parametrize(("text", "lunar"), [("02-30", False), ("04-31", False), ("12-31", True), ("13-01", True)])
def test_impossible_month_days(text: str, lunar: bool) -> None:
    with pytest.raises(ValueError):
        parse_month_day(text, lunar=lunar)


def test_lunar_dates_of_tet_2027() -> None:
    assert lunar_month_day(date(2027, 2, 5)) == (12, 29)  # the last month has 29 days this year
    assert lunar_month_day(date(2027, 2, 6)) == (1, 1)
    assert lunar_month_day(date(2027, 2, 10)) == (1, 5)
    assert lunar_month_day(date(2025, 7, 26)) is None  # in the leap sixth month of 2025
    assert lunar_month_day(date(2100, 1, 1)) is None  # past what the converter knows


def test_yearly_span_wraps_past_the_year_end() -> None:
    tet = YearlySpan((12, 29), (1, 5))
    assert tet.contains((12, 29)) and tet.contains((1, 1)) and tet.contains((1, 5))
    assert not tet.contains((1, 6)) and not tet.contains((12, 28))
    assert str(tet) == "12-29..01-05" and str(YearlySpan((6, 15), (6, 15))) == "06-15"


def test_calendar_reasons() -> None:
    calendar = Calendar(
        key="office",
        public_holidays="VN",
        dates=(DateSpan(date(2027, 3, 1), date(2027, 3, 2)),),
        annual=(YearlySpan((6, 15), (6, 15)),),
        lunar=(YearlySpan((1, 6), (1, 6)),),
    )
    assert calendar.holiday(date(2027, 2, 6)) == "Lunar New Year (public holiday VN)"
    assert calendar.holiday(date(2027, 2, 11)) == "lunar 01-06, closed every lunar 01-06"
    assert calendar.holiday(date(2027, 3, 2)) == "closed 2027-03-01..2027-03-02"
    assert calendar.holiday(date(2028, 6, 15)) == "closed every 06-15"
    assert calendar.holiday(date(2027, 3, 3)) is None
    taiwan = Calendar(key="tw", public_holidays="TW")
    assert taiwan.holiday(date(2027, 2, 6)) == "Chinese New Year (public holiday TW)"


def test_schedule_uses_its_own_time_zone() -> None:
    hours = Schedule(key="taipei", timezone=TAIPEI, slots=(slot("mon-fri", "09:00", "18:00"),))
    # 01:00 UTC is 09:00 in Taipei (and 08:00 in Ho Chi Minh City).
    opening = datetime(2027, 3, 10, 1, 0, tzinfo=timezone.utc)
    assert hours.state(opening).open
    assert hours.state(opening.astimezone(HCMC)).open  # the same moment, written another way
    assert not hours.state(datetime(2027, 3, 10, 0, 59, tzinfo=timezone.utc)).open
    state = hours.state(datetime(2027, 3, 10, 10, 0, tzinfo=timezone.utc))
    assert state == type(state)(False, "Wed 2027-03-10 18:00 Asia/Taipei, outside mon-fri 09:00-18:00")


def test_slot_past_midnight_belongs_to_the_day_it_starts() -> None:
    night = Schedule(key="night", timezone=HCMC, slots=(slot("fri", "22:00", "06:00"),))
    assert night.state(datetime(2027, 3, 12, 22, 0, tzinfo=HCMC)).open  # Friday night
    assert night.state(datetime(2027, 3, 13, 5, 59, tzinfo=HCMC)).open  # into Saturday
    assert not night.state(datetime(2027, 3, 13, 6, 0, tzinfo=HCMC)).open
    assert not night.state(datetime(2027, 3, 13, 22, 0, tzinfo=HCMC)).open  # Saturday night
    assert not night.state(datetime(2027, 3, 12, 5, 0, tzinfo=HCMC)).open  # Friday early: Thursday's


def test_holiday_closes_the_whole_day() -> None:
    calendar = Calendar(key="vn", public_holidays="VN")
    hours = Schedule(key="office", timezone=HCMC, slots=(slot("mon-sun", "00:00", "24:00"),), closed_on=(calendar,))
    state = hours.state(datetime(2027, 2, 8, 10, 0, tzinfo=HCMC))
    assert not state.open
    assert state.why == ("Mon 2027-02-08 10:00 Asia/Ho_Chi_Minh: holiday on calendar vn:"
                         " Third Day of Lunar New Year (public holiday VN)")
    assert hours.state(datetime(2027, 2, 12, 10, 0, tzinfo=HCMC)).open


def test_naive_moment_is_refused() -> None:
    hours = Schedule(key="office", timezone=HCMC, slots=(slot("mon", "08:00", "09:00"),))
    with pytest.raises(ValueError):
        hours.state(datetime(2027, 3, 8, 8, 30))


def test_empty_slot_is_refused() -> None:
    with pytest.raises(ValueError):
        slot("mon", "08:00", "08:00")
