"""The voicemail edge on a real store (SQLite and PostgreSQL) and a real
directory: a message kept is a WAV file and a row, and lights the lamp;
heard, deleted and purged messages put it out and take their files."""

from __future__ import annotations

import asyncio
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from pbx.presence.bodies import MailboxState
from pbx.routing.dialplan import Department, Dialplan, Extension
from pbx.routing.voicemail import VoicemailPlan
from pbx.store.voicemail import VoicemailStore
from pbx.voicemail.service import VoicemailService

AUDIO = (b"\x00\x10\x00\xf0" * 4000) * 3  # 3 s of 8 kHz 16-bit


def plan(directory: Path) -> Dialplan:
    people = {"2002": Extension(number="2002", name="Bob", department="ops", password="bob-secret-2002")}
    return Dialplan(domain="pbx.example.com", departments={"ops": Department(key="ops", name="Ops")},
                    extensions=people,
                    voicemail=VoicemailPlan(directory=str(directory), company={"retention_days": 7}))


def test_a_message_kept_heard_and_deleted(migrated: Engine, tmp_path: Path) -> None:
    lamps: list[tuple[str, MailboxState]] = []
    service = VoicemailService(VoicemailStore(migrated), plan(tmp_path / "vm"))
    service.changed = lambda mailbox: lamps.append((mailbox, service.state(mailbox)))

    async def scenario() -> None:
        service.deposit(mailbox="2002", audio=AUDIO, caller_number="2001", caller_name="Alice", call_uuid="u1")
        await service.settled()
        [message] = await service.messages("2002")
        with wave.open(str(tmp_path / "vm" / message.file), "rb") as stored:
            assert (stored.getframerate(), stored.getnchannels(), stored.getnframes()) == (8000, 1, 24000)
        assert message.seconds == 3.0 and message.caller_name == "Alice"
        audio = await service.message_audio("2002", message.id)
        assert audio is not None and audio.linear == AUDIO
        await service.mark_heard("2002", message.id)
        await service.delete("2002", message.id)
        assert not (tmp_path / "vm" / message.file).exists()
        assert await service.message_audio("2002", message.id) is None

    asyncio.run(scenario())
    assert lamps == [("2002", MailboxState(new=1)), ("2002", MailboxState(old=1)), ("2002", MailboxState())]


def test_purge_takes_old_messages_and_their_files(migrated: Engine, tmp_path: Path) -> None:
    store = VoicemailStore(migrated)
    service = VoicemailService(store, plan(tmp_path / "vm"))

    async def scenario() -> None:
        service.deposit(mailbox="2002", audio=AUDIO, caller_number="2001", caller_name=None, call_uuid="u1")
        await service.settled()
        [message] = await service.messages("2002")
        assert await service.purge(datetime.now(UTC) + timedelta(days=6)) == []
        gone = await service.purge(datetime.now(UTC) + timedelta(days=8))
        assert [m.id for m in gone] == [message.id]
        assert not (tmp_path / "vm" / message.file).exists()

    asyncio.run(scenario())


def test_a_pin_for_no_mailbox_is_just_wrong(migrated: Engine, tmp_path: Path) -> None:
    service = VoicemailService(VoicemailStore(migrated), plan(tmp_path / "vm"))

    async def scenario() -> None:
        assert await service.check_pin("2999", "1234") == "invalid"
        assert await service.check_pin("2002", "1234") == "invalid"  # no PIN set yet
        await service.set_pin("2002", "1357")
        assert await service.check_pin("2002", "1357") == "valid"
        assert await service.greeting("2002") is None

    asyncio.run(scenario())


def test_the_other_nodes_are_told_of_this_nodes_changes_only(migrated: Engine, tmp_path: Path) -> None:
    """A node tells the others (a NOTIFY in the app) when its own work
    changed a mailbox; reading back what another node changed, or the
    periodic read, tells nobody (no echo between nodes)."""
    told: list[list[str]] = []

    async def tell(mailboxes: list[str]) -> None:
        told.append(mailboxes)

    store = VoicemailStore(migrated)
    here = VoicemailService(store, plan(tmp_path / "vm"), tell=tell)

    async def scenario() -> None:
        here.deposit(mailbox="2002", audio=AUDIO, caller_number="2001", caller_name=None, call_uuid="u1")
        await here.settled()
        assert told == [["2002"]]
        [message] = await here.messages("2002")
        store.mark_heard("2002", message.id, datetime.now(UTC))  # as another node would
        await here.recount("2002", tell=False)  # what its notification makes this node do
        assert here.state("2002") == MailboxState(old=1) and told == [["2002"]]
        await here.delete("2002", message.id)
        assert told == [["2002"], ["2002"]]

    asyncio.run(scenario())
