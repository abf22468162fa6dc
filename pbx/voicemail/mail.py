"""A new message by e-mail, with its audio attached.

:func:`message_mail` builds the e-mail (pure: :mod:`email.message`);
:func:`send_mail` hands it to the SMTP server of the dialplan
(``voicemail.smtp``) with :mod:`smtplib`, which blocks: the voicemail
service runs it in a thread, never on the event loop. A failure is the
caller's to log: the message itself is kept whatever becomes of the mail.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from pbx.routing.voicemail import SmtpSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageMail:
    mailbox: str
    owner: str
    to: str
    sender: str
    caller_number: str
    caller_name: str | None
    received_at: datetime
    seconds: float
    wav: Path


def _printable(text: str) -> str:
    """A caller's name or number as presented (from a trunk: anything) made
    safe for a header: no control characters, bounded length."""
    return "".join(char if char.isprintable() else " " for char in text)[:100]


def message_mail(mail: MessageMail, audio: bytes) -> EmailMessage:
    """The e-mail for ``mail``, ``audio`` (the WAV file's bytes) attached."""
    name, number = _printable(mail.caller_name or ""), _printable(mail.caller_number)
    caller = f"{name} ({number})" if name else number
    message = EmailMessage()
    message["Subject"] = f"New voicemail from {caller} ({round(mail.seconds)} s)"
    message["From"] = mail.sender
    message["To"] = mail.to
    message["Date"] = format_datetime(mail.received_at)
    message["Message-ID"] = make_msgid(domain=mail.sender.rpartition("@")[2] or None)
    message.set_content(
        f"{mail.owner},\n\n{caller} left you a message of {mail.seconds:.0f} seconds in mailbox {mail.mailbox}"
        f" at {mail.received_at:%Y-%m-%d %H:%M} UTC.\nThe recording is attached; dial *97 to hear it on your"
        " phone.\n")
    message.add_attachment(audio, maintype="audio", subtype="wav", filename=mail.wav.name)
    return message


def send_mail(mail: MessageMail, smtp: SmtpSettings) -> None:
    """Send ``mail`` through ``smtp`` (blocks; raises OSError or SMTPException)."""
    message = message_mail(mail, mail.wav.read_bytes())
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as server:
        server.send_message(message)
