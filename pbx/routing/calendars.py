"""Holiday calendars and weekly schedules: "is it business hours now?".

Pure: the moment is passed in (an aware ``datetime``) and converted to the
schedule's time zone, a ``tzinfo`` the loader built. Public holidays come
from the ``holidays`` package (its country tables follow each country's own
rules, including lunar-calendar days such as Tết and 春節); admin-defined
lunar dates are converted with ``lunardate`` (the Chinese lunisolar
calendar, years 1900-2099). Both are pure computations once the loader has
imported the country's table, and their answers are cached per year/day.

Schedule rule: a schedule is *open* when the local time falls in one of its
weekly slots and the local date is on none of its holiday calendars. A slot
whose end is not after its start runs past midnight into the next day.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Final

import lunardate  # type: ignore[import-untyped]

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY: Final = 24 * 60
LUNAR_YEARS: Final = range(1900, 2100)
"""Years ``lunardate`` knows; lunar dates outside them never match."""

_TIME: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")
_MONTH_DAY: Final = re.compile(r"([0-9]{2})-([0-9]{2})")


# ---------------------------------------------------------------- parsing


def parse_time(text: str) -> int:
    """``"08:30"`` -> minutes after midnight (``"24:00"`` is 1440)."""
    if _TIME.fullmatch(text) is None:
        raise ValueError(f"time {text!r} must be HH:MM between 00:00 and 24:00")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def parse_days(text: str) -> frozenset[int]:
    """``"mon-fri"``, ``"sat"``, ``"mon,wed,fri"``, ``"fri-mon"`` -> weekday
    numbers (Monday 0). A range may wrap past Sunday."""
    days: set[int] = set()
    for part in text.replace(" ", "").lower().split(","):
        first, dash, last = part.partition("-")
        if first not in WEEKDAYS or (dash and last not in WEEKDAYS):
            raise ValueError(f"days {text!r}: use mon tue wed thu fri sat sun, ranges (mon-fri) and commas")
        start = WEEKDAYS.index(first)
        end = WEEKDAYS.index(last) if dash else start
        span = (end - start) % 7
        days.update((start + offset) % 7 for offset in range(span + 1))
    return frozenset(days)


def parse_month_day(text: str, *, lunar: bool) -> tuple[int, int]:
    """``"12-30"`` -> (12, 30). Lunar months have at most 30 days."""
    found = _MONTH_DAY.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} must be MM-DD")
    month, day = int(found.group(1)), int(found.group(2))
    longest = 30 if lunar else (29 if month == 2 else 30 if month in (4, 6, 9, 11) else 31)
    if not 1 <= month <= 12 or not 1 <= day <= longest:
        kind = "lunar " if lunar else ""
        raise ValueError(f"{text!r} is not a {kind}month and day")
    return month, day


def parse_span(text: str) -> tuple[str, str]:
    """``"A..B"`` -> (A, B); a single value -> (A, A)."""
    first, dots, last = text.partition("..")
    return (first.strip(), last.strip()) if dots else (text.strip(), text.strip())


# ---------------------------------------------------------------- calendars


@dataclass(frozen=True, slots=True)
class YearlySpan:
    """Month-day ``first`` to ``last`` every year (wrapping past the year's
    end when ``last`` comes before ``first``, e.g. lunar 12-29 .. 01-05)."""

    first: tuple[int, int]
    last: tuple[int, int]

    def contains(self, month_day: tuple[int, int]) -> bool:
        if self.first <= self.last:
            return self.first <= month_day <= self.last
        return month_day >= self.first or month_day <= self.last

    def __str__(self) -> str:
        first = f"{self.first[0]:02d}-{self.first[1]:02d}"
        last = f"{self.last[0]:02d}-{self.last[1]:02d}"
        return first if first == last else f"{first}..{last}"


@dataclass(frozen=True, slots=True)
class DateSpan:
    first: date
    last: date

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}..{self.last}"


@functools.lru_cache(maxsize=64)
def public_holidays(country: str, subdivision: str | None, year: int) -> Mapping[date, str]:
    """The ``holidays`` package's public holidays of ``country`` in ``year``.

    Raises ``NotImplementedError`` for a country (or subdivision) the
    package does not know; the loader calls this once to check the code.
    """
    # Imported here: a plan without public holidays (and a reload's child
    # reading one) never needs its tables, a twentieth of a second to import.
    import holidays

    table = holidays.country_holidays(country, subdiv=subdivision, years=year)
    return dict(table.items())


@functools.lru_cache(maxsize=4096)
def lunar_month_day(day: date) -> tuple[int, int] | None:
    """Lunar (month, day) of a Gregorian date; None in a leap month (a lunar
    date names the regular month) or outside :data:`LUNAR_YEARS`."""
    if day.year not in LUNAR_YEARS:
        return None
    try:
        lunar = lunardate.LunarDate.from_solar_date(day.year, day.month, day.day)
    except ValueError:
        return None
    if lunar.is_leap_month:
        return None
    return int(lunar.month), int(lunar.day)


@dataclass(frozen=True, slots=True, kw_only=True)
class Calendar:
    """Days that are not working days (``calendars:`` section)."""

    key: str
    public_holidays: str | None = None
    """ISO 3166 country code whose public holidays count (``VN``, ``TW``)."""
    subdivision: str | None = None
    """Province or state code for regional holidays, if the country has them."""
    dates: tuple[DateSpan, ...] = ()
    """One-off days or ranges (company closures, bridge days)."""
    annual: tuple[YearlySpan, ...] = ()
    """Gregorian month-days every year (a founding day)."""
    lunar: tuple[YearlySpan, ...] = ()
    """Lunar month-days every year (Tết eve to the 5th day: 12-29..01-05)."""

    def holiday(self, day: date) -> str | None:
        """Why ``day`` is a holiday on this calendar, or None if it is not."""
        if self.public_holidays is not None:
            name = public_holidays(self.public_holidays, self.subdivision, day.year).get(day)
            if name is not None:
                return f"{name} (public holiday {self.public_holidays})"
        for span in self.dates:
            if span.first <= day <= span.last:
                return f"closed {span}"
        for yearly in self.annual:
            if yearly.contains((day.month, day.day)):
                return f"closed every {yearly}"
        if self.lunar:
            month_day = lunar_month_day(day)
            if month_day is not None:
                for yearly in self.lunar:
                    if yearly.contains(month_day):
                        return f"lunar {month_day[0]:02d}-{month_day[1]:02d}, closed every lunar {yearly}"
        return None


# ---------------------------------------------------------------- schedules


@dataclass(frozen=True, slots=True, kw_only=True)
class WeeklySlot:
    """Open on ``days`` from ``start`` to ``end`` (minutes after midnight)."""

    days: frozenset[int]
    start: int
    end: int
    text: str
    """As written, for messages (``mon-fri 08:00-17:30``)."""

    def __post_init__(self) -> None:
        if not self.days:
            raise ValueError("a slot needs at least one day")
        if not (0 <= self.start < MINUTES_PER_DAY and 0 < self.end <= MINUTES_PER_DAY):
            raise ValueError("slot times must lie within a day")
        if self.start == self.end:
            raise ValueError(f"slot {self.text!r} is empty (starts when it ends)")

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def contains(self, weekday: int, minute: int) -> bool:
        if not self.overnight:
            return weekday in self.days and self.start <= minute < self.end
        # Started today and not yet midnight, or started yesterday and not yet over.
        return (weekday in self.days and minute >= self.start) or (
            (weekday - 1) % 7 in self.days and minute < self.end
        )


@dataclass(frozen=True, slots=True)
class ScheduleState:
    open: bool
    why: str
    """E.g. ``Wed 2027-02-10 18:05 Asia/Ho_Chi_Minh, outside mon-fri 08:00-17:30``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """Weekly opening hours in a time zone, closed on holiday calendars."""

    key: str
    timezone: tzinfo
    slots: tuple[WeeklySlot, ...]
    closed_on: tuple[Calendar, ...] = ()

    def state(self, at: datetime) -> ScheduleState:
        """Open or closed at the aware moment ``at``, and why."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("schedules need an aware datetime")
        local = at.astimezone(self.timezone)
        shown = f"{WEEKDAYS[local.weekday()].capitalize()} {local:%Y-%m-%d %H:%M} {self.timezone}"
        for calendar in self.closed_on:
            reason = calendar.holiday(local.date())
            if reason is not None:
                return ScheduleState(False, f"{shown}: holiday on calendar {calendar.key}: {reason}")
        minute = local.hour * 60 + local.minute
        for slot in self.slots:
            if slot.contains(local.weekday(), minute):
                return ScheduleState(True, f"{shown}, within {slot.text}")
        hours = ", ".join(slot.text for slot in self.slots) or "no opening hours"
        return ScheduleState(False, f"{shown}, outside {hours}")
