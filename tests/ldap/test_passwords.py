"""The periodic sync's new SIP passwords, held for one collection (pure)."""

from __future__ import annotations

from pbx.ldap.passwords import PendingPasswords


def test_passwords_are_handed_over_once_and_forgotten_when_too_old() -> None:
    pending = PendingPasswords(keep_seconds=100.0)
    pending.add("4001", "second", now=0.0)
    pending.add("4000", "first", now=50.0)
    pending.add("4002", "stale", now=0.0)
    pending.add("4002", "renewed", now=60.0)  # a later sync's password replaces the earlier one
    assert pending.take(now=120.0) == [("4000", "first"), ("4002", "renewed")]  # 4001's is 120 s old
    assert pending.take(now=121.0) == []
