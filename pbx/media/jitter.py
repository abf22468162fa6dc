"""A small jitter buffer for audio we decode ourselves (in-band DTMF now,
recording later), pure.

Packets go in by extended sequence number in any order; frames come out in
order once ``depth`` newer packets have arrived (``depth`` × 20 ms of
delay), with None standing for a packet that never came. A packet older
than what was already released is too late and is dropped; so is a
duplicate. A jump far ahead (the phone was silent, or restarted) re-syncs
instead of releasing a long run of losses.
"""

from __future__ import annotations

from typing import Final

MAX_GAP: Final = 50
"""A jump of more than this many packets (1 s) re-syncs the buffer."""


class JitterBuffer:
    def __init__(self, depth: int = 3) -> None:
        if depth < 0:
            raise ValueError("depth must be >= 0")
        self.depth = depth
        self.late = 0
        self.lost = 0
        self._frames: dict[int, bytes] = {}
        self._next: int | None = None        # next sequence number to release
        self._highest: int | None = None

    def reset(self) -> None:
        """The stream restarted: forget ordering (the frames held are lost)."""
        self._frames.clear()
        self._next = self._highest = None

    def push(self, sequence: int, payload: bytes) -> list[bytes | None]:
        """Add a packet; return the frames now due, in order."""
        if self._next is None:
            self._next = self._highest = sequence
        assert self._highest is not None
        if sequence < self._next or sequence in self._frames:
            self.late += 1
            return []
        if sequence - self._highest > MAX_GAP:
            self._frames.clear()
            self._next = sequence
        self._frames[sequence] = payload
        self._highest = max(self._highest, sequence) if sequence - self._highest <= MAX_GAP else sequence
        return self._release()

    def _release(self) -> list[bytes | None]:
        assert self._next is not None and self._highest is not None
        out: list[bytes | None] = []
        while self._highest - self._next >= self.depth:
            frame = self._frames.pop(self._next, None)
            if frame is None:
                self.lost += 1
            out.append(frame)
            self._next += 1
        return out

    def flush(self) -> list[bytes | None]:
        """Everything still held, in order (at the end of a call)."""
        if self._next is None or self._highest is None:
            return []
        out: list[bytes | None] = [self._frames.get(s) for s in range(self._next, self._highest + 1)]
        self.reset()
        return out
