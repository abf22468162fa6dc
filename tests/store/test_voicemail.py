"""voicemail_messages and voicemail_boxes on SQLite and PostgreSQL: what
one node writes another reads (messages, lamps' counts, PINs and their
lock-out), and old messages go at their mailbox's retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from pbx.accountcodes.lockout import LockoutPolicy
from pbx.store.voicemail import Counts, VoicemailStore

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
POLICY = LockoutPolicy(failures=3, window=600, lock_seconds=900)


def leave(store: VoicemailStore, mailbox: str, at: datetime, caller: str = "2001") -> int:
    return store.add(mailbox=mailbox, caller_number=caller, caller_name="Alice", call_uuid="c" * 32,
                     received_at=at, seconds=4.25, file=f"{mailbox}/{at.timestamp():.0f}.wav")


def test_messages_are_listed_new_first_and_counted_for_the_lamp(migrated: Engine) -> None:
    store, other_node = VoicemailStore(migrated), VoicemailStore(migrated)
    first = leave(store, "2002", NOW)
    second = leave(store, "2002", NOW + timedelta(minutes=1), caller="0912345678")
    leave(store, "2003", NOW)
    assert other_node.counts() == {"2002": Counts(new=2), "2003": Counts(new=1)}
    assert store.mark_heard("2002", first, NOW + timedelta(minutes=5)) is True
    assert store.mark_heard("2002", first, NOW + timedelta(minutes=6)) is False  # heard once
    listed = other_node.messages("2002")
    assert [(m.id, m.heard) for m in listed] == [(second, False), (first, True)]
    assert listed[0].caller_number == "0912345678" and listed[0].seconds == 4.25
    assert other_node.counts("2002") == {"2002": Counts(new=1, old=1)}


def test_a_message_is_deleted_only_from_its_own_mailbox(migrated: Engine) -> None:
    store = VoicemailStore(migrated)
    message = leave(store, "2002", NOW)
    assert store.delete("2003", message) is None  # someone else's mailbox: untouched
    gone = store.delete("2002", message)
    assert gone is not None and gone.file == f"2002/{NOW.timestamp():.0f}.wav"
    assert store.messages("2002") == [] and store.counts() == {}


def test_purge_keeps_each_mailbox_for_its_own_retention(migrated: Engine) -> None:
    store = VoicemailStore(migrated)
    old = leave(store, "2002", NOW - timedelta(days=10))
    kept = leave(store, "2003", NOW - timedelta(days=10))
    fresh = leave(store, "2002", NOW - timedelta(hours=2))
    orphan = leave(store, "2999", NOW - timedelta(days=400))
    retention = {"2002": 7, "2003": 30}
    gone = store.purge(NOW, retention.get)
    assert [m.id for m in gone] == [old]
    assert {m.id for m in store.all_messages()} == {kept, fresh, orphan}  # a mailbox not in the plan: kept


def test_wrong_pins_lock_the_box_on_every_node(migrated: Engine) -> None:
    store, other_node = VoicemailStore(migrated), VoicemailStore(migrated)
    assert store.check_pin("2002", "1357", NOW, POLICY) == "invalid"  # no PIN set yet: nothing opens it
    store.set_pin("2002", "1357", NOW)
    assert store.check_pin("2002", "1357", NOW, POLICY) == "valid"
    assert store.check_pin("2002", "0000", NOW, POLICY) == "invalid"
    assert other_node.check_pin("2002", "1111", NOW + timedelta(seconds=1), POLICY) == "invalid"
    assert store.check_pin("2002", "2222", NOW + timedelta(seconds=2), POLICY) == "locked"
    # Locked: even the right PIN is not looked at until the lock ends.
    assert other_node.check_pin("2002", "1357", NOW + timedelta(seconds=60), POLICY) == "locked"
    assert store.check_pin("2002", "1357", NOW + timedelta(seconds=903), POLICY) == "valid"


def test_a_right_pin_clears_the_count_of_wrong_ones(migrated: Engine) -> None:
    store = VoicemailStore(migrated)
    store.set_pin("2002", "1357", NOW)
    for second in range(2):
        assert store.check_pin("2002", "9999", NOW + timedelta(seconds=second), POLICY) == "invalid"
    assert store.check_pin("2002", "1357", NOW + timedelta(seconds=3), POLICY) == "valid"
    for second in range(2):
        assert store.check_pin("2002", "9999", NOW + timedelta(seconds=4 + second), POLICY) == "invalid"


def test_the_pin_is_stored_hashed_and_the_greeting_by_file_name(migrated: Engine) -> None:
    store = VoicemailStore(migrated)
    assert store.has_pin("2002") is False and store.greeting("2002") is None
    store.set_pin("2002", "246810", NOW)
    store.set_greeting("2002", "2002/greeting-1.wav", NOW)
    with migrated.connect() as conn:
        stored = conn.exec_driver_sql("SELECT pin_hash FROM voicemail_boxes").scalar_one()
    assert "246810" not in stored and stored.startswith("$argon2id$")
    assert store.has_pin("2002") is True and store.greeting("2002") == "2002/greeting-1.wav"
    assert store.check_pin("2002", "246810", NOW, POLICY) == "valid"  # the greeting kept the PIN
