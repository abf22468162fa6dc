"""Presence, busy lamps and chat against a real ``pbx serve`` over UDP,
with raw sockets: SUBSCRIBE to ``dialog`` and the RFC 4235 NOTIFY bodies
as a phone rings and stops, 489 for an unknown package, 423 and expiry,
refresh and unsubscribe, visibility, PUBLISH; MESSAGE kept for an offline
extension and delivered when it registers, 413 for a large one."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import RunningServer, run_server

from .agent import DOMAIN, Agent, dialog_info, dialog_states

PLAN = f"""\
domain: {DOMAIN}
voicemail: {{enabled: false}}
registrar: {{min_expires: 2, default_expires: 600, max_expires: 3600}}
features: {{chat_max_bytes: 200, max_subscriptions: 3}}
departments:
  ops: {{name: Operations}}
  sales: {{name: Sales}}
extensions:
  2001: {{name: Alice, department: ops, password: alice-secret-2001}}
  2002: {{name: Bob, department: ops, password: bob-secret-2002}}
  2003: {{name: Carol, department: ops, password: carol-secret-2003}}
  3001: {{name: Sam, department: sales, password: sam-secret-3001}}
"""
PASSWORDS = {"2001": "alice-secret-2001", "2002": "bob-secret-2002", "2003": "carol-secret-2003",
             "3001": "sam-secret-3001"}


def start(tmp_path: Path, plan: str = PLAN) -> Iterator[RunningServer]:
    path = tmp_path / "plan.yaml"
    path.write_text(plan)
    with run_server(path, f"sqlite:///{tmp_path / 'pbx.sqlite3'}", ["udp:127.0.0.1:0"]) as server:
        yield server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    yield from start(tmp_path)


@pytest.fixture
def agents(server: RunningServer) -> Iterator[dict[str, Agent]]:
    made = {number: Agent(number, password, ("127.0.0.1", server.udp_port)) for number, password in PASSWORDS.items()}
    yield made
    for agent in made.values():
        agent.close()


def subscribe(agent: Agent, target: str, package: str, expires: int | None = 600,
              extra: list[str] | None = None) -> tuple[int, str, str, int]:
    """SUBSCRIBE; returns (status, call_id, from_tag, granted expires)."""
    call_id, from_tag = secrets.token_hex(8), secrets.token_hex(4)
    headers = [f"Event: {package}", *(extra or [])]
    if expires is not None:
        headers.append(f"Expires: {expires}")
    response = agent.request("SUBSCRIBE", f"sip:{target}@{DOMAIN}", headers=headers, call_id=call_id,
                             from_tag=from_tag)
    return response.status, call_id, from_tag, int(response.get("expires") or -1)


SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def test_dialog_subscription_follows_a_ringing_phone(agents: dict[str, Agent]) -> None:
    alice, bob, carol = agents["2001"], agents["2002"], agents["2003"]
    assert bob.register().status == 200
    status, _, _, granted = subscribe(alice, "2002", "dialog")
    assert (status, granted) == (200, 600)
    first = alice.incoming("NOTIFY")
    assert first.get("event") == "dialog"
    assert (first.get("subscription-state") or "").startswith("active;expires=")
    root = dialog_info(first)
    assert root.get("version") == "0" and root.get("state") == "full"
    assert root.get("entity") == f"sip:2002@{DOMAIN}" and dialog_states(root) == []
    # Carol calls Bob: Bob's phone rings (early), then refuses: idle again.
    assert carol.send_request("INVITE", f"sip:2002@{DOMAIN}", headers=["Content-Type: application/sdp"],
                              body=SDP) is None
    invite_to_bob = bob.incoming("INVITE", status=None)
    root = dialog_info(alice.incoming("NOTIFY"))
    assert root.get("version") == "1" and dialog_states(root) == ["early"]
    assert [d.get("direction") for d in root] == ["recipient"]
    bob.answer(invite_to_bob, 486)
    root = dialog_info(alice.incoming("NOTIFY"))
    assert root.get("version") == "2" and dialog_states(root) == []
    assert carol.response("INVITE").status == 486


def test_unknown_package_is_489_with_the_packages_served(agents: dict[str, Agent]) -> None:
    response = agents["2001"].request("SUBSCRIBE", f"sip:2002@{DOMAIN}", headers=["Event: conference",
                                                                                "Expires: 600"])
    assert response.status == 489
    assert response.get("allow-events") == "presence, dialog, message-summary"


def test_too_brief_then_expiry_ends_with_a_terminated_notify(agents: dict[str, Agent]) -> None:
    alice = agents["2001"]
    status, *_ = subscribe(alice, "2002", "dialog", expires=1)
    assert status == 423
    status, _, _, granted = subscribe(alice, "2002", "dialog", expires=2)
    assert (status, granted) == (200, 2)
    assert (alice.incoming("NOTIFY").get("subscription-state") or "").startswith("active;expires=")
    ended = alice.incoming("NOTIFY", timeout=5.0)
    assert ended.get("subscription-state") == "terminated;reason=timeout"
    dialog_info(ended)


def test_refresh_and_unsubscribe_in_the_dialog(agents: dict[str, Agent]) -> None:
    alice = agents["2001"]
    status, call_id, from_tag, _ = subscribe(alice, "2002", "presence")
    assert status == 200
    first = alice.incoming("NOTIFY")
    to_tag = first.from_.tag
    assert first.get("content-type") == "application/pidf+xml" and b"<basic>closed</basic>" in first.body
    refreshed = alice.request("SUBSCRIBE", f"sip:2002@{DOMAIN}", headers=["Event: presence", "Expires: 300"],
                              call_id=call_id, from_tag=from_tag, to_tag=to_tag)
    assert refreshed.status == 200 and refreshed.get("expires") == "300"
    assert (alice.incoming("NOTIFY").get("subscription-state") or "").startswith("active;expires=")
    gone = alice.request("SUBSCRIBE", f"sip:2002@{DOMAIN}", headers=["Event: presence", "Expires: 0"],
                         call_id=call_id, from_tag=from_tag, to_tag=to_tag)
    assert gone.status == 200
    assert (alice.incoming("NOTIFY").get("subscription-state") or "").startswith("terminated")
    again = alice.request("SUBSCRIBE", f"sip:2002@{DOMAIN}", headers=["Event: presence", "Expires: 300"],
                          call_id=call_id, from_tag=from_tag, to_tag=to_tag)
    assert again.status == 481


def test_presence_follows_registration(agents: dict[str, Agent]) -> None:
    alice, bob = agents["2001"], agents["2002"]
    assert subscribe(alice, "2002", "presence")[0] == 200
    assert b"<basic>closed</basic>" in alice.incoming("NOTIFY").body
    assert bob.register().status == 200
    online = alice.incoming("NOTIFY")
    assert b"<basic>open</basic>" in online.body and b"Available" in online.body
    assert bob.register(expires=0).status == 200
    assert b"<basic>closed</basic>" in alice.incoming("NOTIFY").body


def test_who_may_subscribe(agents: dict[str, Agent]) -> None:
    alice = agents["2001"]
    unauthenticated = alice.request("SUBSCRIBE", f"sip:2002@{DOMAIN}", headers=["Event: dialog"],
                                    authenticate=False)
    assert unauthenticated.status == 407
    assert subscribe(alice, "9999", "dialog")[0] == 404
    assert subscribe(alice, "2002", "dialog", extra=["Accept: text/plain"])[0] == 406
    for target in ("2002", "2003", "3001"):
        assert subscribe(alice, target, "dialog")[0] == 200  # company visibility: sales too
    assert subscribe(alice, "2002", "presence")[0] == 403  # max_subscriptions: 3
    assert subscribe(alice, "2002", "presence", expires=0)[0] == 200  # a fetch holds nothing
    publish = alice.request("PUBLISH", f"sip:2001@{DOMAIN}", headers=["Event: presence"])
    assert publish.status == 405


def test_department_visibility(tmp_path: Path) -> None:
    plan = PLAN.replace("features: {", "features: {presence_visibility: department, ")
    for server in start(tmp_path, plan):
        alice = Agent("2001", PASSWORDS["2001"], ("127.0.0.1", server.udp_port))
        try:
            assert subscribe(alice, "2002", "dialog")[0] == 200
            assert subscribe(alice, "3001", "dialog")[0] == 403
        finally:
            alice.close()


def test_message_is_relayed_to_every_contact(agents: dict[str, Agent], server: RunningServer) -> None:
    alice, bob = agents["2001"], agents["2002"]
    desk = Agent("2002", PASSWORDS["2002"], ("127.0.0.1", server.udp_port))
    try:
        assert bob.register().status == 200 and desk.register().status == 200
        assert alice.send_request("MESSAGE", f"sip:2002@{DOMAIN}", headers=["Content-Type: text/plain"],
                                  body="hello Bob".encode()) is None
        for phone in (bob, desk):
            got = phone.incoming("MESSAGE")
            assert got.body == b"hello Bob" and got.get("content-type") == "text/plain"
            assert f"<sip:2001@{DOMAIN}>" in (got.get("from") or "")
        assert alice.response("MESSAGE").status == 200
    finally:
        desk.close()


def test_message_for_an_offline_extension_waits_for_its_registration(agents: dict[str, Agent]) -> None:
    alice, bob = agents["2001"], agents["2002"]
    kept = alice.request("MESSAGE", f"sip:2002@{DOMAIN}", headers=["Content-Type: text/plain"],
                         body="call me back".encode())
    assert kept.status == 202
    too_big = alice.request("MESSAGE", f"sip:2002@{DOMAIN}", headers=["Content-Type: text/plain"], body=b"x" * 201)
    assert too_big.status == 413
    nobody = alice.request("MESSAGE", f"sip:9999@{DOMAIN}", headers=["Content-Type: text/plain"], body=b"hi")
    assert nobody.status == 404
    assert bob.register().status == 200
    delivered = bob.incoming("MESSAGE", timeout=5.0)
    assert delivered.body == b"call me back" and delivered.get("date")
    # Delivered once: the next registration brings nothing again.
    assert bob.register().status == 200
    assert bob.nothing("MESSAGE", 1.0)


def test_the_subscription_2xx_copies_the_record_route(agents: dict[str, Agent]) -> None:
    """§12.1.1: a proxy that record-routed the SUBSCRIBE (the cluster's
    edge) stays in the dialog: the 200 hands the subscriber the route set."""
    route = "<sip:127.0.0.1:9;lr>"
    response = agents["2001"].request("SUBSCRIBE", f"sip:2002@{DOMAIN}", headers=[
        "Event: presence", "Expires: 600", f"Record-Route: {route}"])
    assert response.status == 200 and response.get_all("record-route") == [route]


def test_a_senders_name_with_a_line_break_stays_inside_the_from_header(tmp_path: Path) -> None:
    # Names can come from the API, the console or a directory sync.
    plan = PLAN.replace("2001: {name: Alice,", '2001: {name: "Alice\\r\\nX-Injected: yes",')
    for server in start(tmp_path, plan):
        alice = Agent("2001", PASSWORDS["2001"], ("127.0.0.1", server.udp_port))
        bob = Agent("2002", PASSWORDS["2002"], ("127.0.0.1", server.udp_port))
        try:
            assert bob.register().status == 200
            alice.send_request("MESSAGE", f"sip:2002@{DOMAIN}", headers=["Content-Type: text/plain"], body=b"hi")
            got = bob.incoming("MESSAGE")
            assert got.get("x-injected") is None and got.body == b"hi"
            assert (got.get("from") or "").startswith(f'"Alice  X-Injected: yes" <sip:2001@{DOMAIN}>')
        finally:
            alice.close()
            bob.close()


def test_message_needs_the_senders_credentials(agents: dict[str, Agent]) -> None:
    alice, bob = agents["2001"], agents["2002"]
    assert bob.register().status == 200
    refused = alice.request("MESSAGE", f"sip:2002@{DOMAIN}", headers=["Content-Type: text/plain"],
                            body=b"who am I?", authenticate=False)
    assert refused.status == 407 and refused.get("proxy-authenticate")
    assert bob.nothing("MESSAGE", 1.0)
