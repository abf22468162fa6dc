"""One rule consulted on the way to a routing decision.

Kept apart from :mod:`pbx.routing.engine` so the pure helpers the engine
uses (rights, schedules) can return steps without importing the engine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One rule consulted on the way to a decision: what ``pbx explain``
    prints and what the decision log line carries."""

    rule: str
    """Where the rule lives, e.g. ``number_plans.vietnam[4]`` or
    ``class_of_service.sales.allow``; :attr:`Dialplan.places` maps it to
    ``file:line:col``."""
    outcome: str
    """What it said, in words for an admin."""
