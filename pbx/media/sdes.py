"""SDES: SRTP keys in SDP (RFC 4568 ``a=crypto``), pure.

``a=crypto:<tag> <suite> inline:<base64 key||salt>[|<lifetime>][|<MKI>:<length>] [session params]``

The suites taken, in our order of preference:

- ``AES_CM_128_HMAC_SHA1_80`` and ``_32`` (RFC 4568 §6.2): 16-byte key,
  14-byte salt, an 80- or 32-bit authentication tag;
- ``AEAD_AES_128_GCM`` (RFC 7714 §12): 16-byte key, 12-byte salt.

A line is skipped (not an error: the offer may list others) when its suite
is unknown, its key has the wrong length, it carries an MKI (one key per
direction here) or session parameters that weaken SRTP
(``UNENCRYPTED_SRTP``, ``UNAUTHENTICATED_SRTP``...).

An answer (§5.1.2) takes one offered line: the same tag and suite, with our
own key. Each side's key protects what that side sends.

How an offer says it wants SRTP: ``RTP/SAVP`` (or ``RTP/SAVPF``) in the
m-line, or ``RTP/AVP`` with ``a=crypto`` lines: "best-effort SRTP", what
Linphone and PJSIP send when encryption is optional; its answer is RTP/AVP
with ``a=crypto`` when we take it.

Key material is never logged: ``Crypto`` hides it from its repr.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass, field
from typing import Final, Literal

MediaEncryption = Literal["none", "optional", "required"]
"""Per extension (dialplan ``media_encryption``): plain RTP only; SRTP when
the other side offers or accepts it; SRTP or nothing (488)."""

SECURE_PROFILES: Final = frozenset({"RTP/SAVP", "RTP/SAVPF"})
PLAIN_PROFILES: Final = frozenset({"RTP/AVP", "RTP/AVPF"})
_WEAKENING: Final = frozenset({"UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP"})


class Suite(enum.Enum):
    """Crypto suites, by their SDP name; value: (key length, salt length,
    authentication tag bits). The tag tells the values apart: two equal
    values would make one name an alias of the other."""

    AES_CM_128_HMAC_SHA1_80 = (16, 14, 80)
    AES_CM_128_HMAC_SHA1_32 = (16, 14, 32)
    AEAD_AES_128_GCM = (16, 12, 128)

    @property
    def material_length(self) -> int:
        key, salt, _ = self.value
        return key + salt

    @classmethod
    def named(cls, name: str) -> Suite | None:
        return cls.__members__.get(name)


PREFERENCE: Final = (Suite.AES_CM_128_HMAC_SHA1_80, Suite.AEAD_AES_128_GCM, Suite.AES_CM_128_HMAC_SHA1_32)
"""What our offers list, in this order; the 80-bit tag first (what every
SDES phone has), GCM where the library and the phone have it."""

MATERIAL_BYTES: Final = max(s.material_length for s in Suite)
"""Random bytes a side draws per offer/answer; each suite takes its prefix."""


@dataclass(frozen=True, slots=True)
class Crypto:
    """One ``a=crypto`` line."""

    tag: int
    suite: Suite
    material: bytes = field(repr=False)
    """Master key then master salt."""

    def value(self) -> str:
        """The attribute's value, for ``a=crypto:``."""
        return f"{self.tag} {self.suite.name} inline:{base64.b64encode(self.material).decode()}"


def parse_crypto(value: str) -> Crypto | None:
    """An ``a=crypto`` value, or None when it is one we skip (see the module
    docstring)."""
    parts = value.split()
    if len(parts) < 3 or not parts[0].isdigit() or len(parts[0]) > 9:
        return None
    suite = Suite.named(parts[1])
    if suite is None or any(p.split("=")[0] in _WEAKENING for p in parts[3:]):
        return None
    key_params = parts[2].split(";")  # several keys (RFC 4568 §6.1): we take one
    if len(key_params) != 1 or not key_params[0].startswith("inline:"):
        return None
    key_info = key_params[0][len("inline:"):].split("|")
    if len(key_info) > 2 or (len(key_info) == 2 and ":" in key_info[1]):
        return None  # an MKI
    try:
        material = base64.b64decode(key_info[0], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(material) != suite.material_length:
        return None
    return Crypto(int(parts[0]), suite, material)


def offered_cryptos(attributes: tuple[tuple[str, str | None], ...]) -> tuple[Crypto, ...]:
    """The usable ``a=crypto`` lines of an m-line, in its order."""
    found = (parse_crypto(value) for name, value in attributes if name == "crypto" and value)
    return tuple(c for c in found if c is not None)


def has_crypto(attributes: tuple[tuple[str, str | None], ...]) -> bool:
    """Any ``a=crypto`` line at all, usable or not: the key material a
    relay must not expose."""
    return any(name == "crypto" for name, _ in attributes)


def choose(offered: tuple[Crypto, ...]) -> Crypto | None:
    """The offered line we answer: the offerer's order (RFC 4568 §7.1.1:
    it lists them by preference) among the suites we take."""
    return offered[0] if offered else None


def our_crypto(offered: Crypto, material: bytes) -> Crypto:
    """Our answer to ``offered``: its tag and suite, our key."""
    return Crypto(offered.tag, offered.suite, material[: offered.suite.material_length])


def our_offer(material: bytes) -> tuple[Crypto, ...]:
    """Our offer's lines, tags 1.., one key per suite (a fresh key each:
    RFC 4568 §6.1 forbids one key for two suites)."""
    if len(material) < MATERIAL_BYTES * len(PREFERENCE):
        raise ValueError("not enough key material for an offer")
    return tuple(Crypto(tag, suite, material[i * MATERIAL_BYTES: i * MATERIAL_BYTES + suite.material_length])
                 for i, (tag, suite) in enumerate(enumerate(PREFERENCE, start=1)))


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """What offer/answer agreed: our key for what we send, theirs for what
    we receive, one suite."""

    suite: Suite
    send: bytes = field(repr=False)
    receive: bytes = field(repr=False)
