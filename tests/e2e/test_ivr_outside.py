"""A menu's outside number, reached by callers from a trunk, is held to
the outside-call caps of the menu's class of service (toll fraud: without
them anyone calling the DID could keep any number of paid calls up). Hand
driven on real sockets: the provider is one UA, both the callers' gateway
and where the PBX's outside calls go."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from pbx.media.rtp import RtpPacket
from pbx.media.telephone_event import event_packets

from .harness import DOMAIN, Pbx
from .sipua import SipUA, UaDialog
from .test_ivr_delayed_offer import answer, offered

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

DID = "+842873000200"


@pytest.fixture
def provider() -> Iterator[SipUA]:
    with SipUA.start(("127.0.0.1", 9), "provider", "", DOMAIN) as ua:  # server set once the PBX runs
        yield ua


@pytest.fixture
def dialplan(provider: SipUA) -> str:
    return f"""\
domain: {DOMAIN}
departments:
  ops: {{name: Ops, class_of_service: outbound, voicemail: {{enabled: false}}}}
extensions:
  2001: {{name: Alice, department: ops, password: alice-secret-2001}}
number_plans:
  vn:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    entries:
      - {{pattern: "0[35789]XXXXXXXX", class: mobile}}
classes_of_service:
  outbound: {{allow: [mobile], outside_calls: {{simultaneous: 1, per_minute: 10}}}}
trunks:
  provider: {{gateways: [{{host: 127.0.0.1, port: {provider.local[1]}}}]}}
routes:
  - {{name: out, trunk: provider}}
inbound:
  "{DID}": {{menu: main}}
media: {{rtp_ports: "37100-37199", language: en}}
ivr_menus:
  main:
    greeting: welcome
    options:
      "3": {{number: "0912345678"}}
    timeout: 10
    class_of_service: outbound
    department: ops
"""


def call_in_and_key(provider: SipUA, rtp: socket.socket, caller: str) -> UaDialog:
    """A call from the provider to the menu's DID that keys 3 (RFC 4733)."""
    dialog = provider.new_dialog(DID)
    dialog.local_uri = f"<sip:{caller}@{DOMAIN}>"
    dialog.invite = dialog.request("INVITE", body=answer(rtp.getsockname()[1], 101))  # an offer of that shape
    dialog.invite_cseq = dialog.local_cseq
    provider.send(dialog.invite)
    ok = dialog.expect_response(200, method="INVITE")
    dialog.confirm(ok)
    dialog.ack()
    media, event_type = offered(ok.body)
    time.sleep(0.3)
    for index, (marker, offset, payload) in enumerate(event_packets("3")):
        rtp.sendto(RtpPacket(payload_type=event_type, sequence=100 + index, timestamp=800 + offset,
                             ssrc=0x3333, marker=marker, payload=payload).serialise(), media)
        time.sleep(0.02)
    return dialog


def test_a_menus_outside_calls_from_trunk_callers_keep_to_the_menus_caps(pbx: Pbx, provider: SipUA) -> None:
    provider.server = pbx.udp
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        call_in_and_key(provider, first, "0911000001")
        out = provider.expect_request("INVITE", timeout=10.0)  # the menu's call out, through the trunk
        assert out.uri.startswith("sip:") and "912345678" in out.uri, out.uri
        provider.respond(out, 180, to_tag="ringing1")
        call_in_and_key(provider, second, "0911000002")
        # The menu's one outside call is up: the second is refused, nothing more goes out.
        provider.absent(lambda m: getattr(m, "method", None) == "INVITE" and m.call_id != out.call_id, 3.0)
        hit = pbx.server.wait_lines('"call_limit_hit"', timeout=5.0)
        assert "\"limit\":\"simultaneous\"" in hit[0] and "classes_of_service.outbound" in hit[0], hit[0]
