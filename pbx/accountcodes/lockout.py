"""Counting wrong account codes: when a phone is locked out, and when a
code is flagged.

Pure rules over a small state the store keeps in the database, so every
node of one database counts the same failures (:mod:`pbx.store.codes`
reads the state, applies these functions and writes the result in one
transaction).

- Per source (an extension, or a trunk's or an address's tag): wrong codes
  are counted in a fixed window that opens at the first failure; the
  ``failures``-th failure within ``window`` seconds locks the source for
  ``lock_seconds``. While locked, codes from it are not even looked up (a
  guesser learns nothing, right or wrong) and its callers hear that the
  phone is locked. A right code clears the count: a person who mistypes now
  and then never adds up to a lock-out.
- Per code: every refused use of an existing code (disabled, expired, not
  yet valid, used from a locked phone, or valid but asked to place a call
  its rights do not cover) counts against that code, system-wide and never
  reset by itself; at ``flag_after`` the code is flagged once, for an
  administrator to look at (``pbx codes list`` shows it). A flagged code
  still works: flagging must not let a stranger disable a colleague's code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class LockoutPolicy:
    failures: int = 5
    """Wrong codes from one source that lock it."""
    window: int = 600
    """Seconds in which they must fall."""
    lock_seconds: int = 900
    """How long the source stays locked."""
    flag_after: int = 10
    """Refused uses of one code, system-wide, that flag it."""

    def __post_init__(self) -> None:
        if min(self.failures, self.window, self.lock_seconds, self.flag_after) < 1:
            raise ValueError("account code lock-out settings must all be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceState:
    """Wrong codes from one source (an extension: ``ext:1099``)."""

    source: str
    failures: int = 0
    window_started_at: datetime | None = None
    locked_until: datetime | None = None


def locked(state: SourceState | None, now: datetime) -> bool:
    """Is the source locked at ``now``?"""
    return state is not None and state.locked_until is not None and now < state.locked_until


def after_failure(state: SourceState | None, source: str, now: datetime,
                  policy: LockoutPolicy) -> tuple[SourceState, bool]:
    """The state after one more wrong code from ``source`` at ``now``, and
    whether this failure locked it."""
    current = state or SourceState(source=source)
    started = current.window_started_at
    if started is None or now - started >= timedelta(seconds=policy.window) or locked(current, now):
        count, started = 1, now
    else:
        count = current.failures + 1
    if count >= policy.failures:
        # Locked: the count starts again when the lock ends, so the next
        # guesser gets `failures` tries, not one.
        return replace(current, failures=0, window_started_at=None,
                       locked_until=now + timedelta(seconds=policy.lock_seconds)), True
    return replace(current, failures=count, window_started_at=started), False


def after_success(state: SourceState | None) -> SourceState | None:
    """The state after a right code: the count is cleared, a lock stays."""
    if state is None or (state.failures == 0 and state.window_started_at is None):
        return state
    return replace(state, failures=0, window_started_at=None)


def flags_now(attempts: int, flagged: bool, policy: LockoutPolicy) -> bool:
    """Is a code now at ``attempts`` refused uses, ``flagged`` already or
    not, to be flagged? At the threshold or past it: refusals counted at
    the same moment elsewhere may have stepped over the exact number."""
    return not flagged and attempts >= policy.flag_after
