"""The account code store on SQLite and PostgreSQL: codes only as keyed
hashes, found by index; usable, disabled, expired; lock-out after N wrong
codes shared through the database; a code flagged at M refused uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from pbx.accountcodes.lockout import LockoutPolicy
from pbx.store.codes import CodeInUse, CodeStore, NoSuchCode

KEY = bytes(range(32))
NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
POLICY = LockoutPolicy(failures=3, window=60, lock_seconds=300, flag_after=2)


@pytest.fixture
def store(migrated: Engine) -> CodeStore:
    return CodeStore(migrated, KEY)


def test_codes_are_stored_as_keyed_hashes_only(store: CodeStore, migrated: Engine) -> None:
    code = store.add("483948", owner="Nguyễn Văn An", class_of_service="management", now=NOW,
                     employee_id="NV-001", department="management")
    with migrated.connect() as conn:
        row = conn.execute(text("SELECT * FROM account_codes")).mappings().one()
    assert "483948" not in " ".join(str(value) for value in row.values())
    assert row["digest"] != "483948" and len(row["digest"]) == 64
    assert store.find(str(code.id)) == store.find(f"#{code.id}") == store.find("Nguyễn Văn An") == [code]
    with pytest.raises(CodeInUse):
        store.add("483948", owner="Someone else", class_of_service="staff", now=NOW)
    # Another server secret: the same digits are another digest, so nothing is found.
    assert CodeStore(migrated, bytes(32)).verify("483948", "ext:1099", NOW, POLICY).outcome == "invalid"


def test_a_right_code_is_valid_and_a_disabled_or_expired_one_is_not(store: CodeStore) -> None:
    code = store.add("483948", owner="An", class_of_service="management", now=NOW)
    temporary = store.add("602826", owner="Project X", class_of_service="staff", now=NOW,
                          valid_until=NOW + timedelta(days=1))
    found = store.verify("483948", "ext:1099", NOW, POLICY)
    assert (found.outcome, found.code) == ("valid", code)
    assert store.verify("602826", "ext:1099", NOW, POLICY).outcome == "valid"
    assert store.verify("602826", "ext:1099", NOW + timedelta(days=2), POLICY).reason == "expired"
    store.set_status(code.id, "disabled", NOW)
    refused = store.verify("483948", "ext:1098", NOW, POLICY)
    assert (refused.outcome, refused.reason) == ("invalid", "disabled")
    store.set_status(code.id, "active", NOW)
    assert store.verify("483948", "ext:1098", NOW, POLICY).outcome == "valid"
    store.rotate(temporary.id, "715093", NOW)
    assert store.verify("602826", "ext:1097", NOW, POLICY).reason == "unknown"
    assert store.verify("715093", "ext:1097", NOW, POLICY).outcome == "valid"
    store.remove(temporary.id)
    with pytest.raises(NoSuchCode):
        store.remove(temporary.id)


def test_wrong_codes_lock_the_source_for_every_node(store: CodeStore, migrated: Engine) -> None:
    store.add("483948", owner="An", class_of_service="management", now=NOW)
    other_node = CodeStore(migrated, KEY)
    outcomes = [store.verify("111222", "ext:1099", NOW, POLICY).outcome,
                other_node.verify("333444", "ext:1099", NOW + timedelta(seconds=1), POLICY).outcome,
                store.verify("555666", "ext:1099", NOW + timedelta(seconds=2), POLICY).reason]
    assert outcomes == ["invalid", "invalid", "locked_now"]
    assert other_node.locked("ext:1099", NOW + timedelta(seconds=3))
    assert not other_node.locked("ext:1098", NOW + timedelta(seconds=3))
    # While locked even the right code is not let through.
    assert other_node.verify("483948", "ext:1099", NOW + timedelta(seconds=4), POLICY).outcome == "locked"
    assert [state.source for state in store.lockouts(NOW + timedelta(seconds=5))] == ["ext:1099"]
    assert not store.locked("ext:1099", NOW + timedelta(seconds=303))
    assert store.unlock("ext:1099") and not store.unlock("ext:1099")


def test_a_code_refused_again_and_again_is_flagged(store: CodeStore) -> None:
    code = store.add("483948", owner="An", class_of_service="staff", now=NOW)
    store.set_status(code.id, "disabled", NOW)
    first = store.verify("483948", "ext:1001", NOW, POLICY)
    second = store.verify("483948", "ext:1002", NOW, POLICY)
    assert first.flagged is None and second.flagged is not None and second.flagged.id == code.id
    assert store.refused(code.id, NOW, POLICY) is None  # flagged once only
    (after,) = store.find(str(code.id))
    assert after.failed_attempts == 3 and after.flagged_at == NOW


def test_guesses_made_at_once_from_many_calls_are_each_counted(store: CodeStore) -> None:
    """A guesser placing many calls at once (a burst of dial-prefix calls,
    each looked up in its own thread) gets no more tries than one placing
    them one by one: every lookup reads and writes the source's count in
    one transaction, so none is lost to another."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    store.add("483948", owner="An", class_of_service="management", now=NOW)
    policy = LockoutPolicy(failures=5, window=600, lock_seconds=600, flag_after=100)
    guesses = [f"{n:06d}" for n in range(200101, 200141)]
    start = Barrier(8)

    def guess(digits: str) -> str:
        if digits in guesses[:8]:
            start.wait(timeout=10)
        return store.verify(digits, "ext:1099", NOW, policy).outcome

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(guess, guesses))
    # Checked against the codes: only the first four; the fifth locked the
    # phone, every later one found it locked.
    assert outcomes.count("invalid") == policy.failures - 1, outcomes
    assert outcomes.count("locked") == len(guesses) - policy.failures + 1, outcomes


def test_a_code_refused_from_many_phones_at_once_is_flagged_once(store: CodeStore) -> None:
    """Refusals of one code counted at the same moment (several phones, or
    nodes) must not step over the threshold unseen: the code is flagged,
    and only once."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    code = store.add("483948", owner="An", class_of_service="staff", now=NOW)
    policy = LockoutPolicy(failures=100, window=600, lock_seconds=600, flag_after=3)
    start = Barrier(8)

    def refuse(n: int) -> bool:
        if n < 8:
            start.wait(timeout=10)
        return store.refused(code.id, NOW, policy) is not None

    with ThreadPoolExecutor(max_workers=8) as pool:
        flagged = list(pool.map(refuse, range(24)))
    assert flagged.count(True) == 1, flagged
    (after,) = store.find(str(code.id))
    assert after.failed_attempts == 24 and after.flagged_at == NOW


def test_a_store_with_another_secret_is_refused_while_codes_exist(store: CodeStore, migrated: Engine) -> None:
    from pbx.store.codes import SecretMismatch

    store.check_secret(NOW)
    code = store.add("483948", owner="An", class_of_service="staff", now=NOW)
    store.check_secret(NOW)  # the same secret again: fine
    stranger = CodeStore(migrated, bytes(32))
    with pytest.raises(SecretMismatch) as refused:
        stranger.check_secret(NOW)
    assert "another secret" in str(refused.value)
    # Without codes a database takes the secret it is given (a fresh start).
    store.remove(code.id)
    stranger.check_secret(NOW)
    stranger.add("602817", owner="B", class_of_service="staff", now=NOW)
    with pytest.raises(SecretMismatch):
        store.check_secret(NOW)


def test_codes_made_before_the_fingerprint_take_only_the_servers_secret(store: CodeStore, migrated: Engine) -> None:
    from pbx.store.codes import SECRET, SecretMismatch

    store.add("483948", owner="An", class_of_service="staff", now=NOW)
    with migrated.begin() as conn:
        conn.execute(SECRET.delete())  # as a database upgraded with codes in it
    CodeStore(migrated, bytes(32)).check_secret(NOW, adopt=False)  # `pbx codes` elsewhere: not taken as the secret
    store.check_secret(NOW)  # the server's start takes its own
    with pytest.raises(SecretMismatch):
        CodeStore(migrated, bytes(32)).check_secret(NOW, adopt=False)
