"""Random tokens (tags, branches, call ids) from a pooled read of the OS CSPRNG.

``secrets.token_hex`` reads ``os.urandom`` on every call, and CPython lets go
of the GIL around that read. In the server the CDR writer thread is usually
waiting for the GIL, takes it, and the event loop then waits up to the switch
interval to get it back: a few tags and branches per call cost more in
waiting than in randomness. Reading 4 KiB at a time keeps the same source
(the kernel's CSPRNG, as RFC 3261 §19.3 wants for tags and branches) and
makes one read serve hundreds of tokens.

Each thread draws from its own pool, and a forked child starts a new one,
so no two callers are ever handed the same bytes.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Final

POOL_BYTES: Final = 4096


class _Pool(threading.local):
    def __init__(self) -> None:
        self.data = b""
        self.offset = 0


_pool = _Pool()


def _forget_pool() -> None:
    global _pool
    _pool = _Pool()


os.register_at_fork(after_in_child=_forget_pool)


def random_bytes(count: int) -> bytes:
    """``count`` bytes from the OS CSPRNG, never handed out twice."""
    pool = _pool
    start = pool.offset
    end = start + count
    if end > len(pool.data):
        pool.data = os.urandom(max(POOL_BYTES, count))
        start, end = 0, count
    pool.offset = end
    return pool.data[start:end]


def random_hex(count: int) -> str:
    """``count`` random bytes as ``2 * count`` lowercase hex digits."""
    return random_bytes(count).hex()


def random_uuid() -> uuid.UUID:
    """A version 4 (random) UUID, as ``uuid.uuid4`` but from the pool."""
    return uuid.UUID(bytes=random_bytes(16), version=4)
