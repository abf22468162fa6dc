"""extension_features on SQLite and PostgreSQL: a row written by one node
(or by `pbx ext forward`) is what another reads; the newest change wins."""

from __future__ import annotations

from sqlalchemy import Engine

from pbx.calls.features import FeatureRecord, FeatureState
from pbx.routing.dialplan import Extension, Forwards
from pbx.store.features import FeatureStore

BOB = Extension(number="2002", name="Bob", department="ops", password="bob-secret-2002",
                forward=Forwards(no_answer="2009"))


def test_a_forward_set_on_one_node_is_read_by_another(migrated: Engine) -> None:
    store = FeatureStore(migrated)
    one = FeatureState(save=store.save)
    one.set_forward(BOB, "always", "2003", 1000.0)
    one.set_dnd(BOB, True, 1001.0)
    other = FeatureState()
    assert other.settings(BOB).forward == Forwards(no_answer="2009")  # the dialplan's, until read
    other.merge(store.load())
    settings = other.settings(BOB)
    assert settings.dnd is True and settings.forward == Forwards(always="2003", no_answer="2009")


def test_an_older_row_does_not_undo_a_newer_change(migrated: Engine) -> None:
    store = FeatureStore(migrated)
    store.save(FeatureRecord(extension="2002", forward=Forwards(always="2003"), updated_at=1000.0))
    state = FeatureState()
    state.set_forward(BOB, "always", None, 2000.0)
    state.merge(store.load())
    assert state.settings(BOB).forward.always is None
    assert store.get("2002") == FeatureRecord(extension="2002", forward=Forwards(always="2003"), updated_at=1000.0)
