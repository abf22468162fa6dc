"""The account code store for the call layer (:class:`pbx.calls.codes.CodeChecker`):
each look-up runs in a thread and answers on the event loop.

A database that fails is logged and answered as "not valid" (nothing was
counted against anyone): a caller is never let through on an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TypeVar

import structlog
from sqlalchemy.exc import SQLAlchemyError

from pbx.accountcodes.codes import StoredCode
from pbx.accountcodes.lockout import LockoutPolicy
from pbx.calls.codes import Verification
from pbx.store.codes import CodeStore

log = structlog.get_logger("pbx.accountcodes")

T = TypeVar("T")


class StoreChecker:
    def __init__(self, store: CodeStore, policy: Callable[[], LockoutPolicy]) -> None:
        self._store = store
        self._policy = policy
        self._tasks: set[asyncio.Task[None]] = set()

    def locked(self, source: str, then: Callable[[bool], None]) -> None:
        self._run(lambda now: self._store.locked(source, now), then, False)

    def verify(self, digits: str, source: str, then: Callable[[Verification], None]) -> None:
        policy = self._policy()

        def look_up(now: datetime) -> Verification:
            found = self._store.verify(digits, source, now, policy)
            if found.flagged is not None:
                log.warning("account_code_flagged", code=found.flagged.label, attempts=policy.flag_after)
            return Verification(outcome=found.outcome, code=found.code, reason=found.reason)

        self._run(look_up, then, Verification(outcome="invalid", reason="store_unavailable"))

    def refused(self, code: StoredCode, source: str) -> None:
        policy = self._policy()

        def count(now: datetime) -> None:
            flagged = self._store.refused(code.id, now, policy)
            if flagged is not None:
                log.warning("account_code_flagged", code=flagged.label, attempts=policy.flag_after, source=source)

        self._run(count, lambda _: None, None)

    def _run(self, work: Callable[[datetime], T], then: Callable[[T], None], failed: T) -> None:
        async def go() -> None:
            try:
                result = await asyncio.to_thread(work, datetime.now(timezone.utc))
            except SQLAlchemyError as error:
                log.error("account_code_store_failed", error=type(error).__name__)
                result = failed
            then(result)

        task = asyncio.get_running_loop().create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
