"""Call features' lasting state in SQL: ``extension_features`` (see
:mod:`pbx.calls.features`). Every write is an upsert of the whole row;
methods take an optional ``conn`` as in :mod:`pbx.store.hunt`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, Engine, Table, select

from pbx.calls.features import FeatureRecord, FeatureState, Settings
from pbx.routing.dialplan import Extension, Forwards
from pbx.routing.feature_codes import ForwardKind
from pbx.store.db import transaction, upsert
from pbx.store.models import Base, ExtensionFeatures

FEATURES: Final[Table] = Base.metadata.tables[ExtensionFeatures.__tablename__]


def _record(row: Mapping[Any, Any]) -> FeatureRecord:
    return FeatureRecord(
        extension=row["extension"], dnd=bool(row["dnd"]),
        forward=Forwards(always=row["forward_always"], busy=row["forward_busy"],
                         no_answer=row["forward_no_answer"], unreachable=row["forward_unreachable"]),
        updated_at=row["updated_at"].timestamp())


class FeatureStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def load(self, conn: Connection | None = None) -> list[FeatureRecord]:
        with transaction(self._engine, conn) as c:
            return [_record(row._mapping) for row in c.execute(select(FEATURES))]

    def get(self, extension: str, conn: Connection | None = None) -> FeatureRecord | None:
        with transaction(self._engine, conn) as c:
            row = c.execute(select(FEATURES).where(FEATURES.c.extension == extension)).first()
        return None if row is None else _record(row._mapping)

    def save(self, record: FeatureRecord, conn: Connection | None = None) -> None:
        forward = record.forward
        values = {"extension": record.extension, "dnd": record.dnd, "forward_always": forward.always,
                  "forward_busy": forward.busy, "forward_no_answer": forward.no_answer,
                  "forward_unreachable": forward.unreachable,
                  "updated_at": datetime.fromtimestamp(record.updated_at, UTC)}
        with transaction(self._engine, conn) as c:
            upsert(c, FEATURES, values, ("extension",))


def set_features(engine: Engine, extension: Extension, forwards: Mapping[ForwardKind, str | None],
                 dnd: bool | None, now: float) -> Settings:
    """Set some of ``extension``'s forwards (None: off) and do not disturb,
    as an administrator does (``pbx ext forward``, the API), in one
    transaction; the settings in force afterwards. Targets are checked by
    the caller (:func:`pbx.routing.rights.forward_refusal`)."""
    store = FeatureStore(engine)
    with engine.begin() as conn:
        state = FeatureState(save=lambda record: store.save(record, conn=conn))
        found = store.get(extension.number, conn=conn)
        state.merge([found] if found is not None else [])
        for kind, target in forwards.items():
            state.set_forward(extension, kind, target, now)
        if dnd is not None:
            state.set_dnd(extension, dnd, now)
        return state.settings(extension)
