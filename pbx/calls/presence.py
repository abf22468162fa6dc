"""Who is on a call, on this node: what ``skip_busy`` hunt groups ask.

An extension is on a call from the moment it places one until that call
ends, and from the moment it answers one until that call ends, whichever
group (if any) the call came through: a member in several groups is busy
for all of them. Each call keeps the extensions it holds and gives them back
once, when it ends.
"""

from __future__ import annotations


class Presence:
    def __init__(self) -> None:
        self._calls: dict[str, int] = {}

    def hold(self, held: tuple[str, ...], extension: str) -> tuple[str, ...]:
        """``held`` plus ``extension``, now counted as on one more call."""
        if extension in held:
            return held
        self._calls[extension] = self._calls.get(extension, 0) + 1
        return (*held, extension)

    def release(self, held: tuple[str, ...]) -> tuple[str, ...]:
        """Give back what a call held; returns the empty tuple to keep."""
        for extension in held:
            left = self._calls.get(extension, 0) - 1
            if left > 0:
                self._calls[extension] = left
            else:
                self._calls.pop(extension, None)
        return ()

    def busy(self, extension: str) -> bool:
        return extension in self._calls

    def calls(self, extension: str) -> int:
        """How many calls ``extension`` is on (against its ``max_calls``)."""
        return self._calls.get(extension, 0)
