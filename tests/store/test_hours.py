"""Schedule overrides in the store (pbx hours), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from pbx.routing.ivr import HoursOverride
from pbx.store.hours import HoursStore

NOW = datetime(2027, 3, 10, 3, 0, tzinfo=UTC)


def test_set_replace_expire_and_clear(migrated: Engine) -> None:
    store = HoursStore(migrated)
    store.set("business_hours", "closed", NOW + timedelta(hours=2), NOW)
    store.set("*", "open", None, NOW)
    assert store.active(NOW) == {
        "business_hours": HoursOverride(schedule="business_hours", mode="closed", until=NOW + timedelta(hours=2)),
        "*": HoursOverride(schedule="*", mode="open"),
    }
    store.set("business_hours", "open", None, NOW + timedelta(minutes=1))  # replaces
    assert store.active(NOW)["business_hours"].mode == "open"
    store.set("taipei_hours", "closed", NOW + timedelta(hours=1), NOW)
    assert "taipei_hours" not in store.active(NOW + timedelta(hours=1))  # ended by itself
    assert store.clear("business_hours") == 1
    assert set(store.active(NOW)) == {"*", "taipei_hours"}
    assert store.clear() == 2
    assert store.active(NOW) == {}


def test_an_override_that_ends_before_it_starts_is_refused(migrated: Engine) -> None:
    with pytest.raises(ValueError, match="end before it starts"):
        HoursStore(migrated).set("business_hours", "closed", NOW - timedelta(minutes=1), NOW)
