"""SRTP and SRTCP (RFC 3711, RFC 7714) for one stream, with libsrtp
(pylibsrtp): protect what we send with our key, check and decrypt what we
receive with the peer's. No I/O; the stream calls it per packet.

A packet that fails authentication or replay checks is dropped and
counted, never passed on: a forged or replayed packet must not reach the
receiver's latching, jitter buffer or digit detectors.
"""

from __future__ import annotations

from pylibsrtp import Error as LibSrtpError
from pylibsrtp import Policy, Session

from pbx.media.sdes import SrtpKeys, Suite

_PROFILES = {
    Suite.AES_CM_128_HMAC_SHA1_80: Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    Suite.AES_CM_128_HMAC_SHA1_32: Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    Suite.AEAD_AES_128_GCM: Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
}


class SrtpContext:
    def __init__(self, keys: SrtpKeys) -> None:
        profile = _PROFILES[keys.suite]
        self.suite = keys.suite
        self._out = Session(Policy(key=keys.send, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
        self._in = Session(Policy(key=keys.receive, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
        self.rejected = 0
        """Packets dropped: authentication or replay check failed."""

    def protect(self, rtp: bytes) -> bytes:
        return bytes(self._out.protect(rtp))

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        return bytes(self._out.protect_rtcp(rtcp))

    def unprotect(self, srtp: bytes) -> bytes | None:
        try:
            return bytes(self._in.unprotect(srtp))
        except LibSrtpError:
            self.rejected += 1
            return None

    def unprotect_rtcp(self, srtcp: bytes) -> bytes | None:
        try:
            return bytes(self._in.unprotect_rtcp(srtcp))
        except LibSrtpError:
            self.rejected += 1
            return None


def renewed(context: SrtpContext | None, old: SrtpKeys | None, new: SrtpKeys | None) -> SrtpContext | None:
    """The context after a re-negotiation: kept while the keys stay (a new
    one would restart the replay window and the rollover counter), new for
    new keys, none for plain RTP."""
    if new is None:
        return None
    if context is None or old != new:
        return SrtpContext(new)
    return context
