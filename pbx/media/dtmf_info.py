"""DTMF in SIP INFO bodies → :class:`Digit`, pure.

Two bodies are in use (neither has an RFC; both are what phones send):

- ``application/dtmf-relay`` (Cisco's, most desk phones)::

      Signal=5
      Duration=160

  ``Signal`` is the key (``0``-``9``, ``*``, ``#``, ``A``-``D``; some send
  the RFC 4733 event number, ``10`` for ``*`` and ``11`` for ``#``),
  ``Duration`` milliseconds and optional.
- ``application/dtmf``: the body is the key alone, in the same forms.

:class:`DtmfInfoError` carries the status the INFO should be answered with:
415 for another body type, 400 for a body that names no key.
"""

from __future__ import annotations

from typing import ClassVar

from pbx.media.events import DIGITS, Digit, DigitSource

CONTENT_TYPES = ("application/dtmf-relay", "application/dtmf")
MAX_BODY = 1024


class DtmfInfoError(ValueError):
    """An INFO body we cannot take as a key press; ``status`` is the answer."""

    status: ClassVar[int] = 400


class UnsupportedDtmfBody(DtmfInfoError):
    status = 415


def _key(text: str) -> str:
    text = text.strip().upper()
    if text.isdigit() and len(text) <= 2 and int(text) < len(DIGITS):
        return DIGITS[int(text)]      # "10" is *, "11" is #: the event codes
    if len(text) == 1 and text in DIGITS:
        return text
    raise DtmfInfoError(f"not a DTMF key: {text[:20]!r}")


def parse_dtmf_info(content_type: str, body: bytes | str, now: float) -> Digit:
    """The key press in an INFO body of ``content_type``."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in CONTENT_TYPES:
        raise UnsupportedDtmfBody(f"INFO body {media_type or 'without a type'} is not DTMF "
                                  f"(accepted: {', '.join(CONTENT_TYPES)})")
    if len(body) > MAX_BODY:
        raise DtmfInfoError("DTMF INFO body too long")
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if media_type == "application/dtmf":
        return Digit(digit=_key(text), source=DigitSource.INFO, time=now)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, separator, value = line.partition("=")
        if separator:
            fields[name.strip().lower()] = value.strip()
    if "signal" not in fields:
        raise DtmfInfoError("dtmf-relay body without Signal=")
    duration: float | None = None
    if fields.get("duration", "").isdigit():
        duration = min(int(fields["duration"]), 60_000) / 1000
    return Digit(digit=_key(fields["signal"]), source=DigitSource.INFO, time=now, duration=duration)
