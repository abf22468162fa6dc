"""The log's redaction: secrets by key name and inside text, SRTP keys
included, through the real structlog configuration."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr

import structlog

from pbx import log

KEY = "WVNfX19abGNOUFZPc1NqeHV1M1ZsRWRLbjFsdEJD"
SDP = ("v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n"
       f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20\r\n"
       f"a=crypto:2 AEAD_AES_128_GCM INLINE:{KEY[:36]}\r\n")


def test_srtp_keys_never_reach_the_log() -> None:
    out = io.StringIO()
    with redirect_stderr(out):
        log.configure(json=True)
        try:
            structlog.get_logger("test").warning("sdp_refused", sdp=SDP, crypto=f"1 AES_CM inline:{KEY}",
                                                 key_material=KEY, password="hunter2")
        finally:
            structlog.reset_defaults()
    text = out.getvalue()
    assert KEY[:20] not in text and "hunter2" not in text
    entry = json.loads(text)
    assert entry["crypto"] == entry["key_material"] == entry["password"] == "[redacted]"
    assert "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:[redacted]|2^20" in entry["sdp"]
    assert "m=audio 4000 RTP/SAVP 0" in entry["sdp"]


def test_an_account_code_dialled_before_a_number_never_reaches_the_log() -> None:
    out = io.StringIO()
    with redirect_stderr(out):
        log.configure(json=True)
        try:
            structlog.get_logger("test").info("transfer_requested", target="*11483948#0081312345678",
                                              refer_to="<sip:*11483948%230081312345678@pbx.example.com>",
                                              feature="*72 1002", pickup="**1001")
        finally:
            structlog.reset_defaults()
    text = out.getvalue()
    assert "483948" not in text
    entry = json.loads(text)
    assert entry["target"] == "*(code)#0081312345678"
    assert entry["refer_to"] == "<sip:*(code)#0081312345678@pbx.example.com>"
    assert (entry["feature"], entry["pickup"]) == ("*72 1002", "**1001")   # no code, left alone
