"""Media encryption on the calling path, pure: which offers a call may
carry, and what each leg is sent.

Between two phones the PBX relays SDP (direct media), so SRTP keys (SDES,
RFC 4568 ``a=crypto``) travel inside SIP: whoever can read the signalling
can decrypt the media. Hence:

- an extension with ``media_encryption: required`` neither places nor
  takes a call whose offer has no ``a=crypto`` line: 488 (RFC 3261
  §21.4.26), the reason saying so;
- keys pass end to end only when both legs' signalling is TLS. An offer
  with keys that came over UDP or TCP is refused (488) when its m-line is
  ``RTP/SAVP`` (it cannot be made plain) and has its ``a=crypto`` lines
  removed when it is best-effort (``RTP/AVP`` + ``a=crypto``), which then
  goes on as plain RTP; a leg towards a phone that is not on TLS gets the
  offer without keys (a phone that insists on SRTP refuses it, and the
  other legs go on). ``security: sdes_over_plain_signalling: true`` lets
  keys pass anyway, for networks where the signalling path is trusted.

Offers without SDP (delayed offer: the callee offers in its 2xx) are not
checked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pbx.media.sdes import SECURE_PROFILES, has_crypto, offered_cryptos
from pbx.media.sdp import SdpError, parse_sdp

MediaEncryption = Literal["none", "optional", "required"]


@dataclass(frozen=True, slots=True)
class OfferKeys:
    """What an offer carries, as far as SRTP goes."""

    keys: bool
    """Any a=crypto line in an audio m-line."""
    usable: bool
    """An audio m-line with an a=crypto line we (and SDES phones) take."""
    savp: bool
    """An audio m-line with a secure profile (RTP/SAVP, RTP/SAVPF)."""


def offer_keys(body: bytes) -> OfferKeys | None:
    """None when the body is empty or not SDP we can read (the far side
    answers that on its own)."""
    if not body:
        return None
    try:
        sdp = parse_sdp(body)
    except SdpError:
        return None
    audio = [m for m in sdp.media if m.media == "audio" and m.port != 0]
    return OfferKeys(keys=any(has_crypto(m.attributes) for m in audio),
                     usable=any(offered_cryptos(m.attributes) for m in audio),
                     savp=any(m.proto in SECURE_PROFILES for m in audio))


@dataclass(frozen=True, slots=True)
class MediaRefusal:
    status: int
    reason: str
    tag: str
    """Stable snake_case tag for the log."""


def check_offer(body: bytes, *, caller: MediaEncryption | None, callee: MediaEncryption | None,
                caller_on_tls: bool, callee_on_tls: bool | None, allow_plain_signalling: bool) -> MediaRefusal | None:
    """Whether a call may go on with this offer. ``caller``/``callee``: the
    extensions' settings (None: not an extension, e.g. a trunk);
    ``callee_on_tls``: whether every phone of the callee is registered over
    TLS (None: not known here)."""
    if caller != "required" and callee != "required" and (allow_plain_signalling or b"crypto" not in body):
        # Only keys could be refused, and there are none (every a=crypto
        # line has the word): the offer need not be parsed.
        return None
    keys = offer_keys(body)
    if keys is None:
        return None
    if caller == "required" and not keys.usable:
        return MediaRefusal(488, "SRTP Required", "caller_srtp_required")
    if callee == "required" and not keys.usable:
        return MediaRefusal(488, "SRTP Required", "callee_srtp_required")
    if keys.keys and keys.savp and not allow_plain_signalling:
        if not caller_on_tls:
            return MediaRefusal(488, "SRTP Keys Need TLS Signalling", "keys_over_plain_signalling")
        if callee_on_tls is False:
            return MediaRefusal(488, "Callee Not On TLS For SRTP Keys", "callee_not_on_tls")
    return None


def local_encryption(setting: MediaEncryption | None, *, on_tls: bool,
                     allow_plain_signalling: bool) -> MediaEncryption:
    """SRTP for the PBX's own media towards one phone (prompts, menus, music
    on hold): keys only where they cross TLS signalling (or that is
    allowed), and then taken when offered, insisted on for a ``required``
    extension, never for a ``none`` one (``setting`` None: not an extension). Over plain signalling: plain RTP (an offer with
    keys there was refused already by :func:`check_offer`)."""
    if setting == "none" or not (on_tls or allow_plain_signalling):
        return "none"
    return "required" if setting == "required" else "optional"


def leg_offer(body: bytes, *, caller_on_tls: bool, leg_on_tls: bool, allow_plain_signalling: bool) -> bytes:
    """The offer as sent on one leg: without its a=crypto lines unless both
    legs' signalling is TLS (or that is allowed). Other lines untouched."""
    if allow_plain_signalling or (caller_on_tls and leg_on_tls) or b"a=crypto" not in body.lower():
        return body
    lines = body.split(b"\n")
    kept = [line for line in lines if not line.lower().startswith(b"a=crypto")]
    return b"\n".join(kept)
