"""Fixtures for the store tests: every test runs against SQLite and PostgreSQL.

SQLite gets a fresh file under `tmp_path`.  PostgreSQL gets a schema with a
random name, created for the test and dropped after it, selected through
libpq's ``options=-csearch_path=...`` in the URL; so runs by different people
(or pytest-xdist workers) against one server never see each other's rows.
The PostgreSQL cases are marked ``postgres`` and skipped when the server
cannot be reached (set PBX_TEST_POSTGRES_URL to point elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from pbx.store.bindings import BindingRecord
from pbx.store.blocks import StoredBlock
from pbx.store.db import make_engine, migrate
from tests.postgres import postgres_schema


NOW = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)  # the night European clocks go forward


def ends(blocks: list[StoredBlock]) -> dict[str, datetime]:
    """Source to end, for whole-source blocks (what most store tests set)."""
    return {block.source: block.until for block in blocks if block.username == ""}


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """URL of an empty database (no tables yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pbx.sqlite3'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the empty database."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated(engine: Engine) -> Engine:
    """An engine on a database upgraded to the newest schema."""
    migrate(engine)
    return engine


MakeBinding = Callable[..., BindingRecord]


@pytest.fixture
def make_binding() -> MakeBinding:
    """Factory of valid bindings; keyword arguments override fields."""

    def make(**overrides: Any) -> BindingRecord:
        fields: dict[str, Any] = {
            "aor": "1001",
            "contact": "sip:1001@192.0.2.10:5062;transport=udp;ob",
            "expires_at": NOW + timedelta(seconds=3600),
            "call_id": "a84b4c76e66710@pc33.example.com",
            "cseq": 1,
            "q": None,
            "transport": "udp",
            "source_host": "198.51.100.7",
            "source_port": 40000,
            "connection_id": None,
            "node": "pbx-a",
            "user_agent": "Yealink SIP-T46S",
            "instance_id": None,
            "reg_id": None,
            "updated_at": NOW,
        }
        fields.update(overrides)
        return BindingRecord(**fields)

    return make
