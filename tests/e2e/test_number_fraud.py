"""Toll-fraud numbers on real sockets (issue 12 §3): `pbx serve` with the
example dialplan, its trunks' gateways replaced by UDP sockets this test
holds. Numbers with ``*``, ``+`` or URI escapes inside are refused (404/484)
and no INVITE reaches a gateway; Cuba dialled from Taipei with Chunghwa's
002 prefix is refused by the black list's one ``+53`` entry; a real
international number does go out, in E.164, so the gateways were listening.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pbx.sip.message import Request, Response
from tests.e2e.sipua import SipUA, UaDialog
from tests.routing.test_loader import EXAMPLE
from tests.server import RunningServer, free_port, run_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

DOMAIN = "pbx.example.com"
PROVIDER_DOMAIN = "sip.provider.example"
PASSWORDS = {"1001": "demo-An-1001", "1010": "demo-Lin-1010"}


def example_with_gateways(viettel: int, cht: int) -> str:
    """The example dialplan, its gateways moved to our ports, not registering."""
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new in (("port: 5070", f"port: {viettel}"), ("port: 5072", f"port: {free_port()}"),
                     ("port: 5080", f"port: {cht}"), ("register: true", "register: false")):
        assert old in text, old
        text = text.replace(old, new)
    return text


class Gateways:
    """The two providers' gateways: sockets that answer every INVITE 603."""

    def __init__(self) -> None:
        placeholder = ("127.0.0.1", 9)  # set to the PBX once it listens
        self.viettel = SipUA.start(placeholder, "viettel", "-", PROVIDER_DOMAIN)
        self.cht = SipUA.start(placeholder, "cht", "-", PROVIDER_DOMAIN)

    def point_at(self, server: RunningServer) -> None:
        for gateway in (self.viettel, self.cht):
            gateway.server = ("127.0.0.1", server.udp_port)

    def invites(self, gateway: SipUA, seconds: float) -> list[Request]:
        """Every INVITE the gateway got within ``seconds``, each declined."""
        found = [m for m in gateway.drain(seconds) if isinstance(m, Request) and m.method == "INVITE"]
        for invite in found:
            gateway.respond(invite, 603, to_tag="gw")
        return found

    def close(self) -> None:
        self.viettel.close()
        self.cht.close()


@pytest.fixture
def gateways() -> Iterator[Gateways]:
    held = Gateways()
    try:
        yield held
    finally:
        held.close()


@contextmanager
def example_server(tmp_path: Path, gateways: Gateways, listens: list[str]) -> Iterator[RunningServer]:
    """`pbx serve` with the example dialplan, its trunks at ``gateways``."""
    plan = tmp_path / "example.yaml"
    plan.write_text(example_with_gateways(gateways.viettel.local[1], gateways.cht.local[1]), encoding="utf-8")
    shutil.copytree(EXAMPLE.parent / "groups", tmp_path / "groups")
    with run_server(plan, "sqlite:///" + str(tmp_path / "pbx.sqlite3"), listens) as running:
        gateways.point_at(running)
        yield running


@pytest.fixture
def server(tmp_path: Path, gateways: Gateways) -> Iterator[RunningServer]:
    with example_server(tmp_path, gateways, ["udp:127.0.0.1:0"]) as running:
        yield running


def final(dialog: UaDialog) -> Response:
    while True:
        response = dialog.expect_response(method="INVITE")
        if response.status >= 200:
            return response


def call(server: RunningServer, gateways: Gateways, caller: str, number: str) -> tuple[Response, list[str]]:
    """The final response to ``caller`` dialling ``number``, and the
    Request-URIs of the INVITEs that reached a gateway meanwhile (declined
    at once, so that a call that got out ends too)."""
    with SipUA.start(("127.0.0.1", server.udp_port), caller, PASSWORDS[caller], DOMAIN) as phone:
        dialog = phone.invite(number)
        reached = gateways.invites(gateways.viettel, 0.5) + gateways.invites(gateways.cht, 0.1)
        return final(dialog), [invite.uri for invite in reached]


@pytest.mark.parametrize(
    ("caller", "number", "statuses", "reason"),
    [
        ("1001", "00*53712345678", {404, 484}, "unknown_number"),      # was sent as sip:+*53712345678
        ("1001", "00+53712345678", {404, 484}, "unknown_number"),      # was sent as sip:++53712345678
        ("1001", "0000053712345678", {404, 484}, "malformed_number"),  # was sent as sip:+00053712345678
        ("1001", "00%2A53712345678", {404, 484}, "invalid_number"),    # an escaped '*'
        ("1001", "0053712345678;user=phone", {404, 484}, "invalid_number"),  # a parameter in the user part
        ("1010", "00253712345", {403}, "blacklisted"),                 # Cuba through Chunghwa's 002
    ],
)
def test_fraud_numbers_never_reach_a_trunk(server: RunningServer, gateways: Gateways, caller: str, number: str,
                                           statuses: set[int], reason: str) -> None:
    response, reached = call(server, gateways, caller, number)
    assert reached == []
    assert response.status in statuses, response
    assert response.get("reason") == f'SIP;cause={response.status};text="{reason}"'


def test_a_real_international_number_goes_out_in_e164(server: RunningServer, gateways: Gateways) -> None:
    # The control for the test above: the same server and gateways do carry
    # an allowed call, so "no INVITE" there means refused, not lost.
    with SipUA.start(("127.0.0.1", server.udp_port), "1001", PASSWORDS["1001"], DOMAIN) as phone:
        dialog = phone.invite("0081312345678")
        invite = gateways.viettel.expect_request("INVITE", timeout=5.0)
        gateways.viettel.respond(invite, 603, to_tag="gw")
        assert final(dialog).status == 603
    assert invite.uri == f"sip:+81312345678@{PROVIDER_DOMAIN}"
    assert gateways.invites(gateways.cht, 0.1) == []
