"""RTP port pairs from a configured range, pure.

RTP takes the even port, RTCP the odd one above it (RFC 3550 §11). Pairs
are handed out round-robin rather than lowest-first, so a port freed by a
call that just ended is the last to be reused: late packets of the old
call (a phone still sending after BYE) do not land in a new one. A port
the operating system refused (something else holds it) is set aside with
:meth:`PortAllocator.unusable` and skipped until the range has been
walked once more.
"""

from __future__ import annotations


class PortsExhausted(RuntimeError):
    """Every pair of the range is in use: the call cannot carry media."""


class PortAllocator:
    def __init__(self, first: int, last: int) -> None:
        start = first + (first % 2)             # first even port
        if not 1024 <= start < last <= 65535:
            raise ValueError(f"RTP port range {first}-{last} must hold at least one even/odd pair within 1024-65535")
        self.first, self.last = start, last
        self._size = (last - start + 1) // 2   # pairs that fit
        self._next = 0
        self._in_use: set[int] = set()
        self._unusable: set[int] = set()

    @property
    def capacity(self) -> int:
        return self._size

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self) -> tuple[int, int]:
        """An (RTP, RTCP) pair; :class:`PortsExhausted` when none is free."""
        for _ in range(self._size):
            index = self._next
            self._next = (self._next + 1) % self._size
            if index == 0:
                self._unusable.clear()          # a new walk of the range: try them again
            port = self.first + 2 * index
            if port not in self._in_use and port not in self._unusable:
                self._in_use.add(port)
                return port, port + 1
        raise PortsExhausted(f"all {self._size} RTP port pairs of {self.first}-{self.last} are in use "
                             f"({len(self._unusable)} refused by the system)")

    def release(self, rtp_port: int) -> None:
        """Give a pair back (idempotent: closing twice is harmless)."""
        self._in_use.discard(rtp_port)

    def unusable(self, rtp_port: int) -> None:
        """The system would not bind this pair: release it and skip it for now."""
        self._in_use.discard(rtp_port)
        self._unusable.add(rtp_port)
