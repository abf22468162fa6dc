"""NOTIFY bodies: PIDF for ``presence``, dialog-info for ``dialog`` and
the message summary for ``message-summary`` (RFC 3842, the voicemail lamp).

What the PBX knows of an extension (:class:`ExtensionState`): whether a
phone is registered (the registrar's bindings), how many calls it is on
and how many of its phones ring (the call layer's
:class:`pbx.calls.presence.Presence`). Both bodies carry that whole state
(``state="full"``), so a subscriber never needs to merge partial ones.

- PIDF (RFC 3863) with the data model's person element (RFC 4479) and
  RPID activities (RFC 4480): ``open`` while a phone is registered; on a
  call the person is ``busy`` and ``on-the-phone``, ``busy`` first (pjsua
  reads only the first activity) with a note saying so;
- dialog-info (RFC 4235 §4): one ``dialog`` element per call the extension
  is on (``confirmed``) and per ringing phone (``early``, direction
  ``recipient``: what makes a busy lamp blink for pickup); none when idle.
  ``version`` counts NOTIFYs on the subscription from 0 (§4.1).

Written as text, each value escaped (``xml.sax.saxutils``), with the
document's namespace unprefixed as in the RFCs' examples: some phones'
parsers match element names without looking at namespaces. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from xml.sax.saxutils import escape, quoteattr

PIDF_NS: Final = "urn:ietf:params:xml:ns:pidf"
DATA_MODEL_NS: Final = "urn:ietf:params:xml:ns:pidf:data-model"
RPID_NS: Final = "urn:ietf:params:xml:ns:pidf:rpid"
DIALOG_INFO_NS: Final = "urn:ietf:params:xml:ns:dialog-info"
_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>\n'


@dataclass(frozen=True, slots=True)
class ExtensionState:
    """What a watcher may learn of an extension at one moment."""

    registered: bool
    calls: int = 0
    ringing: int = 0

    @property
    def note(self) -> str:
        if self.calls:
            return "On the phone"
        if self.ringing:
            return "Ringing"
        return "Available" if self.registered else "Offline"


def _key(entity: str) -> str:
    """The user part of a SIP URI, for element ids."""
    return entity.split(":", 1)[-1].split("@", 1)[0]


def pidf(entity: str, state: ExtensionState) -> bytes:
    """The ``application/pidf+xml`` document for ``entity`` (a SIP URI)."""
    key, note = _key(entity), escape(state.note)
    activities = ("<rpid:activities><rpid:busy/><rpid:on-the-phone/></rpid:activities>"
                  if state.calls else "")
    return (
        f'{_DECLARATION}<presence xmlns="{PIDF_NS}" xmlns:dm="{DATA_MODEL_NS}" xmlns:rpid="{RPID_NS}"'
        f' entity={quoteattr(entity)}>'
        f'<tuple id={quoteattr("t" + key)}><status><basic>{"open" if state.registered else "closed"}</basic>'
        f'</status><note>{note}</note></tuple>'
        f'<dm:person id={quoteattr("p" + key)}>{activities}<dm:note>{note}</dm:note></dm:person>'
        f'</presence>\n'
    ).encode()


def dialog_info(entity: str, state: ExtensionState, version: int) -> bytes:
    """The ``application/dialog-info+xml`` document (full state) for
    ``entity``, NOTIFY number ``version`` of its subscription."""
    key = _key(entity)
    dialogs = [f'<dialog id={quoteattr(f"{key}-call-{n}")}><state>confirmed</state></dialog>'
               for n in range(1, state.calls + 1)]
    dialogs += [f'<dialog id={quoteattr(f"{key}-ring-{n}")} direction="recipient"><state>early</state></dialog>'
                for n in range(1, state.ringing + 1)]
    return (
        f'{_DECLARATION}<dialog-info xmlns="{DIALOG_INFO_NS}" version="{version}" state="full"'
        f' entity={quoteattr(entity)}>{"".join(dialogs)}</dialog-info>\n'
    ).encode()


@dataclass(frozen=True, slots=True)
class MailboxState:
    """A mailbox's messages, as its lamp shows them: new (not yet heard) and old."""

    new: int = 0
    old: int = 0


def message_summary(account: str, state: MailboxState) -> bytes:
    """The ``application/simple-message-summary`` body (RFC 3842 §5.2):
    ``Messages-Waiting`` lights the lamp, ``Voice-Message`` counts new/old
    (urgent ones: none, the PBX has no urgent messages)."""
    waiting = "yes" if state.new else "no"
    return (f"Messages-Waiting: {waiting}\r\nMessage-Account: {account}\r\n"
            f"Voice-Message: {state.new}/{state.old} (0/0)\r\n").encode()
