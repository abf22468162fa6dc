"""``pbx voicemail list|purge`` on a database pbx serve wrote (SQLite and
PostgreSQL, through the store tests' fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine

from pbx.cli.voicemail import voicemail
from pbx.store.voicemail import VoicemailStore


def test_list_shows_each_message_and_purge_removes_old_ones_with_their_files(
        db_url: str, migrated: Engine, tmp_path: Path) -> None:
    store = VoicemailStore(migrated)
    now = datetime.now(UTC)
    for mailbox, age, name in (("2002", 40, "2002/old.wav"), ("2002", 0, "2002/new.wav"),
                               ("2003", 40, "2003/kept.wav")):
        (tmp_path / "vm" / mailbox).mkdir(parents=True, exist_ok=True)
        (tmp_path / "vm" / name).write_bytes(b"RIFF")
        store.add(mailbox=mailbox, caller_number="0912345678", caller_name="Lan", call_uuid="u" * 32,
                  received_at=now - timedelta(days=age), seconds=3.0, file=name)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"domain: pbx.example.com\nvoicemail: {{directory: {tmp_path / 'vm'}}}\n"
                    "departments:\n  ops: {name: Ops}\nextensions:\n"
                    "  2002: {name: Bob, department: ops, password: bob-secret-2002}\n"
                    "  2003: {name: Cy, department: ops, password: cy-secret-2003, voicemail: {retention_days: 90}}\n")
    runner = CliRunner()
    listed = runner.invoke(voicemail, ["list", "--db", db_url, "--mailbox", "2002"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 3 and "0912345678 Lan" in lines[1] and lines[1].rstrip().endswith("2002/old.wav")
    purged = runner.invoke(voicemail, ["purge", "--db", db_url, "--dialplan", str(plan)])
    assert purged.exit_code == 0 and purged.output == "purged 1 message(s)\n", purged.output
    assert not (tmp_path / "vm" / "2002" / "old.wav").exists()
    assert (tmp_path / "vm" / "2002" / "new.wav").exists() and (tmp_path / "vm" / "2003" / "kept.wav").exists()
    assert [m.file for m in store.all_messages()] == ["2002/new.wav", "2003/kept.wav"]


def test_list_on_a_missing_database_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(voicemail, ["list", "--db", f"sqlite:///{tmp_path / 'none.sqlite3'}"])
    assert result.exit_code == 1 and "no database file" in result.output


def test_pin_is_asked_twice_held_to_the_policy_and_ends_a_lock_out(db_url: str, migrated: Engine,
                                                                  tmp_path: Path) -> None:
    from pbx.accountcodes.lockout import LockoutPolicy

    plan = tmp_path / "plan.yaml"
    plan.write_text("domain: pbx.example.com\ndepartments:\n  ops: {name: Ops}\nextensions:\n"
                    "  2002: {name: Bob, department: ops, password: bob-secret-2002}\n"
                    "  2003: {name: Cy, department: ops, password: cy-secret-2003, voicemail: {enabled: false}}\n")
    store, policy, now = VoicemailStore(migrated), LockoutPolicy(failures=1), datetime.now(UTC)
    store.set_pin("2002", "1357", now)
    assert store.check_pin("2002", "0000", now, policy) == "locked"
    runner = CliRunner()
    weak = runner.invoke(voicemail, ["pin", "2002", "--db", db_url, "--dialplan", str(plan)], input="1111\n1111\n")
    assert weak.exit_code == 1 and "4 to 8 digits" in weak.output
    done = runner.invoke(voicemail, ["pin", "2002", "--db", db_url, "--dialplan", str(plan)], input="2468\n2468\n")
    assert done.exit_code == 0 and "PIN of mailbox 2002 set" in done.output and "2468" not in done.output
    assert store.check_pin("2002", "2468", now, policy) == "valid"  # the lock-out ended with the new PIN
    for mailbox, why in (("2003", "has no mailbox"), ("2999", "no extension 2999")):
        refused = runner.invoke(voicemail, ["pin", mailbox, "--db", db_url, "--dialplan", str(plan)],
                                input="2468\n2468\n")
        assert refused.exit_code == 2 and why in refused.output
