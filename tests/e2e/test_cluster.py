"""Two PBX nodes behind a real Kamailio, sharing one PostgreSQL (issue 19).

Phones know only the edge: they register through it (it adds Path and
dispatches by Call-ID hash), and call each other whichever node takes the
call; the node reaches the callee back through the edge. Killing a node
loses nothing lasting: the phones stay registered and the next calls go to
the other node.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pbx.sip.message import Response
from pbx.store.change_events import announce
from pbx.store.db import make_engine
from pbx.store.voicemail import VoicemailStore

from tests.sipclient import SipClient

from .cluster import NODES, Cluster, start_cluster
from .harness import DOMAIN, rows_once
from .phone import Phone, PhoneFactory
from .sipua import SipUA, sdp

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(240)]

DIALPLAN = """\
domain: pbx.example.com
departments:
  sales: {name: Sales}
extensions:
  1001: {name: An Nguyen, department: sales, password: an-secret-1001}
  1002: {name: Binh Tran, department: sales, password: binh-secret-1002}
  1003: {name: Chau Le, department: sales, password: chau-secret-1003}
  1004: {name: Dung Pham, department: sales, password: dung-secret-1004}
hunt_groups:
  "701": {name: Round, strategy: circular, members: ["1002", "1003", "1004"]}
  "702": {name: Desk, strategy: linear, skip_busy: true, members: ["1003", "1004"]}
security: {trusted_proxies: [127.0.0.1]}
voicemail: {enabled: false}   # a declined or busy call must come back declined or busy
"""
PASSWORDS = {"1001": "an-secret-1001", "1002": "binh-secret-1002", "1003": "chau-secret-1003",
             "1004": "dung-secret-1004"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with start_cluster(tmp_path / "cluster", DIALPLAN) as running:
        yield running


def through_edge(phones: PhoneFactory, cluster: Cluster, number: str, **options: object) -> Phone:
    """A pjsua2 phone registered as ``number`` with the edge as registrar."""
    phone = phones(f"ext{number}")
    state = phone.register(number, PASSWORDS[number], DOMAIN, cluster.edge, **options)  # type: ignore[arg-type]
    assert state["code"] == 200, (state, cluster.output())
    cluster.wait_known(number)
    return phone


def call_once(caller: Phone, callee: Phone, number: str, cluster: Cluster) -> None:
    """``caller`` calls ``number`` through the edge; ``callee`` answers,
    media flows, the caller hangs up and the callee sees the BYE."""
    call = caller.call(f"sip:{number}@{cluster.edge};transport=udp", transport="udp")
    caller.wait_for("media_state", 10.0, call=call, status="active")
    incoming = callee.wait_for("media_state", 10.0, status="active")
    caller.hangup(call)
    callee.wait_call_state("DISCONNECTED", int(incoming["call"]), timeout=10.0)


def ended_rows(cluster: Cluster, count: int, timeout: float = 10.0, dialled: str | None = None) -> list[dict[str, str]]:
    """The CDR rows once ``count`` calls (to ``dialled``, if given) have
    ended (their rows are written just after the BYE is answered)."""
    return rows_once(cluster.cdrs, lambda row: bool(row["ended_at"]) and dialled in (None, row["dialed_number"]),
                     count, timeout)


def test_phones_call_each_other_through_either_node(cluster: Cluster, phones: PhoneFactory) -> None:
    alice = through_edge(phones, cluster, "1001")
    bob = through_edge(phones, cluster, "1003", auto_answer=200)
    # The edge hashes each call's Call-ID: call until both nodes have taken
    # one (at most 12 calls: a 1 in 2048 chance that one node gets them all).
    seen: set[str] = set()
    calls = 0
    while seen != set(NODES) and calls < 12:
        call_once(alice, bob, "1003", cluster)
        calls += 1
        seen = {row["node"] for row in ended_rows(cluster, calls)}
    rows = ended_rows(cluster, calls)
    assert len(rows) == calls
    assert {row["node"] for row in rows} == set(NODES), cluster.output()
    assert {(row["caller_number"], row["destination"], row["disposition"]) for row in rows} == {
        ("1001", "1003", "ANSWERED")}


def test_a_node_dies_new_calls_go_to_the_other_and_phones_stay_registered(
        cluster: Cluster, phones: PhoneFactory) -> None:
    alice = through_edge(phones, cluster, "1001")
    bob = through_edge(phones, cluster, "1003", auto_answer=200)
    # A call in progress on some node; that node dies (SIGKILL: no BYE, no
    # CDR end, no goodbye to the edge).
    call = alice.call(f"sip:1003@{cluster.edge};transport=udp", transport="udp")
    alice.wait_for("media_state", 10.0, call=call, status="active")
    bob_call = int(bob.wait_for("media_state", 10.0, status="active")["call"])
    [open_row] = rows_once(cluster.cdrs, lambda row: not row["ended_at"], 1)
    doomed = open_row["node"]
    [survivor] = [name for name in NODES if name != doomed]
    cluster.kill(doomed)
    # Its call is lost: the phones hang up themselves.
    alice.hangup(call)
    bob.hangup(bob_call)

    # The phones are still registered: a refresh through the edge reaches
    # the survivor (the dead node's probes fail, or the request times out
    # there and is retried), which has the bindings in the shared store.
    assert alice.reregister(timeout=15.0)["code"] == 200
    assert bob.reregister(timeout=15.0)["code"] == 200
    # New calls all succeed, on the survivor.
    for _ in range(3):
        call_once(alice, bob, "1003", cluster)
    finished = [row for row in ended_rows(cluster, 3) if row["node"] == survivor]
    assert len(finished) == 3, cluster.output()
    assert {row["disposition"] for row in finished} == {"ANSWERED"}

    # The dead node comes back: the call it lost is closed as INTERRUPTED,
    # no other row touched.
    cluster.nodes[doomed].restart()
    cluster.killed.discard(doomed)
    rows = {row["call_id"]: row for row in ended_rows(cluster, 4)}
    assert rows[open_row["call_id"]]["disposition"] == "INTERRUPTED", cluster.output()
    assert sorted(row["disposition"] for row in rows.values()) == ["ANSWERED"] * 3 + ["INTERRUPTED"]


def test_hunt_group_round_robin_carries_on_across_nodes(cluster: Cluster, phones: PhoneFactory) -> None:
    alice = through_edge(phones, cluster, "1001")
    members = {number: through_edge(phones, cluster, number, auto_answer=200) for number in ("1002", "1003", "1004")}
    order = ["1002", "1003", "1004"]
    calls = 0
    nodes: set[str] = set()
    while calls < 6 or (nodes != set(NODES) and calls < 12):
        reloads = {name: len(server.lines_with("store_reloaded")) for name, server in cluster.nodes.items()}
        call = alice.call(f"sip:701@{cluster.edge};transport=udp", transport="udp")
        alice.wait_for("media_state", 10.0, call=call, status="active")
        alice.hangup(call)
        calls += 1
        row = ended_rows(cluster, calls, dialled="701")[-1]
        nodes.add(row["node"])
        # The next call may land on the other node: it has heard of the
        # rotation's move (the hunt row's NOTIFY) before it is placed.
        for name, server in cluster.nodes.items():
            if name != row["node"]:
                server.wait_lines("store_reloaded", reloads[name] + 1)
        member = members[row["answered_by"]]
        member.wait_call_state("DISCONNECTED", timeout=10.0)
    rows = sorted(ended_rows(cluster, calls, dialled="701"), key=lambda row: row["started_at"])
    assert [row["answered_by"] for row in rows] == [order[i % 3] for i in range(calls)], cluster.output()
    assert {row["node"] for row in rows} == set(NODES)


BUDGET_PLAN = """\
domain: pbx.example.com
timezone: Asia/Ho_Chi_Minh
departments:
  office: {{name: Office, class_of_service: office}}
extensions:
  1001: {{name: Caller, department: office, password: caller-secret-1001}}
number_plans:
  vietnam:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    entries:
      - {{pattern: "00 .", class: international}}
classes_of_service:
  office: {{allow: [international]}}
trunks:
  carrier:
    gateways: [{{host: 127.0.0.1, port: {gateway}}}]
routes:
  - {{name: abroad, classes: [international], trunk: carrier}}
billing:
  currency: VND
  tariffs:
    - {{id: abroad, classes: [international], per_minute: 5000, increment: 60/60}}
media: {{announce_refusals: false}}
"""


@pytest.mark.parametrize(("limits", "placed", "status", "event", "reason"), [
    # Budget 16000, each call reserves 5000 (60 s at 5000/min): room for three.
    ('budgets: {reserve_seconds: 60, extensions: {"1001": 16000}}', 3, 403, "budget_exhausted", "budget_exhausted"),
    # Two outside calls up at once, whichever node places them.
    ("security: {trusted_proxies: [127.0.0.1], outside_calls: {simultaneous: 2, per_minute: 50}}",
     2, 486, "call_limit_hit", "outside_calls_simultaneous_limit"),
], ids=["budget", "simultaneous_cap"])
def test_ten_calls_at_once_across_nodes_get_exactly_the_room_there_is(
        tmp_path: Path, limits: str, placed: int, status: int, event: str, reason: str) -> None:
    # The carrier takes the INVITEs and never answers: the calls placed keep
    # what they hold while the others ask, on whichever node the edge picks.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as carrier:
        carrier.bind(("127.0.0.1", 0))
        plan = BUDGET_PLAN.format(gateway=carrier.getsockname()[1]) + limits + "\n"
        with start_cluster(tmp_path / "cluster", plan) as cluster, \
                SipUA.start(("127.0.0.1", cluster.edge_port), "1001", "caller-secret-1001", DOMAIN) as caller:
            for n in range(10):
                caller.invite("0081312345678", body=sdp(40000 + 2 * n))
            refusals: dict[str, Response] = {}   # by Call-ID: an unACKed refusal comes again
            while len(refusals) < 10 - placed:
                response = caller.expect(lambda m: isinstance(m, Response) and m.status == status, timeout=15.0)
                assert isinstance(response, Response)
                refusals[response.call_id] = response

            def lines(text: str) -> dict[str, list[str]]:
                return {name: server.lines_with(f'"event":"{text}"') for name, server in cluster.nodes.items()}

            deadline = time.monotonic() + 15.0
            while sum(map(len, lines("trunk_invite_sent").values())) < placed and time.monotonic() < deadline:
                time.sleep(0.1)
            sent, refused, routed = lines("trunk_invite_sent"), lines(event), lines("call_routed")
            output = cluster.output()
    assert all(reason in (r.get("reason") or "") for r in refusals.values()), refusals
    # Ten calls, each either placed or refused.
    assert sum(map(len, sent.values())) == placed, output
    assert sum(map(len, refused.values())) == 10 - placed, output
    # Both nodes took some of the ten (the edge hashes Call-IDs: all ten
    # on one node would happen once in 512 runs).
    assert all(routed.values()), {name: len(found) for name, found in routed.items()}


def test_a_member_on_a_call_through_one_node_is_busy_for_the_other(cluster: Cluster, phones: PhoneFactory) -> None:
    alice = through_edge(phones, cluster, "1001")
    binh = through_edge(phones, cluster, "1002")
    chau = through_edge(phones, cluster, "1003", auto_answer=200)
    dung = through_edge(phones, cluster, "1004", auto_answer=200)
    # Alice talks to Chau (1003) through one node ...
    busy_call = alice.call(f"sip:1003@{cluster.edge};transport=udp", transport="udp")
    alice.wait_for("media_state", 10.0, call=busy_call, status="active")
    chau.wait_for("media_state", 10.0, status="active")
    [open_row] = rows_once(cluster.cdrs, lambda row: not row["ended_at"], 1)
    holder = open_row["node"]
    for name, server in cluster.nodes.items():
        if name != holder:  # ... and the other node has heard that Chau is on a call
            server.wait_lines('"topic":"presence"')
    # ... so group 702 (linear, skip_busy: Chau first) rings Dung, whichever
    # node takes the call; call until the other node has taken one.
    nodes: set[str] = set()
    calls = 0
    while not nodes - {holder} and calls < 10:
        call = binh.call(f"sip:702@{cluster.edge};transport=udp", transport="udp")
        binh.wait_for("media_state", 10.0, call=call, status="active")
        binh.hangup(call)
        dung.wait_call_state("DISCONNECTED", timeout=10.0)
        calls += 1
        row = ended_rows(cluster, calls, dialled="702")[-1]
        assert row["answered_by"] == "1004", (row, cluster.output())
        nodes.add(row["node"])
    assert nodes - {holder}, f"no group call landed on the node without Chau's call in {calls} calls"
    alice.hangup(busy_call)


def test_cancel_and_decline_through_the_edge(cluster: Cluster, phones: PhoneFactory) -> None:
    alice = through_edge(phones, cluster, "1001")
    bob = through_edge(phones, cluster, "1002")
    chau = through_edge(phones, cluster, "1003", auto_answer=486)
    # Alice gives up while Bob's phone rings: the CANCEL follows the INVITE
    # through the edge to the node, and the node's CANCEL reaches Bob.
    call = alice.call(f"sip:1002@{cluster.edge};transport=udp", transport="udp")
    bob.wait_for("incoming_call", 10.0)
    alice.wait_call_state("EARLY", call, timeout=10.0)
    assert alice.hangup(call)["code"] == 487
    bob.wait_call_state("DISCONNECTED", timeout=10.0)
    # Chau's phone is busy: the 486 comes back through the edge.
    call = alice.call(f"sip:1003@{cluster.edge};transport=udp", transport="udp")
    assert alice.wait_call_state("DISCONNECTED", call, timeout=10.0)["code"] == 486
    rows = {row["dialed_number"]: row for row in ended_rows(cluster, 2)}
    assert (rows["1002"]["disposition"], rows["1002"]["hangup_side"]) == ("CANCELLED", "caller"), cluster.output()
    assert rows["1003"]["disposition"] == "BUSY", cluster.output()


def test_the_edge_relays_nothing_in_a_dialog_that_is_not_to_or_from_a_node(cluster: Cluster) -> None:
    # A forged in-dialog request naming the edge in its Route and a host
    # outside as its target: an open relay would pass it on.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger:
        forger.bind(("127.0.0.1", 0))
        forger.settimeout(5.0)
        port = forger.getsockname()[1]
        forger.sendto((
            "MESSAGE sip:victim@192.0.2.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKforged1;rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:spam@example.com>;tag=f1\r\nTo: <sip:victim@192.0.2.1>;tag=t1\r\n"
            f"Call-ID: forged-{port}\r\nCSeq: 2 MESSAGE\r\n"
            f"Route: <sip:{cluster.edge};lr>\r\n"
            "Content-Type: text/plain\r\nContent-Length: 4\r\n\r\nspam").encode(), ("127.0.0.1", cluster.edge_port))
        answer = forger.recv(4096)
    assert answer.startswith(b"SIP/2.0 403 Not Relaying"), answer


GUARDED = DIALPLAN.replace("security: {trusted_proxies: [127.0.0.1]}",
                           "security: {trusted_proxies: [127.0.0.1], max_auth_failures: 4, block_seconds: 120}")


def test_password_guesses_spread_over_the_nodes_add_up_to_one_block(tmp_path: Path) -> None:
    """Behind the edge a guesser's attempts land on either node. Each node
    counts the other's failures too, so four wrong passwords block the pair
    whichever nodes saw them, not four per node."""
    with start_cluster(tmp_path / "cluster", GUARDED) as cluster:
        a, b = (cluster.nodes[name] for name in NODES)
        with SipClient("udp", ("127.0.0.1", a.udp_port), timeout=1.5) as to_a, \
                SipClient("udp", ("127.0.0.1", b.udp_port), timeout=1.5) as to_b:
            answers = []
            for client in (to_a, to_b, to_a):
                response = client.register("1002", "wrong-guess", DOMAIN)
                answers.append(None if response is None else response.status)
                time.sleep(0.5)  # the failure reaches the other node (a NOTIFY, milliseconds)
            assert answers == [401, 401, 401], cluster.output()
            # The fourth guess is node b's second: blocked all the same, so
            # it is dropped unanswered (node b counted a's two as well).
            assert to_b.register("1002", "wrong-guess", DOMAIN) is None, cluster.output()
            [line] = b.wait_lines('"event":"security_block"')
            assert '"failures":4' in line
            time.sleep(0.5)
            # Node a holds the block too: the next guess there goes unanswered.
            assert to_a.register("1002", "wrong-guess", DOMAIN) is None, cluster.output()
            # The right password is still served from the same address (a
            # blocked pair's credentials are checked once per
            # blocked_retry_seconds, 2 s; a phone's retransmission gets there).
            time.sleep(2.1)
            ok = to_a.register("1002", "binh-secret-1002", DOMAIN)
            assert ok is not None and ok.status == 200


def test_a_phone_on_tcp_calls_and_is_called_through_the_edge(cluster: Cluster, phones: PhoneFactory) -> None:
    """The edge takes TCP as well as UDP: a phone registered over TCP keeps
    its connection to the edge, and the node's INVITE reaches it back over
    that connection (the Path names it), whichever node takes the call. The
    phones' ACKs and BYEs come back through the edge too: the node copies the
    edge's Record-Route into its 2xx (RFC 3261 §12.1.1)."""
    tcp_phone = through_edge(phones, cluster, "1001", transport="tcp", auto_answer=200)
    udp_phone = through_edge(phones, cluster, "1003", auto_answer=200)
    # TCP caller to UDP callee, then UDP caller to the TCP callee.
    for caller, callee, number, transport in ((tcp_phone, udp_phone, "1003", "tcp"),
                                              (udp_phone, tcp_phone, "1001", "udp")):
        call = caller.call(f"sip:{number}@{cluster.edge};transport={transport}", transport=transport)
        caller.wait_for("media_state", 10.0, call=call, status="active")
        incoming = callee.wait_for("media_state", 10.0, status="active")
        caller.hangup(call)
        callee.wait_call_state("DISCONNECTED", int(incoming["call"]), timeout=10.0)
    rows = ended_rows(cluster, 2)
    assert sorted((row["caller_number"], row["destination"], row["disposition"]) for row in rows) == [
        ("1001", "1003", "ANSWERED"), ("1003", "1001", "ANSWERED")], cluster.output()


def test_a_phone_on_tls_calls_and_is_called_through_the_edge(tmp_path: Path, phones: PhoneFactory) -> None:
    """The edge ends the phones' TLS (its certificate checked by the phone
    against the test CA) and reaches the nodes over UDP; the node's INVITE
    goes back to the phone over the phone's TLS connection."""
    if not list(Path("/usr/lib").glob("*/kamailio/modules/tls.so")):
        pytest.skip("Kamailio's tls module is not installed (make deps: kamailio-tls-modules)")
    with start_cluster(tmp_path / "cluster", DIALPLAN, tls=True) as cluster:
        secure = phones("ext1001", tls_ca=cluster.ca_file)
        state = secure.register("1001", PASSWORDS["1001"], DOMAIN, cluster.edge_tls, transport="tls",
                                auto_answer=200)
        assert state["code"] == 200, (state, cluster.output())
        cluster.wait_known("1001")
        plain = through_edge(phones, cluster, "1003", auto_answer=200)
        for caller, callee, uri, transport in (
                (secure, plain, f"sip:1003@{cluster.edge_tls};transport=tls", "tls"),
                (plain, secure, f"sip:1001@{cluster.edge};transport=udp", "udp")):
            call = caller.call(uri, transport=transport)
            caller.wait_for("media_state", 10.0, call=call, status="active")
            incoming = callee.wait_for("media_state", 10.0, status="active")
            caller.hangup(call)
            callee.wait_call_state("DISCONNECTED", int(incoming["call"]), timeout=10.0)
        rows = ended_rows(cluster, 2)
        assert sorted((row["caller_number"], row["destination"], row["disposition"]) for row in rows) == [
            ("1001", "1003", "ANSWERED"), ("1003", "1001", "ANSWERED")], cluster.output()


def flood_answers(edge_port: int, source: str, count: int) -> int:
    """Send ``count`` OPTIONS to the edge from ``source`` as fast as it
    goes; how many were answered."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(1.0)
        port = sock.getsockname()[1]
        for n in range(count):
            sock.sendto((f"OPTIONS sip:127.0.0.1:{edge_port} SIP/2.0\r\n"
                         f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bKflood{n};rport\r\n"
                         f"Max-Forwards: 70\r\nFrom: <sip:flood@{source}>;tag=f\r\n"
                         f"To: <sip:127.0.0.1:{edge_port}>\r\nCall-ID: flood-{source}-{n}\r\n"
                         "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(), ("127.0.0.1", edge_port))
        answered = 0
        try:
            while True:
                sock.recv(4096)
                answered += 1
        except TimeoutError:
            return answered


def test_the_edge_ignores_a_flooding_address_and_serves_the_others(cluster: Cluster) -> None:
    """The nodes do not limit the edge (it speaks for every phone), so the
    edge guards against floods itself: one address over FLOOD_REQUESTS
    (400) per 2 s is ignored; another address is served meanwhile."""
    flooded = flood_answers(cluster.edge_port, "127.0.0.1", 2000)
    assert 100 <= flooded < 1000, flooded  # pike samples: it trips somewhat before the nominal 400
    assert flood_answers(cluster.edge_port, "127.0.0.2", 20) == 20


def test_a_message_kept_by_another_node_lights_the_lamp_at_once(tmp_path: Path, phones: PhoneFactory) -> None:
    """A node that keeps a message tells the others (NOTIFY, topic
    voicemail), so a phone whose subscription another node holds sees its
    lamp within moments, not at the next 30 s read-back."""
    plan = DIALPLAN.replace("voicemail: {enabled: false}", "voicemail: {enabled: true}")
    with start_cluster(tmp_path / "cluster", plan) as cluster:
        bob = through_edge(phones, cluster, "1002", mwi=True, outbound_proxy=True)
        bob.wait_for(lambda e: e.get("event") == "mwi" and "Messages-Waiting: no" in str(e.get("message")), 10.0)
        # Another node (here: the test, named so) keeps a message for 1002
        # and says so, as pbx.voicemail.service does through the app.
        engine = make_engine(cluster.db_url)
        try:
            VoicemailStore(engine).add(mailbox="1002", caller_number="1001", caller_name="An", call_uuid="x",
                                       received_at=datetime.now(UTC), seconds=3.0, file="1002/x.wav")
            with engine.begin() as conn:
                announce(conn, "node-elsewhere", "voicemail", ["1002"])
        finally:
            engine.dispose()
        bob.wait_for(lambda e: e.get("event") == "mwi" and "Messages-Waiting: yes" in str(e.get("message")), 5.0)


def test_calls_to_a_conference_room_all_meet_on_one_node(tmp_path: Path, phones: PhoneFactory) -> None:
    """A room's mixer lives in one process: the edge sends every call to a
    STICKY_NUMBERS number (851 here) to the node a hash of the number picks,
    whatever the Call-ID (with the Call-ID hash, six calls would land on one
    node only one time in 32)."""
    plan = DIALPLAN + 'conferences:\n  standup: {number: "851"}\n'
    with start_cluster(tmp_path / "cluster", plan) as cluster:
        alice = through_edge(phones, cluster, "1001")
        for done in range(1, 7):
            call = alice.call(f"sip:851@{cluster.edge};transport=udp", transport="udp")
            alice.wait_for("media_state", 10.0, call=call, status="active")
            alice.hangup(call)
            assert len(ended_rows(cluster, done, dialled="851")) == done, cluster.output()
        rows = ended_rows(cluster, 6, dialled="851")
        assert len(rows) == 6 and {row["destination"] for row in rows} == {"conference:standup"}, rows
        assert len({row["node"] for row in rows}) == 1, (rows, cluster.output())
