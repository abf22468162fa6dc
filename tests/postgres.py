"""A throw-away PostgreSQL schema for a test (store tests, the cluster).

The schema has a random name, is created for the test and dropped after it,
and is selected through libpq's ``options=-csearch_path=...`` in the URL; so
runs by different people (or pytest-xdist workers) against one server never
see each other's rows. Skips the test when the server cannot be reached (set
PBX_TEST_POSTGRES_URL to point elsewhere).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from pbx.store.db import make_engine

POSTGRES_URL: Final = os.environ.get(
    "PBX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def postgres_schema(prefix: str = "pbx_test") -> Iterator[str]:
    """The URL of an empty schema named ``prefix`` and a random suffix."""
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {make_url(POSTGRES_URL).host}")
    try:
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
