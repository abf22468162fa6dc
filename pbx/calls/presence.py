"""Who is on a call, and whose phones ring, on this node: what
``skip_busy`` hunt groups, call waiting's limit and the busy lamps ask.

An extension is on a call from the moment it places one until that call
ends, and from the moment it answers one until that call ends, whichever
group (if any) the call came through: a member in several groups is busy
for all of them. Each call keeps the extensions it holds and gives them back
once, when it ends.

An extension rings while an INVITE to one of its phones waits for an
answer: :meth:`Presence.ring` counts it and returns what gives it back
(the leg calls it when it closes, however it closes).

Every change is reported to ``listener`` (the presence service, which
tells subscribers); the default listener does nothing. A change of this
node's calls is also reported to ``shared`` with the new count (several
nodes: the edge writes it to the store), and what the other nodes report
comes back through :meth:`Presence.elsewhere`, so a member on a call through
another node is busy here too. Ringing stays per node.
"""

from __future__ import annotations

from collections.abc import Callable


def _nobody(extension: str) -> None:
    return None


def _one_less(counts: dict[str, int], extension: str) -> None:
    """Count one less for ``extension``; no entry at zero (the maps stay
    as small as what is going on)."""
    left = counts.get(extension, 0) - 1
    if left > 0:
        counts[extension] = left
    else:
        counts.pop(extension, None)


class Presence:
    def __init__(self) -> None:
        self._calls: dict[str, int] = {}
        self._ringing: dict[str, int] = {}
        self.listener: Callable[[str], None] = _nobody
        """Called with an extension whose calls or ringing changed."""
        self.shared: Callable[[str, int], None] | None = None
        """Called with an extension and this node's new count of its calls."""
        self._elsewhere: dict[str, int] = {}

    def hold(self, held: tuple[str, ...], extension: str) -> tuple[str, ...]:
        """``held`` plus ``extension``, now counted as on one more call."""
        if extension in held:
            return held
        self._calls[extension] = self._calls.get(extension, 0) + 1
        self._changed(extension)
        return (*held, extension)

    def release(self, held: tuple[str, ...]) -> tuple[str, ...]:
        """Give back what a call held; returns the empty tuple to keep."""
        for extension in held:
            _one_less(self._calls, extension)
            self._changed(extension)
        return ()

    def _changed(self, extension: str) -> None:
        if self.shared is not None:
            self.shared(extension, self._calls.get(extension, 0))
        self.listener(extension)

    def elsewhere(self, counts: dict[str, int]) -> None:
        """The other nodes' calls of these extensions now (0: none)."""
        for extension, count in counts.items():
            if count == self._elsewhere.get(extension, 0):
                continue
            if count > 0:
                self._elsewhere[extension] = count
            else:
                self._elsewhere.pop(extension, None)
            self.listener(extension)

    def ring(self, extension: str) -> Callable[[], None]:
        """One more phone of ``extension`` rings; call the result (once)
        when it stops."""
        self._ringing[extension] = self._ringing.get(extension, 0) + 1
        self.listener(extension)
        done = False

        def stop() -> None:
            nonlocal done
            if done:
                return
            done = True
            _one_less(self._ringing, extension)
            self.listener(extension)

        return stop

    def elsewhere_now(self) -> list[str]:
        """The extensions on a call through another node, as last told."""
        return list(self._elsewhere)

    def busy(self, extension: str) -> bool:
        return extension in self._calls or extension in self._elsewhere

    def calls(self, extension: str) -> int:
        """How many calls ``extension`` is on (against its ``max_calls``),
        on every node."""
        return self._calls.get(extension, 0) + self._elsewhere.get(extension, 0)

    def ringing(self, extension: str) -> int:
        """How many of ``extension``'s phones ring now."""
        return self._ringing.get(extension, 0)
