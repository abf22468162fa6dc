"""Which offers a call may carry as far as SRTP goes, and what each leg is
sent (pbx.calls.media_policy): a table over the settings and transports."""

from __future__ import annotations

import pytest

from pbx.calls.media_policy import MediaEncryption, check_offer, leg_offer, local_encryption

KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIz"


def offer(proto: str = "RTP/AVP", crypto: bool = False) -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.5", "s=-", "c=IN IP4 192.0.2.5", "t=0 0", f"m=audio 4000 {proto} 0"]
    if crypto:
        lines.append(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.mark.parametrize(("body", "caller", "callee", "caller_tls", "callee_tls", "allow", "expected"), [
    (offer(), "optional", "optional", False, False, False, None),
    (offer(), "required", "optional", True, True, False, "caller_srtp_required"),
    (offer(), "optional", "required", True, True, False, "callee_srtp_required"),
    (offer(), None, "required", False, None, False, "callee_srtp_required"),        # from a trunk
    (offer("RTP/SAVP", True), "required", "required", True, True, False, None),
    (offer("RTP/SAVP", True), "optional", "optional", False, True, False, "keys_over_plain_signalling"),
    (offer("RTP/SAVP", True), "optional", "optional", True, False, False, "callee_not_on_tls"),
    (offer("RTP/SAVP", True), "optional", "optional", False, False, True, None),     # allowed by the plan
    (offer("RTP/AVP", True), "optional", "optional", False, False, False, None),     # best effort: stripped
    (b"", "required", "required", False, False, False, None),                        # delayed offer
])
def test_offers_allowed_and_refused(body: bytes, caller: MediaEncryption | None, callee: MediaEncryption | None,
                                    caller_tls: bool, callee_tls: bool | None, allow: bool,
                                    expected: str | None) -> None:
    refused = check_offer(body, caller=caller, callee=callee, caller_on_tls=caller_tls, callee_on_tls=callee_tls,
                          allow_plain_signalling=allow)
    assert (refused.tag if refused is not None else None) == expected
    if refused is not None:
        assert refused.status == 488


@pytest.mark.parametrize(("caller_tls", "leg_tls", "allow", "keeps_keys"), [
    (True, True, False, True), (True, False, False, False), (False, True, False, False), (False, False, True, True),
])
def test_keys_reach_a_leg_only_over_tls_both_ways(caller_tls: bool, leg_tls: bool, allow: bool,
                                                  keeps_keys: bool) -> None:
    sent = leg_offer(offer("RTP/AVP", True), caller_on_tls=caller_tls, leg_on_tls=leg_tls,
                     allow_plain_signalling=allow)
    assert (KEY.encode() in sent) is keeps_keys
    assert b"m=audio 4000 RTP/AVP 0\r\n" in sent


@pytest.mark.parametrize(("setting", "on_tls", "allow_plain", "expected"), [
    (None, True, False, "optional"),          # a trunk or unknown party on TLS: keys if it offers them
    ("none", True, False, "none"),            # the extension says never
    ("optional", True, False, "optional"),
    ("required", True, False, "required"),
    ("required", False, False, "none"),       # keys would cross plain signalling: never ours
    ("optional", False, False, "none"),
    ("optional", False, True, "optional"),    # the operator trusts the signalling path
])
def test_the_pbx_own_media_takes_keys_only_over_tls(setting: MediaEncryption | None, on_tls: bool,
                                                  allow_plain: bool, expected: str) -> None:
    assert local_encryption(setting, on_tls=on_tls, allow_plain_signalling=allow_plain) == expected
