"""Refer-To and Replaces parsing (RFC 3515, RFC 3891) and sipfrag bodies."""

from __future__ import annotations

import pytest

from pbx.sip.refer import BadRefer, Replaces, ReferTarget, notify_headers, parse_refer_to, sipfrag


@pytest.mark.parametrize(("value", "expected"), [
    ("<sip:2003@pbx.example.com>", ReferTarget("2003")),
    ("sip:2003@pbx.example.com", ReferTarget("2003")),
    ('"Carol" <sip:2003@pbx.example.com;transport=udp>', ReferTarget("2003")),
    ("<tel:+84912345678>", ReferTarget("+84912345678")),
    ("<sip:2003@pbx.example.com?Replaces=abc%40host%3Bto-tag%3D12%3Bfrom-tag%3D34>",
     ReferTarget("2003", Replaces("abc@host", "12", "34"))),
    ("<sip:2003@pbx.example.com?Replaces=abc%3Bfrom-tag%3D34%3Bto-tag%3D12%3Bearly-only>",
     ReferTarget("2003", Replaces("abc", "12", "34", early_only=True))),
])
def test_refer_to(value: str, expected: ReferTarget) -> None:
    assert parse_refer_to(value) == expected


@pytest.mark.parametrize("value", [None, "", "<sip:pbx.example.com>", "<http://x>", "<sip:2003@h?Replaces=abc>",
                                   "<sip:2003@h?Replaces=abc%3Bto-tag%3D1>", "not an address"])
def test_bad_refer_to_is_a_400(value: str | None) -> None:
    with pytest.raises(BadRefer) as caught:
        parse_refer_to(value)
    assert caught.value.status == 400


def test_sipfrag_and_subscription_state() -> None:
    assert sipfrag(403) == b"SIP/2.0 403 Forbidden\r\n"
    assert dict(notify_headers(100))["subscription-state"] == "active;expires=60"
    assert dict(notify_headers(200))["subscription-state"] == "terminated;reason=noresource"
