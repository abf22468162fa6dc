"""Pooled random tokens: right length, never repeated, new pool after fork."""

from __future__ import annotations

import os
import re

from pbx.sip.dialog import new_branch, new_tag
from pbx.sip.tokens import POOL_BYTES, random_bytes, random_hex, random_uuid


def test_tokens_have_their_length_and_do_not_repeat_across_refills() -> None:
    count = 3 * POOL_BYTES // 8 + 7  # crosses several refills of the pool
    tokens = [random_hex(8) for _ in range(count)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", t) for t in tokens)
    assert len(set(tokens)) == count
    assert len(random_bytes(POOL_BYTES + 1)) == POOL_BYTES + 1  # larger than a pool
    assert re.fullmatch(r"[0-9a-f]{10}", new_tag())
    assert re.fullmatch(r"z9hG4bK[0-9a-f]{16}", new_branch())  # RFC 3261 §8.1.1.7 cookie
    uuids = {random_uuid() for _ in range(1000)}
    assert len(uuids) == 1000 and {u.version for u in uuids} == {4}


def test_a_forked_child_does_not_repeat_the_parents_next_tokens() -> None:
    random_hex(1)  # the pool is filled and part used
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(writer, random_hex(16).encode())
        os._exit(0)
    os.close(writer)
    child = os.read(reader, 64).decode()
    os.close(reader)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != random_hex(16)
