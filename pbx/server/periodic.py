"""A callback run every so many seconds on the event loop, until stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Periodic:
    """Calls ``tick`` every ``every`` seconds on ``loop`` (the next run is
    scheduled before this one, so a tick that raises does not stop it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, every: float, tick: Callable[[], None]) -> None:
        self._loop = loop
        self._every = every
        self._tick = tick
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = self._loop.call_later(self._every, self._run)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        self._handle = self._loop.call_later(self._every, self._run)
        self._tick()
