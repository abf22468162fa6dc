"""Who has a mailbox and how it behaves: the ``voicemail:`` section of a
dialplan and the ``voicemail:`` key of departments and extensions.

Every extension has a mailbox unless the dialplan turns it off. Each
setting comes from the extension's own ``voicemail:``, else its
department's, else the company's (the top-level section), else the
default here. The top-level section also says where messages are kept
(``directory``) and which SMTP server mails them (``smtp``).

Pure data; :mod:`pbx.calls.voicemail` and :mod:`pbx.voicemail` use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from pbx.accountcodes.lockout import LockoutPolicy

if TYPE_CHECKING:
    from pbx.routing.dialplan import Extension

MIN_PIN: Final = 4
MAX_PIN: Final = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class PinPolicy:
    """How long a mailbox PIN must be, and when wrong PINs lock the box."""

    min_length: int = 4
    max_length: int = 8
    lockout: LockoutPolicy = field(default_factory=lambda: LockoutPolicy(failures=5, window=600, lock_seconds=900))

    def __post_init__(self) -> None:
        if not MIN_PIN <= self.min_length <= self.max_length <= MAX_PIN:
            raise ValueError(f"voicemail pin lengths must satisfy {MIN_PIN} <= min_length <= max_length <= {MAX_PIN}")

    def allows(self, pin: str) -> bool:
        """Whether ``pin`` may be chosen: digits only, of an allowed length,
        and not one digit repeated (``0000`` is the first guess of anyone)."""
        return pin.isdigit() and self.min_length <= len(pin) <= self.max_length and len(set(pin)) > 1


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxSettings:
    """One extension's mailbox, its settings resolved."""

    enabled: bool = True
    max_message_seconds: int = 120
    """A message ends at this length (the caller then hears goodbye)."""
    ring_seconds: int | None = None
    """Seconds a call rings before it goes to the mailbox; None: the
    extension's ``ring_timeout``."""
    email: str | None = None
    """Where new messages are mailed; None: the extension's ``email``."""
    email_messages: bool = False
    """Mail each new message, with the audio attached."""
    retention_days: int = 30
    """Messages older than this are deleted, heard or not."""
    silence_seconds: float = 5.0
    """This long without voice ends a message."""
    pin: PinPolicy = field(default_factory=PinPolicy)

    def __post_init__(self) -> None:
        if not 5 <= self.max_message_seconds <= 600:
            raise ValueError("voicemail max_message_seconds must be 5 to 600")
        if self.retention_days < 1:
            raise ValueError("voicemail retention_days must be at least 1")
        if not 1.0 <= self.silence_seconds <= 30.0:
            raise ValueError("voicemail silence_seconds must be 1 to 30")


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    """The mail server new messages go through (plain SMTP, as a local MTA takes it)."""

    host: str = "127.0.0.1"
    port: int = 25
    sender: str | None = None
    """From address; None: ``voicemail@<domain>``."""
    timeout: float = 30.0


SETTING_KEYS: Final = tuple(f.name for f in fields(MailboxSettings))


@dataclass(frozen=True, slots=True, kw_only=True)
class VoicemailPlan:
    """The ``voicemail:`` settings of a dialplan, at every level."""

    directory: str = "var/voicemail"
    """Where message and greeting files are kept (a path relative to the
    working directory of ``pbx serve`` unless absolute)."""
    smtp: SmtpSettings | None = None
    """None: messages are never mailed."""
    company: Mapping[str, Any] = field(default_factory=dict)
    departments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    extensions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Each level's own settings (keys of :class:`MailboxSettings`)."""

    def __post_init__(self) -> None:
        for name in ("company", "departments", "extensions"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        for level in (self.company, *self.departments.values(), *self.extensions.values()):
            unknown = set(level) - set(SETTING_KEYS)
            if unknown:
                raise ValueError(f"unknown voicemail settings: {', '.join(sorted(unknown))}")
            MailboxSettings(**level)  # each level valid on its own

    def for_extension(self, extension: Extension) -> MailboxSettings:
        """``extension``'s mailbox: its own settings over its department's
        over the company's."""
        merged: dict[str, Any] = {**self.company, **self.departments.get(extension.department, {}),
                                  **self.extensions.get(extension.number, {})}
        settings = MailboxSettings(**merged)
        if settings.email is None and extension.email is not None:
            settings = replace(settings, email=extension.email)
        return settings
