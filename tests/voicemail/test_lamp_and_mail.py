"""The voicemail lamp's body (RFC 3842), who may watch a mailbox, and the
e-mail of a new message (pure: built, not sent)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

from pbx.presence.bodies import MailboxState, message_summary
from pbx.presence.subscription import PACKAGES, may_watch
from pbx.routing.dialplan import Department, Dialplan, Extension
from pbx.voicemail.mail import MessageMail, message_mail


def test_the_summary_lights_the_lamp_only_for_new_messages() -> None:
    assert message_summary("sip:2002@pbx.example.com", MailboxState(new=2, old=5)) == (
        b"Messages-Waiting: yes\r\nMessage-Account: sip:2002@pbx.example.com\r\nVoice-Message: 2/5 (0/0)\r\n")
    assert message_summary("sip:2002@pbx.example.com", MailboxState(new=0, old=1)).startswith(
        b"Messages-Waiting: no\r\n")
    assert PACKAGES["message-summary"] == "application/simple-message-summary"


def test_only_the_owner_may_watch_a_mailbox() -> None:
    people = {n: Extension(number=n, name=n, department="ops", password=f"secret-{n}") for n in ("2001", "2002")}
    plan = Dialplan(domain="pbx.example.com", departments={"ops": Department(key="ops", name="Ops")},
                    extensions=people)
    assert may_watch(plan, people["2002"], people["2002"], "message-summary")
    assert not may_watch(plan, people["2001"], people["2002"], "message-summary")
    assert may_watch(plan, people["2001"], people["2002"], "dialog")  # busy lamps stay company-wide


def test_the_mail_carries_the_message_as_a_wav_attachment() -> None:
    mail = MessageMail(mailbox="2002", owner="Bob", to="bob@example.com", sender="pbx@example.com",
                       caller_number="0912345678", caller_name="Chị Lan", seconds=12.4,
                       received_at=datetime(2026, 12, 7, 9, 30, tzinfo=UTC), wav=Path("/x/2002/abc.wav"))
    built = message_from_bytes(message_mail(mail, b"RIFF....WAVE").as_bytes(), policy=policy.default)
    assert built["To"] == "bob@example.com" and built["From"] == "pbx@example.com"
    assert str(built["Subject"]) == "New voicemail from Chị Lan (0912345678) (12 s)"
    parts = [part for part in built.walk() if part.get_content_type() == "audio/wav"]
    assert len(parts) == 1 and parts[0].get_filename() == "abc.wav"
    assert parts[0].get_payload(decode=True) == b"RIFF....WAVE"
    body = next(p for p in built.walk() if p.get_content_type() == "text/plain").get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    assert "12 seconds" in text and "*97" in text


def test_a_presented_name_cannot_add_headers() -> None:
    mail = MessageMail(mailbox="2002", owner="Bob", to="bob@example.com", sender="pbx@example.com",
                       caller_number="0912\r\nBcc: x@evil.example", caller_name="Eve\nBcc: y@evil.example",
                       seconds=1.0, received_at=datetime(2026, 12, 7, tzinfo=UTC), wav=Path("/x/a.wav"))
    built = message_from_bytes(message_mail(mail, b"RIFF").as_bytes(), policy=policy.default)
    assert built["Bcc"] is None and "Eve Bcc: y@evil.example" in str(built["Subject"])
