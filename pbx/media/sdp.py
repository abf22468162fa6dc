"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for one audio
stream, pure.

What we offer and accept: G.711 μ-law and A-law (static payload types 0
and 8, or a dynamic type whose rtpmap names PCMU/PCMA at 8000 Hz),
``telephone-event/8000`` (RFC 4733) on a dynamic payload type, 20 ms
packets, and the four directions; SRTP keyed by SDES (``RTP/SAVP``, or
``RTP/AVP`` with ``a=crypto``: :mod:`pbx.media.sdes`) as ``LocalMedia``'s
``encryption`` allows. Everything else in an offer (video, T.38, a second
audio stream, DTLS-SRTP) gets its m-line back with port 0, which RFC 3264
§6 defines as "rejected"; an offer with no audio stream we can take raises
:class:`SdpError`, and the caller answers 488 Not Acceptable Here with the
error's text as the reason.

Rules kept from RFC 3264:
- the answer has the offer's m-lines, in order (§6);
- it uses the offer's payload type numbers (§6.1) and lists only formats
  the offer had;
- directions mirror (§6.1): sendonly → recvonly, recvonly → sendonly,
  inactive → inactive; ``c=0.0.0.0`` is RFC 2543's hold, read as sendonly
  (§8.4);
- the o= line keeps its session id and raises its version exactly when
  the description changes (§8), whoever sends it (:class:`SdpSession`).
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import ClassVar, Final

from pbx.media.codecs import Codec
from pbx.media.sdes import (
    PLAIN_PROFILES,
    SECURE_PROFILES,
    Crypto,
    MediaEncryption,
    SrtpKeys,
    choose,
    offered_cryptos,
    our_crypto,
    our_offer,
)

MAX_SDP: Final = 16 * 1024
MAX_MEDIA: Final = 16
TELEPHONE_EVENT: Final = "telephone-event"
DEFAULT_EVENT_PT: Final = 101
PTIME: Final = 20


class SdpError(ValueError):
    """An SDP we cannot use; str() is the reason phrase for the 488 Not
    Acceptable Here the caller answers with (RFC 3261 §21.4.26)."""

    status: ClassVar[int] = 488


class Direction(enum.Enum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, sends: bool, receives: bool) -> Direction:
        if sends and receives:
            return cls.SENDRECV
        if sends:
            return cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def answer_to(self, local: Direction) -> Direction:
        """The direction of an answer to an offer of ``self`` from a side
        that wants ``local``: we send only if the offerer receives."""
        return Direction.of(self.receives and local.sends, self.sends and local.receives)


_DIRECTIONS = {d.value for d in Direction}


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    username: str = "-"
    session_id: int
    version: int
    address: str

    def line(self) -> str:
        return f"o={self.username} {self.session_id} {self.version} IN {_addr_type(self.address)} {self.address}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None = None
    attributes: tuple[tuple[str, str | None], ...] = ()

    def attribute(self, name: str) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return value if value is not None else ""
        return None

    def rtpmap(self) -> dict[int, tuple[str, int]]:
        """payload type → (encoding name, clock rate), rtpmap lines and the
        static types RFC 3551 defines."""
        mapping: dict[int, tuple[str, int]] = {}
        for fmt in self.formats:
            if fmt.isdigit():
                codec = Codec.by_payload_type(int(fmt))
                if codec is not None:
                    mapping[int(fmt)] = (codec.encoding_name, 8000)
        for key, value in self.attributes:
            if key == "rtpmap" and value:
                pt, _, rest = value.partition(" ")
                name, _, rate = rest.strip().partition("/")
                if pt.isdigit() and rate.split("/")[0].isdigit():
                    mapping[int(pt)] = (name, int(rate.split("/")[0]))
        return mapping

    def direction(self, session: Direction) -> Direction:
        for key, _ in self.attributes:
            if key in _DIRECTIONS:
                return Direction(key)
        return session


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    origin: Origin
    name: str = "-"
    connection: str | None = None
    attributes: tuple[tuple[str, str | None], ...] = ()
    media: tuple[MediaDescription, ...] = ()

    @property
    def direction(self) -> Direction:
        for key, _ in self.attributes:
            if key in _DIRECTIONS:
                return Direction(key)
        return Direction.SENDRECV

    def serialise(self) -> str:
        lines = ["v=0", self.origin.line(), f"s={self.name}"]
        if self.connection is not None:
            lines.append(f"c=IN {_addr_type(self.connection)} {self.connection}")
        lines.append("t=0 0")
        lines += [_attribute_line(a) for a in self.attributes]
        for m in self.media:
            lines.append(f"m={m.media} {m.port} {m.proto} {' '.join(m.formats)}")
            if m.connection is not None:
                lines.append(f"c=IN {_addr_type(m.connection)} {m.connection}")
            lines += [_attribute_line(a) for a in m.attributes]
        return "\r\n".join(lines) + "\r\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class Negotiated:
    """What offer/answer agreed for our one audio stream."""

    codec: Codec
    payload_type: int
    """The audio payload type both sides use (the offerer's number)."""
    telephone_event: int | None
    """Payload type of telephone-event, None when not agreed."""
    remote_address: str
    remote_port: int
    remote_rtcp_port: int
    direction: Direction
    """Ours: whether we send and/or receive."""
    remote_ptime: int | None = None
    """What the peer asked to receive (a=ptime); we send 20 ms packets,
    which every G.711 phone takes."""
    srtp: SrtpKeys | None = None
    """The SRTP keys agreed (SDES), None for plain RTP."""

    @property
    def payload_types(self) -> frozenset[int]:
        pts = {self.payload_type}
        if self.telephone_event is not None:
            pts.add(self.telephone_event)
        return frozenset(pts)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalMedia:
    """Our side of the stream."""

    address: str
    port: int
    codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA)
    """In order of preference, for offers; answers follow the offerer's order."""
    telephone_event: int = DEFAULT_EVENT_PT
    direction: Direction = Direction.SENDRECV
    encryption: MediaEncryption = "none"
    """SRTP: never, when the peer offers or takes it, or always (else 488)."""
    key_material: bytes = field(default=b"", repr=False)
    """Fresh random bytes for our SRTP keys (the edge draws them), at least
    ``sdes.MATERIAL_BYTES`` × 3 when offering SRTP."""


def _addr_type(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _attribute_line(attribute: tuple[str, str | None]) -> str:
    name, value = attribute
    return f"a={name}" if value is None else f"a={name}:{value}"


# ---------------------------------------------------------------- parsing

def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line: {value[:60]!r}")
    address = parts[2].split("/")[0]   # drop a multicast TTL
    try:
        # RFC 4566 allows a host name; phones send addresses, and resolving
        # a name from a peer's SDP would let it make us query DNS at will.
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise SdpError(f"bad connection address {address[:60]!r} (an IP address is needed)") from None


@dataclass(slots=True, kw_only=True)
class _MediaBuilder:
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)


def parse_sdp(text: str | bytes) -> SessionDescription:
    """Parse an SDP body; :class:`SdpError` says what is wrong."""
    if isinstance(text, bytes):
        if len(text) > MAX_SDP:
            raise SdpError("SDP body too large")
        text = text.decode("utf-8", "replace")
    if len(text) > MAX_SDP:
        raise SdpError("SDP body too large")
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise SdpError("SDP must start with v=0")
    origin: Origin | None = None
    name = "-"
    session_connection: str | None = None
    session_attributes: list[tuple[str, str | None]] = []
    media: list[_MediaBuilder] = []
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip()
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"SDP line {number} is not type=value: {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "o":
            parts = value.split()
            if len(parts) != 6 or not parts[1].isdigit() or not parts[2].isdigit():
                raise SdpError(f"bad o= line: {value[:60]!r}")
            origin = Origin(username=parts[0], session_id=int(parts[1]), version=int(parts[2]),
                            address=parts[5])
        elif kind == "s":
            name = value or "-"
        elif kind == "c":
            if media:
                media[-1].connection = _connection(value)
            else:
                session_connection = _connection(value)
        elif kind == "m":
            if len(media) >= MAX_MEDIA:
                raise SdpError(f"more than {MAX_MEDIA} media streams")
            parts = value.split()
            port = parts[1].split("/")[0] if len(parts) >= 3 else ""
            if len(parts) < 3 or not port.isdigit() or int(port) > 65535:
                raise SdpError(f"bad m= line: {value[:60]!r}")
            media.append(_MediaBuilder(media=parts[0], port=int(port), proto=parts[2], formats=tuple(parts[3:])))
        elif kind == "a":
            attr_name, colon, attr_value = value.partition(":")
            attribute = (attr_name.strip(), attr_value.strip() if colon else None)
            if media:
                media[-1].attributes.append(attribute)
            else:
                session_attributes.append(attribute)
        # v, t, b, i, u, e, p, k, z, r: not needed for audio offer/answer
    if origin is None:
        raise SdpError("SDP without o= line")
    return SessionDescription(
        origin=origin, name=name, connection=session_connection, attributes=tuple(session_attributes),
        media=tuple(MediaDescription(media=m.media, port=m.port, proto=m.proto, formats=m.formats,
                                     connection=m.connection, attributes=tuple(m.attributes))
                    for m in media))


# ---------------------------------------------------------------- offer/answer

def _audio_choice(m: MediaDescription, codecs: tuple[Codec, ...]) -> tuple[Codec, int, int | None] | None:
    """(codec, its payload type, telephone-event type) we would use for this
    m-line, in the order its formats are listed; None if nothing fits."""
    if m.media != "audio" or m.port == 0 or m.proto not in PLAIN_PROFILES | SECURE_PROFILES:
        return None
    mapping = m.rtpmap()
    event_pt = next((pt for pt, (name, rate) in mapping.items()
                     if name.lower() == TELEPHONE_EVENT and rate == 8000 and str(pt) in m.formats), None)
    for fmt in m.formats:
        if not fmt.isdigit() or int(fmt) not in mapping:
            continue
        name, rate = mapping[int(fmt)]
        codec = Codec.by_name(name)
        if codec is not None and codec in codecs and rate == 8000:
            return codec, int(fmt), event_pt
    return None


def _remote(offer: SessionDescription, m: MediaDescription) -> tuple[str, int]:
    address = m.connection or offer.connection
    if address is None:
        raise SdpError("no c= line for the audio stream")
    rtcp = m.attribute("rtcp")   # RFC 3605: a=rtcp:port [IN IP4 addr]
    rtcp_port = m.port + 1
    if rtcp and rtcp.split()[0].isdigit() and 0 < int(rtcp.split()[0]) < 65536:
        rtcp_port = int(rtcp.split()[0])
    return address, rtcp_port


def _is_hold_address(address: str) -> bool:
    return address in ("0.0.0.0", "::")


def _negotiated(session: SessionDescription, m: MediaDescription, codec: Codec, pt: int, event_pt: int | None,
                ours: Direction, srtp: SrtpKeys | None = None) -> Negotiated:
    address, rtcp_port = _remote(session, m)
    ptime = m.attribute("ptime")
    return Negotiated(codec=codec, payload_type=pt, telephone_event=event_pt, remote_address=address,
                      remote_port=m.port, remote_rtcp_port=rtcp_port, direction=ours,
                      remote_ptime=int(ptime) if ptime and ptime.isdigit() else None, srtp=srtp)


def _answer_crypto(m: MediaDescription, local: LocalMedia) -> tuple[Crypto | None, str | None]:
    """(our a=crypto for this offered m-line or None for plain RTP, or why
    the m-line cannot be taken)."""
    offered = choose(offered_cryptos(m.attributes)) if local.encryption != "none" else None
    if m.proto in SECURE_PROFILES:
        if local.encryption == "none":
            return None, f"{m.proto} offered, but SRTP is not enabled for this call"
        if offered is None:
            return None, f"{m.proto} offered without a usable a=crypto (SDES) line"
    elif offered is None and local.encryption == "required":
        return None, "SRTP is required: the offer has no usable a=crypto line"
    if offered is None:
        return None, None
    return our_crypto(offered, local.key_material), None


def _audio_attributes(codec: Codec, pt: int, event_pt: int | None, direction: Direction,
                      events: str) -> tuple[tuple[str, str | None], ...]:
    attributes: list[tuple[str, str | None]] = [("rtpmap", f"{pt} {codec.encoding_name}/8000")]
    if event_pt is not None:
        attributes += [("rtpmap", f"{event_pt} {TELEPHONE_EVENT}/8000"), ("fmtp", f"{event_pt} {events}")]
    attributes += [("ptime", str(PTIME)), (direction.value, None)]
    return tuple(attributes)


def answer_media(offer: SessionDescription, local: LocalMedia) -> tuple[tuple[MediaDescription, ...], Negotiated]:
    """The m-lines of our answer to ``offer`` and what they agree; the first
    audio stream we can take is used, every other m-line rejected (port 0)."""
    answered: list[MediaDescription] = []
    chosen: Negotiated | None = None
    refused: str | None = None
    for m in offer.media:
        choice = None if chosen is not None else _audio_choice(m, local.codecs)
        crypto, why = _answer_crypto(m, local) if choice is not None else (None, None)
        if choice is None or why is not None:
            refused = refused or why
            answered.append(MediaDescription(media=m.media, port=0, proto=m.proto, formats=m.formats[:1] or ("0",)))
            continue
        codec, pt, event_pt = choice
        offered = m.direction(offer.direction)
        address = m.connection or offer.connection
        if address is not None and _is_hold_address(address):
            offered = Direction.of(offered.sends, False)     # §8.4: the old way to say "do not send to me"
        ours = offered.answer_to(local.direction)
        keys = None
        attributes = _audio_attributes(codec, pt, event_pt, ours, "0-15")
        if crypto is not None:
            theirs = choose(offered_cryptos(m.attributes))
            assert theirs is not None
            keys = SrtpKeys(crypto.suite, send=crypto.material, receive=theirs.material)
            attributes += (("crypto", crypto.value()),)
        chosen = _negotiated(offer, m, codec, pt, event_pt, ours, keys)
        formats = (str(pt),) + ((str(event_pt),) if event_pt is not None else ())
        # The answer's profile is the offer's: RTP/AVP with a=crypto answers
        # best-effort SRTP (its a=crypto says the media is SRTP all the same).
        answered.append(MediaDescription(media="audio", port=local.port, proto=m.proto, formats=formats,
                                         attributes=attributes))
    if chosen is None:
        if refused is not None:
            raise SdpError(refused)
        audio = [m for m in offer.media if m.media == "audio" and m.port != 0]
        if not audio:
            raise SdpError("no audio stream offered")
        if all(m.proto not in PLAIN_PROFILES | SECURE_PROFILES for m in audio):
            raise SdpError(f"unsupported media profile {audio[0].proto} (RTP/AVP or RTP/SAVP only)")
        raise SdpError("no common codec (PCMU or PCMA at 8000 Hz)")
    return tuple(answered), chosen


def offer_media(local: LocalMedia) -> MediaDescription:
    """Our audio m-line for an offer: every codec we take, then telephone-event."""
    formats = tuple(str(c.payload_type) for c in local.codecs) + (str(local.telephone_event),)
    attributes: list[tuple[str, str | None]] = [("rtpmap", f"{c.payload_type} {c.encoding_name}/8000")
                                                for c in local.codecs]
    attributes += [("rtpmap", f"{local.telephone_event} {TELEPHONE_EVENT}/8000"),
                   ("fmtp", f"{local.telephone_event} 0-16"), ("ptime", str(PTIME)),
                   (local.direction.value, None)]
    if local.encryption != "none":
        attributes += [("crypto", c.value()) for c in our_offer(local.key_material)]
    # Optional: best-effort SRTP (RTP/AVP with a=crypto), which a phone
    # without SRTP still answers with plain RTP; required: RTP/SAVP.
    proto = "RTP/SAVP" if local.encryption == "required" else "RTP/AVP"
    return MediaDescription(media="audio", port=local.port, proto=proto, formats=formats,
                            attributes=tuple(attributes))


def _accepted_keys(ours: MediaDescription, theirs: MediaDescription) -> SrtpKeys | None:
    """The keys an answer takes from our offer's a=crypto lines; SdpError
    when the answer's line is not one we offered, or SRTP was required and
    the answer has none."""
    offered = offered_cryptos(ours.attributes)
    if not offered:
        return None
    answered = offered_cryptos(theirs.attributes)
    if not answered:
        if ours.proto in SECURE_PROFILES:
            raise SdpError("the answer has no a=crypto line for our RTP/SAVP offer")
        return None  # best-effort SRTP declined: plain RTP
    crypto = answered[0]
    mine = next((c for c in offered if c.tag == crypto.tag), None)
    if mine is None or mine.suite is not crypto.suite:
        raise SdpError("the answer's a=crypto matches no line of our offer")
    return SrtpKeys(crypto.suite, send=mine.material, receive=crypto.material)


def accept_answer(offer: SessionDescription, answer: SessionDescription, local: LocalMedia) -> Negotiated:
    """Check the peer's answer to our ``offer`` (§6, §7) and read what it agreed."""
    if len(answer.media) != len(offer.media):
        raise SdpError(f"answer has {len(answer.media)} media streams, the offer had {len(offer.media)}")
    for ours, theirs in zip(offer.media, answer.media):
        if ours.media != "audio" or ours.port == 0:
            continue
        if theirs.port == 0:
            raise SdpError("the audio stream was rejected")
        choice = _audio_choice(theirs, local.codecs)
        if choice is None or str(choice[1]) not in ours.formats:
            raise SdpError("the answer chose no codec we offered")
        codec, pt, event_pt = choice
        if event_pt is not None and str(event_pt) not in ours.formats:
            event_pt = None
        answered = theirs.direction(answer.direction)
        address = theirs.connection or answer.connection
        if address is not None and _is_hold_address(address):
            answered = Direction.of(answered.sends, False)
        # Our direction: what we offered, narrowed by what the answer allows.
        mine = ours.direction(offer.direction)
        return _negotiated(answer, theirs, codec, pt, event_pt,
                           Direction.of(mine.sends and answered.receives, mine.receives and answered.sends),
                           _accepted_keys(ours, theirs))
    raise SdpError("our offer had no audio stream")


@dataclass(slots=True)
class SdpSession:
    """Our o= line across a dialog: one session id, a version raised exactly
    when what we describe changes (RFC 3264 §8)."""

    address: str
    session_id: int
    """Random, from the caller (this module draws nothing)."""
    username: str = "pbx"
    version: int = 0
    _last: tuple[str | None, tuple[MediaDescription, ...]] | None = field(default=None, repr=False)

    def describe(self, media: tuple[MediaDescription, ...]) -> SessionDescription:
        key = (self.address, media)
        if self._last is not None and self._last != key:
            self.version += 1
        self._last = key
        return SessionDescription(origin=Origin(username=self.username, session_id=self.session_id,
                                                version=self.version, address=self.address),
                                  connection=self.address, media=media)

    def offer(self, local: LocalMedia) -> SessionDescription:
        """An offer: for an INVITE without SDP, a re-INVITE, hold (``local``
        with ``direction`` sendonly) and resume."""
        return self.describe((offer_media(local),))

    def answer(self, offer: SessionDescription | str | bytes, local: LocalMedia) -> tuple[SessionDescription, Negotiated]:
        """Our answer to a phone's offer; :class:`SdpError` (→ 488) if none is possible."""
        if not isinstance(offer, SessionDescription):
            offer = parse_sdp(offer)
        media, negotiated = answer_media(offer, local)
        return self.describe(media), negotiated



def cross_answer(offer: bytes, other: bytes, *, session_id: int) -> bytes:
    """An answer to ``offer`` that points at the party who made ``other``,
    another offer: for joining two callers who both offered (call pickup,
    where the ringing call's caller and the picker each sent an offer).

    Each media line keeps the formats of ``offer`` whose encoding ``other``
    offered too, with ``offer``'s payload numbers (RFC 3264 §6.1), and
    takes ``other``'s address and port; a line with nothing in common, or
    that ``other`` lacks, is refused with port 0 (§6). SdpError when either
    cannot be parsed."""
    theirs, mine = parse_sdp(offer), parse_sdp(other)
    media: list[MediaDescription] = []
    for index, m in enumerate(theirs.media):
        peer = mine.media[index] if index < len(mine.media) else None
        if peer is None or peer.media != m.media:
            media.append(MediaDescription(media=m.media, port=0, proto=m.proto, formats=m.formats[:1]))
            continue
        wanted = {(name.lower(), rate) for name, rate in peer.rtpmap().values()}
        mapping = m.rtpmap()
        kept = tuple(f for f in m.formats if f.isdigit() and (mapping.get(int(f), ("", 0))[0].lower(),
                                                               mapping.get(int(f), ("", 0))[1]) in wanted)
        if not kept:
            media.append(MediaDescription(media=m.media, port=0, proto=m.proto, formats=m.formats[:1]))
            continue
        attributes = tuple((key, value) for key, value in m.attributes
                           if key in ("rtpmap", "fmtp") and value and value.partition(" ")[0] in kept)
        direction = peer.direction(mine.direction)
        media.append(MediaDescription(media=m.media, port=peer.port, proto=m.proto, formats=kept,
                                      connection=peer.connection or mine.connection,
                                      attributes=(*attributes, (direction.value, None))))
    address = mine.connection or next((m.connection for m in mine.media if m.connection), None) or "0.0.0.0"
    answer = SessionDescription(origin=Origin(username="pbx", session_id=session_id, version=1, address=address),
                                media=tuple(media))
    return answer.serialise().encode()
