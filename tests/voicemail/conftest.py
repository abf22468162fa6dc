"""The voicemail tests that need a database use the store tests' fixtures
(every such test runs on SQLite and PostgreSQL)."""

from __future__ import annotations

from tests.store.conftest import db_url, engine, migrated

__all__ = ["db_url", "engine", "migrated"]
