"""Real softphones (pjsua2) register to `pbx serve` over UDP and TCP."""

from __future__ import annotations

import pytest

from tests.server import RunningServer

from .harness import DOMAIN
from .phone import PhoneFactory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DIALPLAN = """\
domain: pbx.example.com
registrar: {min_expires: 30, max_expires: 3600, default_expires: 600}
security: {max_auth_failures: 20, failure_window: 60, block_seconds: 60}
departments:
  sales: {name: Sales}
extensions:
  1001: {name: An, department: sales, password: an-secret-1001}
  1002: {name: Binh, department: sales, password: binh-secret-1002}
"""


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_phone_registers_refreshes_and_unregisters(
    server: RunningServer, phones: PhoneFactory, transport: str
) -> None:
    port = server.udp_port if transport == "udp" else server.tcp_port
    phone = phones("an")
    state = phone.register("1001", "an-secret-1001", DOMAIN, f"127.0.0.1:{port}", transport=transport, expires=120)
    assert (state["code"], state["active"]) == (200, True)
    assert state["expires"] == 120
    again = phone.reregister()
    assert (again["code"], again["active"]) == (200, True)
    gone = phone.unregister()
    assert gone["code"] == 200 and not gone["active"]


def test_expiry_above_maximum_is_shortened(server: RunningServer, phones: PhoneFactory) -> None:
    phone = phones("binh")
    state = phone.register("1002", "binh-secret-1002", DOMAIN, f"127.0.0.1:{server.udp_port}", expires=86400)
    assert state["code"] == 200
    assert state["expires"] == 3600


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_wrong_password_never_gets_200(server: RunningServer, phones: PhoneFactory, transport: str) -> None:
    port = server.udp_port if transport == "udp" else server.tcp_port
    phone = phones("mallory")
    state = phone.register("1001", "wrong-password", DOMAIN, f"127.0.0.1:{port}", transport=transport)
    assert state["code"] != 200 and not state["active"]
    assert state["code"] in (401, 403)


def test_two_phones_same_extension_both_bound(server: RunningServer, phones: PhoneFactory) -> None:
    desk, mobile = phones("desk"), phones("mobile")
    registrar = f"127.0.0.1:{server.udp_port}"
    assert desk.register("1002", "binh-secret-1002", DOMAIN, registrar)["code"] == 200
    assert mobile.register("1002", "binh-secret-1002", DOMAIN, f"127.0.0.1:{server.tcp_port}", transport="tcp")["code"] == 200
    from tests.sipclient import SipClient

    with SipClient("udp", ("127.0.0.1", server.udp_port)) as query:
        answer = query.register("1002", "binh-secret-1002", DOMAIN, contact=None, expires=None)
    assert answer is not None and answer.status == 200
    assert len(answer.get_all("contact")) == 2
