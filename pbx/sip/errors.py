"""Errors raised on bad input; each carries the status a UAS should answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from pbx.sip.message import Request


class SipError(Exception):
    """The peer broke the protocol; ``status`` is what a UAS should answer.

    ``partial`` is the request as far as it could be read, when its start line
    and the headers a response needs (Via, From, To, Call-ID, CSeq) parsed:
    the transport then answers ``status`` instead of dropping the message.
    ``reason`` is a stable snake_case tag for logs and MessageDropped events.
    """

    status: ClassVar[int] = 400

    def __init__(self, reason: str, phrase: str, partial: "Request | None" = None) -> None:
        super().__init__(phrase)
        self.reason = reason
        self.phrase = phrase
        self.partial = partial


class UnsupportedUriScheme(SipError):
    status = 416


class LoopDetected(SipError):
    status = 482


class TooManyHops(SipError):
    status = 483


class VersionNotSupported(SipError):
    status = 505


class MessageTooLarge(SipError):
    status = 513
