"""Forwarding and do not disturb: what each extension set, and where a
call to it goes.

What a user sets from the phone (``*72``, ``*78`` ...) or an admin with
``pbx ext forward`` is a :class:`FeatureRecord` (one row of the store's
``extension_features``); an extension without one uses what the dialplan
says (``forward:``, ``dnd:``). :class:`FeatureState` is the node's cache of
the store: changes go to ``save`` (written behind), :meth:`FeatureState.merge`
takes in what the store holds (read at start and every few seconds, so
several nodes share one setting); the newest change wins.

:func:`forward_before_ringing` says, for a call to an extension, whether
it rings at all (forward always, do not disturb, busy on its maximum of
calls, nothing registered), and :class:`ForwardOnFail` what happens if it
rings and nobody takes it. The controller follows a forward like a call
the forwarding extension places (its rights, its outside-call caps), at
most ``forward_limit`` times (a loop of forwards ends there).

Pure: no clock, no SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

from pbx.routing.dialplan import Extension, Forwards
from pbx.routing.feature_codes import ForwardKind


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureRecord:
    """One extension's settings as the user or an admin changed them."""

    extension: str
    dnd: bool = False
    forward: Forwards = Forwards()
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What is in force for one extension now."""

    dnd: bool
    forward: Forwards


class FeatureState:
    def __init__(self, save: Callable[[FeatureRecord], None] | None = None) -> None:
        self._records: dict[str, FeatureRecord] = {}
        self._save = save

    def settings(self, extension: Extension) -> Settings:
        record = self._records.get(extension.number)
        if record is None:
            return Settings(dnd=extension.dnd, forward=extension.forward)
        return Settings(dnd=record.dnd, forward=record.forward)

    def record(self, extension: Extension) -> FeatureRecord:
        return self._records.get(extension.number) or FeatureRecord(
            extension=extension.number, dnd=extension.dnd, forward=extension.forward)

    def set_forward(self, extension: Extension, kind: ForwardKind, target: str | None, at: float) -> FeatureRecord:
        current = self.record(extension)
        return self._put(replace(current, forward=replace(current.forward, **{kind: target}), updated_at=at))

    def set_dnd(self, extension: Extension, on: bool, at: float) -> FeatureRecord:
        return self._put(replace(self.record(extension), dnd=on, updated_at=at))

    def _put(self, record: FeatureRecord) -> FeatureRecord:
        self._records[record.extension] = record
        if self._save is not None:
            self._save(record)
        return record

    def merge(self, records: Iterable[FeatureRecord]) -> None:
        """Take in the store's rows: each replaces ours unless ours is newer."""
        for record in records:
            mine = self._records.get(record.extension)
            if mine is None or record.updated_at >= mine.updated_at:
                self._records[record.extension] = record


Condition = Literal["always", "dnd", "busy", "unreachable"]


@dataclass(frozen=True, slots=True)
class Redirect:
    """Do not ring: forward to ``target`` (None: refuse, busy or unavailable)."""

    condition: Condition
    target: str | None


@dataclass(frozen=True, slots=True)
class ForwardOnFail:
    """Where a ringing extension's call goes when nobody takes it."""

    extension: str
    busy: str | None
    no_answer: str | None


def forward_before_ringing(settings: Settings, *, calls: int, max_calls: int, registered: bool) -> Redirect | None:
    """Whether a call to an extension rings it (None) or goes elsewhere:
    forward always first, then do not disturb and a full line (both are
    busy: the busy forward, else 486), then nothing registered (the
    unreachable forward, else the usual 480)."""
    forward = settings.forward
    if forward.always is not None:
        return Redirect("always", forward.always)
    if settings.dnd:
        return Redirect("dnd", forward.busy)
    if calls >= max_calls:
        return Redirect("busy", forward.busy)
    if not registered and forward.unreachable is not None:
        return Redirect("unreachable", forward.unreachable)
    return None
