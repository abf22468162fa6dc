"""What the call layer needs from the media layer to answer a call itself.

A call the PBX answers (an auto attendant, an announcement before a
refusal) has a local media side instead of, or before, a callee. The
coordinator (:class:`pbx.calls.call.Call`) stays synchronous and decides;
the media layer's asyncio glue (:mod:`pbx.ivr.service`) implements these
protocols: it binds the RTP sockets at once (the SDP goes into the very
response being built), plays, hears keys, and calls back through ``act``
(the controller runs the callback for the call and flushes what it sent).

Rules the coordinator keeps with it:
- an INVITE with SDP gets our answer in the 200 (or the 183 of an
  announcement); one without gets an offer in the 200, answered by the ACK;
- keys come from RTP (RFC 4733 or in-band, heard by the media layer) and
  from SIP INFO in the dialog (``application/dtmf-relay``,
  ``application/dtmf``), which is answered here;
- a transfer rings the destination with the caller's own offer while the
  caller hears ringback; when it answers, a re-INVITE moves the caller's
  media to the callee's SDP (direct media, RFC 3725's idea with our own
  origin line, RFC 3264 §8) and the PBX leaves the media path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from pbx.accountcodes.prompt import Accepted, CheckCode, CodePrompt, Outcome
from pbx.ivr.menu import Hangup, MenuRun, Transfer
from pbx.media.sdes import MediaEncryption
from pbx.sip.message import Header, Request

SDP_TYPE: Final[Header] = ("content-type", "application/sdp")

PHRASE_FOR_STATUS: Final = {
    403: "not_allowed",
    404: "number_does_not_exist",
    484: "number_does_not_exist",
    480: "not_available",
    408: "not_available",
    486: "busy",
    600: "busy",
}
"""What a caller is told before a refusal with this status."""

Act = Callable[[Callable[[], None]], None]
"""Run a callback for the call (the controller flushes what it sent)."""


class MediaUnavailable(RuntimeError):
    """No RTP port could be had: the call cannot be answered locally."""


class CallMedia(Protocol):
    """One call's local media side."""

    def answer(self, offer: bytes) -> bytes:
        """Our SDP answer; :class:`pbx.media.sdp.SdpError` when none is possible."""
        ...

    def offer(self, *, send_only: bool = False) -> bytes:
        """Our SDP offer; ``send_only`` for music on hold (we send, the held phone listens)."""
        ...

    def accept(self, answer: bytes) -> None:
        """The answer to our last offer; SdpError when unusable."""
        ...

    def info(self, content_type: str, body: bytes) -> int:
        """A key press in a SIP INFO; the status to answer it with."""
        ...

    def reoffer(self, remote: bytes) -> bytes:
        """``remote`` (the callee's SDP) under our origin line with the next
        version, for the re-INVITE that moves the caller's media to it."""
        ...

    def run_menu(self, run: MenuRun, language: str, on_action: Callable[[Transfer | Hangup], None],
                 on_path: Callable[[str], None]) -> None: ...

    def run_code_prompt(self, prompt: CodePrompt, language: str,
                        on_action: Callable[[CheckCode | Accepted | Hangup], None],
                        on_path: Callable[[str], None]) -> None:
        """Ask for an account code; entries go to ``on_action`` as
        :class:`CheckCode`, answered by :meth:`code_checked`."""
        ...

    def code_checked(self, outcome: Outcome) -> None:
        """What the entry last handed over amounted to."""
        ...

    def announce(self, phrase: str, language: str, then: Callable[[], None]) -> None:
        """Say ``phrase``, then call ``then`` (through ``act``)."""
        ...

    def ringback(self, country: str) -> None: ...

    def music(self, music: str | None, *, language: str = "en",
              announce: Callable[[], str | None] | None = None, every: float = 0.0) -> None:
        """Play ``music`` (a WAV file; None: the shipped tune) round and
        round until stopped. With ``announce``, first say the phrase it
        names (None: nothing to say), and again every ``every`` seconds,
        the music going on after each."""
        ...

    def close(self) -> None:
        """Stop everything and give the ports back; safe to call twice."""
        ...


class LocalMedia(Protocol):
    def open(self, act: Act, encryption: MediaEncryption = "none") -> CallMedia:
        """A media side for a call; :class:`MediaUnavailable` if none.
        ``encryption``: whether its SDP takes or offers SRTP keys
        (:func:`pbx.calls.media_policy.local_encryption`)."""
        ...


@dataclass(slots=True)
class DirectMedia:
    """Our re-INVITE moving the caller's media to the callee (its ref)."""

    request: Request | None = field(default=None)
