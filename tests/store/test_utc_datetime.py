"""`UtcDateTime`'s own SQLite bind processor writes the text SQLAlchemy's
generic path (process_bind_param, then SQLite's DATETIME processor) would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from pbx.store.models import UtcDateTime

_LITE = sqlite.dialect()
# UTC itself (the PBX's own values, written without conversion) among them.
_OFFSETS = st.one_of(
    st.just(UTC), st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
)


def _generic(value: datetime) -> object:
    """What SQLAlchemy's TypeDecorator path makes of `value` on SQLite."""
    column_type = UtcDateTime()
    naive = column_type.process_bind_param(value, _LITE)
    process = column_type.impl_instance.dialect_impl(_LITE).bind_processor(_LITE)
    assert process is not None
    return process(naive)


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=_OFFSETS))
def test_the_sqlite_text_is_the_generic_one(value: datetime) -> None:
    process = UtcDateTime().bind_processor(_LITE)
    assert process is not None
    assert process(value) == _generic(value)


def test_whole_seconds_keep_their_microseconds_and_small_years_their_zeros() -> None:
    process = UtcDateTime().bind_processor(_LITE)
    assert process is not None
    assert process(datetime(2026, 12, 7, 9, 5, 3, tzinfo=UTC)) == "2026-12-07 09:05:03.000000"
    assert process(datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02 00:00:00.000000"
    assert process(None) is None


def test_naive_values_are_refused_as_before() -> None:
    process = UtcDateTime().bind_processor(_LITE)
    assert process is not None
    with pytest.raises(ValueError, match="timezone-aware"):
        process(datetime(2026, 12, 7))


def test_other_databases_keep_the_generic_processor() -> None:
    # PostgreSQL stores the aware instant itself, moved to UTC.
    process = UtcDateTime().bind_processor(postgresql.dialect())  # type: ignore[no-untyped-call]
    assert process is not None
    hanoi = datetime(2026, 12, 7, 16, 0, tzinfo=timezone(timedelta(hours=7)))
    stored = process(hanoi)
    assert stored == hanoi and stored.tzinfo is UTC and stored.hour == 9
