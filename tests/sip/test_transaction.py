"""The transaction layer (RFC 3261 §17, RFC 6026, RFC 3581) on a hand-held clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pbx.sip.address import Peer
from pbx.sip.errors import SipError
from pbx.sip.events import (
    AckReceived,
    Output,
    RequestReceived,
    ResponseReceived,
    Send,
    StrayResponse,
    TimedOut,
    TransactionKey,
    TransportFailed,
)
from pbx.sip.message import Request, Response, make_request, make_response, parse_via
from pbx.sip.parser import parse_message
from pbx.sip.timers import T1, T2, T4, TIMER_B, TIMER_D, TIMER_F, TIMER_J, TIMER_K, TimerValues
from pbx.sip.transaction import (
    IctState,
    InviteClientTransaction,
    IstState,
    NictState,
    NistState,
    NonInviteClientTransaction,
    TransactionLayer,
    TransactionState,
    client_key,
    response_destination,
    server_key,
    stamp_via,
)

from .wire import Clock, Wire

UAC = ("127.0.0.1", 5070)
UAS = ("127.0.0.1", 5060)
PHONE = Peer("udp", "192.0.2.10", 5062)


def register_request(branch: str = "z9hG4bK-reg-1", *, transport: str = "UDP", cseq: int = 1) -> Request:
    return make_request(
        "REGISTER",
        "sip:127.0.0.1:5060",
        [
            ("Via", f"SIP/2.0/{transport} 127.0.0.1:5070;branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", "<sip:1001@pbx.example.com>;tag=from-1"),
            ("To", "<sip:1001@pbx.example.com>"),
            ("Call-ID", "reg-call-1"),
            ("CSeq", f"{cseq} REGISTER"),
            ("Contact", "<sip:1001@127.0.0.1:5070>"),
        ],
    )


def invite_request(
    branch: str = "z9hG4bK-inv-1",
    *,
    via: str = "127.0.0.1:5070",
    transport: str = "UDP",
    call_id: str = "call-1",
    to_tag: str | None = None,
) -> Request:
    to = "<sip:1002@127.0.0.1:5060>" + (f";tag={to_tag}" if to_tag else "")
    return make_request(
        "INVITE",
        "sip:1002@127.0.0.1:5060",
        [
            ("Via", f"SIP/2.0/{transport} {via};branch={branch};rport"),
            ("Via", "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-further-down"),
            ("Max-Forwards", "70"),
            ("Route", "<sip:proxy.example.com;lr>"),
            ("From", '"Alice" <sip:1001@pbx.example.com>;tag=alice-1'),
            ("To", to),
            ("Call-ID", call_id),
            ("CSeq", "7 INVITE"),
            ("Contact", "<sip:1001@127.0.0.1:5070>"),
            ("Require", "100rel"),
            ("Content-Type", "application/sdp"),
        ],
        body=b"v=0\r\n",
    )


def ack_for_2xx(invite: Request, ok: Response, branch: str = "z9hG4bK-ack-2xx") -> Request:
    """The ACK a UAC core sends for a 2xx: a new transaction-less request (§13.2.2.4)."""
    return make_request(
        "ACK",
        invite.uri,
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch={branch}"),
            ("From", invite.get("from") or ""),
            ("To", ok.get("to") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.number} ACK"),
        ],
    )


def ack_for_non_2xx(invite: Request, final: Response) -> Request:
    """The ACK a client transaction sends for a 3xx-6xx: the INVITE's top Via."""
    return make_request(
        "ACK",
        invite.uri,
        [
            ("Via", invite.get_all("via")[0]),
            ("From", invite.get("from") or ""),
            ("To", final.get("to") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.number} ACK"),
        ],
    )


def sends(outputs: list[Output] | list[Send]) -> list[Send]:
    return [o for o in outputs if isinstance(o, Send)]


def status_lines(outputs: list[Output] | list[Send]) -> list[str]:
    return [s.data.split(b"\r\n", 1)[0].decode() for s in sends(outputs)]


def received_key(outputs: list[Output]) -> TransactionKey:
    (event,) = [o for o in outputs if isinstance(o, RequestReceived)]
    return event.key


def timer_firings(layer: TransactionLayer, until: float) -> list[tuple[float, list[Output]]]:
    """Fire the layer's timers one deadline at a time up to ``until``."""
    fired: list[tuple[float, list[Output]]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        fired.append((deadline, layer.on_timer(deadline)))
    return fired


# ---------------------------------------------------------------- client side


def test_register_retransmits_until_timer_f() -> None:
    wire, clock = Wire(loss=[True] * 20), Clock(0.0)
    uac = wire.endpoint(*UAC)
    key = uac.send_request(register_request(), now=clock.now)
    sent_at = wire.run_until_idle(clock)
    assert sent_at == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert uac.drain_events() == [TimedOut(key=key)]
    assert clock.now == TIMER_F
    assert len(uac.layer) == 0


def test_non_invite_retransmits_every_t2_once_proceeding() -> None:
    layer = TransactionLayer()
    dest = Peer("udp", *UAS)
    request = register_request()
    key, first = layer.send_request(request, dest, now=0.0)
    assert first == [Send(data=request.encode(), dest=dest)]
    assert [t for t, out in timer_firings(layer, 1.0)] == [0.5]
    trying = layer.receive_response(make_response(request, 100), dest, now=1.0)
    assert trying == [ResponseReceived(response=make_response(request, 100), key=key)]
    assert layer.state(key) is NictState.PROCEEDING
    # The E timer set in Trying (1.5) still fires; after that it is T2 each time.
    fired = timer_firings(layer, 20.0)
    assert [t for t, _ in fired] == [1.5, 5.5, 9.5, 13.5, 17.5]
    assert all(sends(out) == [Send(data=request.encode(), dest=dest)] for _, out in fired)


def test_loss_pattern_first_two_requests_lost_third_answered() -> None:
    wire, clock = Wire(loss=[True, True]), Clock(0.0)
    uac = wire.endpoint(*UAC)
    uas = wire.endpoint(*UAS, answer=lambda request: make_response(request, 200, to_tag="uas-1"))
    key = uac.send_request(register_request(), now=clock.now)
    sent_at = wire.run_until_idle(clock)
    assert wire.first_lines() == [
        ("REGISTER sip:127.0.0.1:5060 SIP/2.0", True),
        ("REGISTER sip:127.0.0.1:5060 SIP/2.0", True),
        ("REGISTER sip:127.0.0.1:5060 SIP/2.0", False),
        ("SIP/2.0 200 OK", False),
    ]
    assert sent_at == [0.0, 0.5, 1.5, 1.5]
    (response_event,) = uac.drain_events()
    assert isinstance(response_event, ResponseReceived)
    assert response_event.key == key and response_event.response.status == 200
    (request_event,) = uas.drain_events()
    assert isinstance(request_event, RequestReceived)
    # Idle means both sides' timers ran out: K at 1.5 + T4, J at 1.5 + 64*T1.
    assert clock.now == 1.5 + TIMER_J
    assert len(uac.layer) == len(uas.layer) == 0


def test_invite_client_timer_a_doubles_without_cap_until_timer_b() -> None:
    wire, clock = Wire(loss=[True] * 20), Clock(0.0)
    uac = wire.endpoint(*UAC)
    key = uac.send_request(invite_request(), now=clock.now)
    assert wire.run_until_idle(clock) == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert uac.drain_events() == [TimedOut(key=key)]
    assert clock.now == TIMER_B


def test_invite_client_over_tcp_sends_once_then_times_out() -> None:
    wire, clock = Wire(loss=[True], transport="tcp"), Clock(0.0)
    uac = wire.endpoint(*UAC)
    key = uac.send_request(invite_request(transport="TCP"), now=clock.now)
    assert wire.run_until_idle(clock) == [0.0]
    assert uac.drain_events() == [TimedOut(key=key)]
    assert clock.now == TIMER_B


def test_ack_for_486_is_built_by_the_transaction_and_resent_on_retransmission() -> None:
    # INVITE, 100, 486 get through; the ACK is lost, so the 486 comes again.
    wire, clock = Wire(loss=[False, False, False, True]), Clock(0.0)
    uac = wire.endpoint(*UAC)
    uas = wire.endpoint(*UAS, answer=lambda request: make_response(request, 486, to_tag="busy-1"))
    invite = invite_request()
    key = uac.send_request(invite, now=clock.now)
    wire.run_until_idle(clock)
    assert wire.first_lines() == [
        ("INVITE sip:1002@127.0.0.1:5060 SIP/2.0", False),
        ("SIP/2.0 100 Trying", False),
        ("SIP/2.0 486 Busy Here", False),
        ("ACK sip:1002@127.0.0.1:5060 SIP/2.0", True),
        ("SIP/2.0 486 Busy Here", False),  # timer G
        ("ACK sip:1002@127.0.0.1:5060 SIP/2.0", False),
    ]
    assert wire.log[4].at == T1
    first_ack, second_ack = wire.log[3], wire.log[5]
    assert first_ack.data == second_ack.data
    ack = parse_message(first_ack.data)
    assert isinstance(ack, Request)
    # §17.1.1.3: same Request-URI, Call-ID, From, branch; To of the response;
    # one Via; CSeq number with ACK; the Route set copied; no body.
    assert ack.get_all("via") == [invite.get_all("via")[0]]
    assert ack.get("to") == "<sip:1002@127.0.0.1:5060>;tag=busy-1"
    assert ack.get("from") == invite.get("from")
    assert ack.call_id == invite.call_id
    assert ack.get("cseq") == "7 ACK"
    assert ack.get_all("route") == ["<sip:proxy.example.com;lr>"]
    assert ack.get("max-forwards") == "70"
    assert not ack.has("require") and not ack.has("contact") and ack.body == b""
    events = uac.drain_events()
    assert [e.response.status for e in events if isinstance(e, ResponseReceived)] == [100, 486]
    assert all(e.key == key for e in events if isinstance(e, ResponseReceived))
    # The UAS saw the INVITE once; the ACK to a non-2xx is absorbed.
    assert [type(e) for e in uas.drain_events()] == [RequestReceived]


def test_cancel_waits_for_a_provisional_response() -> None:
    wire, clock = Wire(), Clock(0.0)
    uac = wire.endpoint(*UAC)
    uas = wire.endpoint(*UAS, layer=TransactionLayer(auto_trying=False))
    invite = invite_request()
    invite_key = uac.send_request(invite, now=clock.now)
    wire.run_until_idle(clock, until=0.1)
    cancel_key = uac.cancel(invite_key, now=clock.now)
    assert cancel_key == TransactionKey(False, "z9hG4bK-inv-1", "", "CANCEL")
    assert [line for line, _ in wire.first_lines()] == ["INVITE sip:1002@127.0.0.1:5060 SIP/2.0"]
    assert uac.cancel(invite_key, now=clock.now) == cancel_key  # asking twice changes nothing

    (request_event,) = uas.drain_events()
    assert isinstance(request_event, RequestReceived)
    uas.respond(request_event.key, make_response(request_event.request, 180, to_tag="uas-7"), now=clock.now)
    wire.run_until_idle(clock, until=0.2)
    lines = [line for line, _ in wire.first_lines()]
    assert lines == [
        "INVITE sip:1002@127.0.0.1:5060 SIP/2.0",
        "SIP/2.0 180 Ringing",
        "CANCEL sip:1002@127.0.0.1:5060 SIP/2.0",
    ]
    cancel = parse_message(wire.log[2].data)
    assert isinstance(cancel, Request)
    # §9.1: same Request-URI, Call-ID, From, To (the request's), CSeq number,
    # top Via; Route copied; no Require.
    assert cancel.get_all("via") == [invite.get_all("via")[0]]
    assert cancel.get("to") == invite.get("to")
    assert cancel.get("from") == invite.get("from")
    assert cancel.get("cseq") == "7 CANCEL"
    assert cancel.get_all("route") == invite.get_all("route")
    assert not cancel.has("require")

    # The UAS matches the CANCEL to the INVITE (§9.2), answers both.
    (cancel_event,) = uas.drain_events()
    assert isinstance(cancel_event, RequestReceived) and cancel_event.request.method == "CANCEL"
    assert cancel_event.key != request_event.key
    assert uas.layer.invite_key_for_cancel(cancel_event.request, cancel_event.source) == request_event.key
    uas.respond(cancel_event.key, make_response(cancel_event.request, 200, to_tag="uas-7"), now=clock.now)
    uas.respond(request_event.key, make_response(request_event.request, 487, to_tag="uas-7"), now=clock.now)
    wire.run_until_idle(clock)
    assert [line for line, _ in wire.first_lines()][3:] == [
        "SIP/2.0 200 OK",
        "SIP/2.0 487 Request Terminated",
        "ACK sip:1002@127.0.0.1:5060 SIP/2.0",
    ]
    statuses = [(e.key.method, e.response.status) for e in uac.drain_events() if isinstance(e, ResponseReceived)]
    assert statuses == [("INVITE", 180), ("CANCEL", 200), ("INVITE", 487)]
    assert len(uac.layer) == len(uas.layer) == 0


def test_cancel_goes_out_at_once_when_proceeding_and_not_after_a_final() -> None:
    layer = TransactionLayer()
    dest = Peer("udp", *UAS)
    invite = invite_request()
    key, _ = layer.send_request(invite, dest, now=0.0)
    layer.receive_response(make_response(invite, 100), dest, now=0.1)
    result = layer.cancel_request(key, now=0.2)
    assert result is not None
    cancel_key, out = result
    assert status_lines(out) == ["CANCEL sip:1002@127.0.0.1:5060 SIP/2.0"]
    assert layer.state(cancel_key) is NictState.TRYING

    other, _ = layer.send_request(invite_request("z9hG4bK-inv-2", call_id="call-2"), dest, now=0.0)
    layer.receive_response(make_response(invite_request("z9hG4bK-inv-2", call_id="call-2"), 603), dest, now=0.1)
    assert layer.cancel_request(other, now=0.2) is None  # §9.1: already final
    assert layer.cancel_request(TransactionKey(False, "z9hG4bK-none", "", "INVITE"), now=0.2) is None


def test_pending_cancel_is_dropped_when_a_final_comes_first() -> None:
    layer = TransactionLayer()
    dest = Peer("udp", *UAS)
    invite = invite_request()
    key, _ = layer.send_request(invite, dest, now=0.0)
    assert layer.cancel_request(key, now=0.1) == (TransactionKey(False, "z9hG4bK-inv-1", "", "CANCEL"), [])
    out = layer.receive_response(make_response(invite, 200, to_tag="t"), dest, now=0.2)
    assert status_lines(out) == []  # no CANCEL, and no ACK for a 2xx from the transaction
    assert [type(o) for o in out] == [ResponseReceived]
    assert layer.state(key) is IctState.ACCEPTED


def test_finished_client_transactions_keep_bytes_not_messages_and_still_answer_retransmissions() -> None:
    # Under load thousands of client transactions wait out timers D, K and M;
    # they keep the ACK bytes and the key, not the parsed request.
    layer = TransactionLayer()
    dest = Peer("udp", *UAS)
    invite = invite_request()
    busy, _ = layer.send_request(invite, dest, now=0.0)
    final = make_response(invite, 486, to_tag="busy-1")
    first = sends(layer.receive_response(final, dest, now=0.1))
    assert status_lines(first) == ["ACK sip:1002@127.0.0.1:5060 SIP/2.0"]
    held = layer._transactions[busy]
    assert isinstance(held, InviteClientTransaction) and held.request is None and held.data == b""
    again = sends(layer.receive_response(final, dest, now=1.0))  # the 486 retransmitted
    assert [s.data for s in again] == [first[0].data]
    assert layer.cancel_request(busy, now=1.1) is None
    assert layer.state(busy) is IctState.COMPLETED

    answered, _ = layer.send_request(invite_request("z9hG4bK-inv-2", call_id="call-2"), dest, now=0.0)
    layer.receive_response(make_response(invite_request("z9hG4bK-inv-2", call_id="call-2"), 200, to_tag="t"), dest,
                           now=0.1)
    held = layer._transactions[answered]
    assert isinstance(held, InviteClientTransaction) and held.request is None
    assert layer.state(answered) is IctState.ACCEPTED

    register = register_request()
    registered, _ = layer.send_request(register, dest, now=0.0)
    layer.receive_response(make_response(register, 200), dest, now=0.1)
    kept = layer._transactions[registered]
    assert isinstance(kept, NonInviteClientTransaction) and kept.data == b""
    assert sends(layer.on_timer(5.0)) == []  # no timer E after the final, §17.1.2.2
    assert layer.state(registered) is NictState.COMPLETED


def test_invite_client_accepted_passes_2xx_retransmissions_then_stray() -> None:
    layer = TransactionLayer()
    dest = Peer("udp", *UAS)
    invite = invite_request()
    key, _ = layer.send_request(invite, dest, now=0.0)
    ok = make_response(invite, 200, to_tag="t-1")
    assert layer.receive_response(ok, dest, now=1.0) == [ResponseReceived(response=ok, key=key)]
    # RFC 6026 §8.4: in Accepted, a retransmitted 2xx still goes to the TU.
    assert layer.receive_response(ok, dest, now=2.0) == [ResponseReceived(response=ok, key=key)]
    assert layer.receive_response(make_response(invite, 500), dest, now=2.5) == []
    assert [t for t, _ in timer_firings(layer, 100.0)] == [1.0 + 64 * T1]  # timer M
    assert key not in layer
    # §13.2.2.4: afterwards the TU sees it as stray and re-sends its ACK.
    assert layer.receive_response(ok, dest, now=40.0) == [StrayResponse(response=ok, source=dest)]


def test_responses_to_unknown_branches_are_stray() -> None:
    layer = TransactionLayer()
    response = make_response(register_request("z9hG4bK-never-sent"), 200)
    assert layer.receive_response(response, PHONE, now=0.0) == [StrayResponse(response=response, source=PHONE)]


def test_request_without_a_proper_branch_is_refused() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError, match="branch"):
        layer.send_request(register_request("no-cookie"), PHONE, now=0.0)
    layer.send_request(register_request(), PHONE, now=0.0)
    with pytest.raises(ValueError, match="already running"):
        layer.send_request(register_request(), PHONE, now=0.0)
    with pytest.raises(ValueError, match="ACK"):
        layer.send_request(ack_for_2xx(invite_request(), make_response(invite_request(), 200)), PHONE, now=0.0)


# ---------------------------------------------------------------- server side


def test_non_invite_server_absorbs_retransmissions_and_resends_last_response() -> None:
    layer = TransactionLayer()
    request = parse_message(register_request().encode())
    assert isinstance(request, Request)
    first = layer.receive_request(request, PHONE, now=0.0)
    key = received_key(first)
    assert layer.receive_request(request, PHONE, now=0.5) == []  # Trying: discarded
    trying = make_response(request, 100)
    assert layer.send_response(key, trying, now=0.6) == [Send(data=trying.encode(), dest=Peer("udp", "192.0.2.10", 5062))]
    assert layer.state(key) is NistState.PROCEEDING
    assert status_lines(layer.receive_request(request, PHONE, now=1.5)) == ["SIP/2.0 100 Trying"]
    ok = make_response(request, 200, to_tag="reg")
    layer.send_response(key, ok, now=2.0)
    assert layer.state(key) is NistState.COMPLETED
    again = layer.receive_request(request, PHONE, now=3.5)
    assert again == [Send(data=ok.encode(), dest=Peer("udp", "192.0.2.10", 5062))]
    # §17.2.2: another final from the TU is discarded.
    assert layer.send_response(key, make_response(request, 500), now=4.0) == []
    assert len(layer) == 1
    assert [t for t, _ in timer_firings(layer, 100.0)] == [2.0 + TIMER_J]
    assert len(layer) == 0 and layer.next_deadline() is None
    # Once the transaction is gone the TU's late answer goes nowhere.
    assert layer.send_response(key, ok, now=40.0) == []


def test_invite_server_timer_g_until_ack_then_timer_i() -> None:
    layer = TransactionLayer()
    invite = invite_request()
    first = layer.receive_request(invite, PHONE, now=0.0)
    assert status_lines(first) == ["SIP/2.0 100 Trying"]  # auto_trying, §17.2.1
    key = received_key(first)
    busy = make_response(invite, 486, to_tag="b")
    layer.send_response(key, busy, now=0.0)
    assert layer.state(key) is IstState.COMPLETED
    fired = timer_firings(layer, 12.0)
    assert [t for t, _ in fired] == [0.5, 1.5, 3.5, 7.5, 11.5]  # G doubles to T2
    assert all(status_lines(out) == ["SIP/2.0 486 Busy Here"] for _, out in fired)
    assert status_lines(layer.receive_request(invite, PHONE, now=11.8)) == ["SIP/2.0 486 Busy Here"]
    assert layer.receive_request(ack_for_non_2xx(invite, busy), PHONE, now=12.0) == []  # absorbed
    assert layer.state(key) is IstState.CONFIRMED
    assert layer.receive_request(invite, PHONE, now=12.5) == []  # Confirmed absorbs
    assert layer.receive_request(ack_for_non_2xx(invite, busy), PHONE, now=13.0) == []
    assert timer_firings(layer, 100.0) == [(12.0 + T4, [])]  # timer I, nothing sent
    assert key not in layer


def test_invite_server_timer_h_reports_missing_ack() -> None:
    layer = TransactionLayer()
    invite = invite_request()
    key = received_key(layer.receive_request(invite, PHONE, now=0.0))
    layer.send_response(key, make_response(invite, 603, to_tag="d"), now=0.0)
    fired = timer_firings(layer, 100.0)
    assert [t for t, _ in fired] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]
    assert fired[-1][1] == [TimedOut(key=key)]


def test_accepted_invite_server_absorbs_invite_retransmissions() -> None:
    # The bug RFC 6026 fixes: with the transaction gone after a 2xx, a
    # retransmitted INVITE looked new and reached the TU a second time.
    layer = TransactionLayer(retransmit_2xx=False)
    invite = invite_request()
    key = received_key(layer.receive_request(invite, PHONE, now=0.0))
    layer.send_response(key, make_response(invite, 200, to_tag="ok"), now=1.0)
    assert layer.state(key) is IstState.ACCEPTED
    for now in (1.5, 2.0, 4.0, 30.0):
        assert layer.receive_request(invite, PHONE, now=now) == []
    assert layer.send_response(key, make_response(invite, 486), now=2.0) == []  # no non-2xx after 2xx
    assert timer_firings(layer, 100.0) == [(1.0 + 64 * T1, [])]  # timer L, silently
    assert key not in layer


def test_layer_retransmits_2xx_until_the_ack_arrives() -> None:
    layer = TransactionLayer()
    invite = invite_request()
    key = received_key(layer.receive_request(invite, PHONE, now=0.0))
    ok = make_response(invite, 200, to_tag="ok-1")
    assert status_lines(layer.send_response(key, ok, now=0.0)) == ["SIP/2.0 200 OK"]
    fired = timer_firings(layer, 12.0)
    assert [t for t, _ in fired] == [0.5, 1.5, 3.5, 7.5, 11.5]  # §13.3.1.4: T1 doubling to T2
    assert all(sends(out) == [Send(data=ok.encode(), dest=Peer("udp", "192.0.2.10", 5062))] for _, out in fired)
    ack = ack_for_2xx(invite, ok)
    out = layer.receive_request(ack, PHONE, now=12.0)
    assert [type(o) for o in out] == [AckReceived]
    assert isinstance(out[0], AckReceived) and out[0].request.method == "ACK"
    # Retransmissions stop; the INVITE stays Accepted until timer L, silently.
    assert timer_firings(layer, 100.0) == [(64 * T1, [])]


def test_2xx_without_ack_times_out_at_timer_l() -> None:
    layer = TransactionLayer(retransmit_2xx=True)
    invite = invite_request()
    key = received_key(layer.receive_request(invite, PHONE, now=0.0))
    layer.send_response(key, make_response(invite, 200, to_tag="ok-1"), now=0.0)
    # The ACK of some other call does not stop it.
    other = ack_for_2xx(invite_request(call_id="other"), make_response(invite_request(call_id="other"), 200, to_tag="x"))
    assert [type(o) for o in layer.receive_request(other, PHONE, now=1.0)] == [AckReceived]
    fired = timer_firings(layer, 100.0)
    assert fired[-1] == (32.0, [TimedOut(key=key)])
    assert [t for t, _ in fired] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]


def test_2xx_retransmission_on_the_wire_until_the_uac_acks() -> None:
    # INVITE, 100, 200 pass; the UAC's ACK is lost; the UAS's layer resends
    # the 200; the UAC's transaction (Accepted) passes it up; its TU ACKs again.
    wire, clock = Wire(loss=[False, False, False, True]), Clock(0.0)
    uac = wire.endpoint(*UAC)
    uas = wire.endpoint(*UAS, answer=lambda request: make_response(request, 200, to_tag="uas-ok"))
    uac.send_request(invite_request(), now=clock.now)
    wire.run_until_idle(clock)
    assert wire.first_lines() == [
        ("INVITE sip:1002@127.0.0.1:5060 SIP/2.0", False),
        ("SIP/2.0 100 Trying", False),
        ("SIP/2.0 200 OK", False),
        ("ACK sip:1002@127.0.0.1:5060 SIP/2.0", True),
        ("SIP/2.0 200 OK", False),
        ("ACK sip:1002@127.0.0.1:5060 SIP/2.0", False),
    ]
    assert [d.at for d in wire.log] == [0.0, 0.0, 0.0, 0.0, 0.5, 0.5]
    assert [type(e) for e in uas.drain_events()] == [RequestReceived, AckReceived]
    assert clock.now == 64 * T1  # timers L and M end both sides
    assert len(uas.layer) == len(uac.layer) == 0


def test_auto_trying_can_be_left_to_the_tu() -> None:
    layer = TransactionLayer(auto_trying=False)
    invite = invite_request()
    out = layer.receive_request(invite, PHONE, now=0.0)
    assert [type(o) for o in out] == [RequestReceived]
    assert layer.receive_request(invite, PHONE, now=0.5) == []  # nothing to resend yet
    key = received_key(out)
    layer.send_response(key, make_response(invite, 180, to_tag="r"), now=0.6)
    assert status_lines(layer.receive_request(invite, PHONE, now=1.0)) == ["SIP/2.0 180 Ringing"]


def test_transport_failure_ends_the_transaction() -> None:
    layer = TransactionLayer()
    dest = Peer("tcp", "192.0.2.10", 5062, connection=4)
    key, _ = layer.send_request(invite_request(transport="TCP"), dest, now=0.0)
    assert layer.transport_failed(key, now=1.0) == [TransportFailed(key=key)]
    assert key not in layer and layer.next_deadline() is None
    assert layer.transport_failed(key, now=1.0) == []


def test_bad_via_is_a_sip_error() -> None:
    layer = TransactionLayer()
    no_via = make_request("OPTIONS", "sip:x@example.com", [("From", "<sip:a@b>;tag=1"), ("To", "<sip:x@example.com>"), ("Call-ID", "c"), ("CSeq", "1 OPTIONS")])
    with pytest.raises(SipError) as caught:
        layer.receive_request(no_via, PHONE, now=0.0)
    assert caught.value.reason == "missing_via"
    bad = make_request("OPTIONS", "sip:x@example.com", [("Via", "garbage"), *no_via.headers])
    with pytest.raises(SipError, match="Malformed Via"):
        layer.receive_request(bad, PHONE, now=0.0)


# ---------------------------------------------------------------- matching


def test_ack_matches_the_invite_and_cancel_has_its_own_key() -> None:
    invite = invite_request()
    busy = make_response(invite, 486, to_tag="b")
    key = server_key(invite)
    assert key == TransactionKey(True, "z9hG4bK-inv-1", "127.0.0.1:5070", "INVITE")
    assert server_key(ack_for_non_2xx(invite, busy)) == key  # §17.2.3: ACK counts as INVITE
    cancel = replace(invite, method="CANCEL", headers=tuple(
        (n, "7 CANCEL" if n == "cseq" else v) for n, v in invite.headers))  # fmt: skip
    assert server_key(cancel) == key._replace(method="CANCEL")
    # The ACK to a 2xx has its own branch: it matches nothing.
    assert server_key(ack_for_2xx(invite, make_response(invite, 200, to_tag="x"))) != key
    # Same branch from another sent-by is another transaction (§17.2.3).
    assert server_key(invite_request(via="127.0.0.1:5080")) != key
    # Host case does not matter; the branch is kept as is.
    assert server_key(invite_request(via="PC33.Example.COM:5070")) == server_key(invite_request(via="pc33.example.com:5070"))
    # Client side (§17.1.3): branch and CSeq method.
    assert client_key(busy) == TransactionKey(False, "z9hG4bK-inv-1", "", "INVITE")
    assert client_key(make_response(cancel, 200)) == TransactionKey(False, "z9hG4bK-inv-1", "", "CANCEL")


def test_cancel_finds_its_invite_in_the_layer() -> None:
    layer = TransactionLayer()
    invite = invite_request()
    invite_key = received_key(layer.receive_request(invite, PHONE, now=0.0))
    cancel = replace(invite, method="CANCEL", headers=tuple(
        (n, "7 CANCEL" if n == "cseq" else v) for n, v in invite.headers))  # fmt: skip
    cancel_out = layer.receive_request(cancel, PHONE, now=0.1)
    cancel_key = received_key(cancel_out)
    assert cancel_key != invite_key and len(layer) == 2
    assert layer.invite_key_for_cancel(cancel, PHONE) == invite_key
    stranger = replace(cancel, headers=tuple(
        (n, v.replace("z9hG4bK-inv-1", "z9hG4bK-other") if n == "via" else v) for n, v in cancel.headers))  # fmt: skip
    assert layer.invite_key_for_cancel(stranger, PHONE) is None


def rfc2543_invite(branch: str | None = None, *, cseq: int = 7, to_tag: str | None = None, method: str = "INVITE") -> Request:
    via = "SIP/2.0/UDP 192.0.2.10:5062" + (f";branch={branch}" if branch else "")
    to = "<sip:1002@pbx.example.com>" + (f";tag={to_tag}" if to_tag else "")
    return make_request(
        method,
        "sip:1002@pbx.example.com",
        [
            ("Via", via),
            ("From", "<sip:1001@pbx.example.com>;tag=old-1"),
            ("To", to),
            ("Call-ID", "legacy-1@192.0.2.10"),
            ("CSeq", f"{cseq} {method}"),
        ],
    )


@pytest.mark.parametrize("branch", [None, "1234abcd"])
def test_pre_3261_requests_match_by_their_fields(branch: str | None) -> None:
    layer = TransactionLayer()
    invite = rfc2543_invite(branch)
    key = received_key(layer.receive_request(invite, PHONE, now=0.0))
    assert key.sent_by == "" and key.method == "INVITE"
    # A retransmission matches and gets the 100 again.
    assert status_lines(layer.receive_request(invite, PHONE, now=0.5)) == ["SIP/2.0 100 Trying"]
    assert len(layer) == 1
    busy = make_response(invite, 486, to_tag="srv")
    layer.send_response(key, busy, now=1.0)
    # The ACK carries our To tag; it still matches (§17.2.3, second half).
    ack = rfc2543_invite(branch, to_tag="srv", method="ACK")
    assert layer.receive_request(ack, PHONE, now=1.2) == []
    assert layer.state(key) is IstState.CONFIRMED
    # A new CSeq is a new transaction.
    assert [type(o) for o in layer.receive_request(rfc2543_invite(branch, cseq=8), PHONE, now=2.0)] == [RequestReceived, Send]
    assert len(layer) == 2


# ---------------------------------------------------------------- response routing


@pytest.mark.parametrize(
    ("via", "source", "stamped", "dest"),
    [
        # sent-by is the source: nothing added, answer sent-by.
        ("SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1", Peer("udp", "192.0.2.10", 5062),
         "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1", Peer("udp", "192.0.2.10", 5062)),
        # Behind NAT without rport: received added, sent-by port kept (§18.2.2).
        ("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1", Peer("udp", "203.0.113.7", 40000),
         "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1;received=203.0.113.7", Peer("udp", "203.0.113.7", 5062)),
        # rport: filled with the source port, received added (RFC 3581 §4).
        ("SIP/2.0/UDP 10.0.0.5:5062;rport;branch=z9hG4bK1", Peer("udp", "203.0.113.7", 40000),
         "SIP/2.0/UDP 10.0.0.5:5062;rport=40000;branch=z9hG4bK1;received=203.0.113.7", Peer("udp", "203.0.113.7", 40000)),
        # rport even when nothing is translated: received is still added.
        ("SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;rport", Peer("udp", "192.0.2.10", 5062),
         "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;rport=5062;received=192.0.2.10", Peer("udp", "192.0.2.10", 5062)),
        # No port in sent-by, domain name host: received added, port 5060.
        ("SIP/2.0/UDP phone.example.com;branch=z9hG4bK1", Peer("udp", "192.0.2.10", 5062),
         "SIP/2.0/UDP phone.example.com;branch=z9hG4bK1;received=192.0.2.10", Peer("udp", "192.0.2.10", 5060)),
        # A forged received is overwritten with the real source.
        ("SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;received=198.51.100.1", Peer("udp", "192.0.2.10", 5062),
         "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;received=192.0.2.10", Peer("udp", "192.0.2.10", 5062)),
        # IPv6 written two ways is the same address.
        ("SIP/2.0/UDP [2001:db8::0:1]:5062;branch=z9hG4bK1", Peer("udp", "2001:db8::1", 5062),
         "SIP/2.0/UDP [2001:db8::0:1]:5062;branch=z9hG4bK1", Peer("udp", "2001:db8::0:1", 5062)),
        # maddr wins on unreliable transports (§18.2.2).
        ("SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;maddr=239.255.255.1", Peer("udp", "192.0.2.10", 5062),
         "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;maddr=239.255.255.1", Peer("udp", "239.255.255.1", 5062)),
        # Reliable: back on the same connection, whatever Via says.
        ("SIP/2.0/TCP 10.0.0.5:5062;rport;branch=z9hG4bK1", Peer("tcp", "203.0.113.7", 40001, connection=9),
         "SIP/2.0/TCP 10.0.0.5:5062;rport=40001;branch=z9hG4bK1;received=203.0.113.7",
         Peer("tcp", "203.0.113.7", 40001, connection=9)),
    ],
)  # fmt: skip
def test_stamp_via_and_response_destination(via: str, source: Peer, stamped: str, dest: Peer) -> None:
    request = make_request("OPTIONS", "sip:pbx.example.com", [
        ("Via", via + ", SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKdeeper"),
        ("From", "<sip:a@example.com>;tag=1"), ("To", "<sip:pbx.example.com>"),
        ("Call-ID", "c-1"), ("CSeq", "1 OPTIONS"),
    ])  # fmt: skip
    result = stamp_via(request, source)
    assert result.get_all("via") == [stamped, "SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKdeeper"]
    if stamped == via:
        assert result is request  # nothing to write: no copy
    assert response_destination(parse_via(stamped), source) == dest
    # The layer stamps the request it reports and answers that destination.
    layer = TransactionLayer()
    out = layer.receive_request(request, source, now=0.0)
    (event,) = out
    assert isinstance(event, RequestReceived) and event.request == result
    assert sends(layer.send_response(event.key, make_response(event.request, 200), now=0.0))[0].dest == dest


def test_response_reaches_a_phone_behind_nat_through_rport() -> None:
    wire, clock = Wire(), Clock(0.0)
    phone = wire.endpoint("10.0.0.5", 5062, public=("203.0.113.7", 40000))
    pbx = wire.endpoint(*UAS, answer=lambda request: make_response(request, 200, to_tag="p"))
    request = make_request("OPTIONS", "sip:127.0.0.1:5060", [
        ("Via", "SIP/2.0/UDP 10.0.0.5:5062;rport;branch=z9hG4bK-nat-1"),
        ("From", "<sip:1001@pbx.example.com>;tag=1"), ("To", "<sip:127.0.0.1>"),
        ("Call-ID", "nat-1"), ("CSeq", "1 OPTIONS"), ("Max-Forwards", "70"),
    ])  # fmt: skip
    key = phone.send_request(request, now=clock.now)
    wire.run_until_idle(clock)
    assert [(d.first_line, d.dest) for d in wire.log] == [
        ("OPTIONS sip:127.0.0.1:5060 SIP/2.0", Peer("udp", "127.0.0.1", 5060)),
        ("SIP/2.0 200 OK", Peer("udp", "203.0.113.7", 40000)),
    ]
    response = parse_message(wire.log[1].data)
    assert isinstance(response, Response)
    assert response.get_all("via")[0] == "SIP/2.0/UDP 10.0.0.5:5062;rport=40000;branch=z9hG4bK-nat-1;received=203.0.113.7"
    assert [type(e) for e in pbx.drain_events()] == [RequestReceived]
    assert [(type(e), getattr(e, "key", None)) for e in phone.drain_events()] == [(ResponseReceived, key)]


# ---------------------------------------------------------------- tables


@pytest.mark.parametrize(
    ("transport", "values"),
    [
        ("udp", {"a": 0.5, "b": 32.0, "d": 32.0, "e": 0.5, "f": 32.0, "g": 0.5, "h": 32.0, "i": 5.0, "j": 32.0, "k": 5.0}),
        ("tcp", {"a": 0.5, "b": 32.0, "d": 0.0, "e": 0.5, "f": 32.0, "g": 0.5, "h": 32.0, "i": 0.0, "j": 0.0, "k": 0.0}),
    ],
)
def test_table_4_timer_values(transport: str, values: dict[str, float]) -> None:
    timers = TimerValues()
    reliable = transport != "udp"
    computed = {
        "a": timers.a, "b": timers.b, "d": timers.d(reliable), "e": timers.e, "f": timers.f,
        "g": timers.g, "h": timers.h, "i": timers.i(reliable), "j": timers.j(reliable), "k": timers.k(reliable),
    }  # fmt: skip
    assert computed == values
    assert (timers.l, timers.m) == (64 * T1, 64 * T1)
    assert (T1, T2, T4, TIMER_B, TIMER_D, TIMER_F, TIMER_J, TIMER_K) == (0.5, 4.0, 5.0, 32.0, 32.0, 32.0, 32.0, 5.0)


def test_timer_values_scale_with_t1_and_refuse_nonsense() -> None:
    timers = TimerValues(t1=0.1, t2=1.0, t4=2.0)
    assert (timers.b, timers.f, timers.j(False), timers.d(False), timers.k(False)) == pytest.approx((6.4, 6.4, 6.4, 32.0, 2.0))
    with pytest.raises(ValueError):
        TimerValues(t1=0.0)
    with pytest.raises(ValueError):
        TimerValues(t1=5.0, t2=4.0)


def _drive(kind: str, status: int, transport: str) -> tuple[TransactionLayer, TransactionKey]:
    """One transaction of ``kind`` taken to its final response at t=0."""
    layer = TransactionLayer(retransmit_2xx=False)
    reliable = transport != "udp"
    peer = Peer(transport, "192.0.2.10", 5062, connection=3 if reliable else None)
    upper = transport.upper()
    if kind in ("nist", "ist"):
        request = register_request(transport=upper) if kind == "nist" else invite_request(transport=upper)
        key = received_key(layer.receive_request(request, peer, now=0.0))
        final = make_response(request, status, to_tag="t")
        layer.send_response(key, final, now=0.0)
        if kind == "ist" and status >= 300:
            layer.receive_request(ack_for_non_2xx(request, final), peer, now=0.0)
    else:
        request = register_request(transport=upper) if kind == "nict" else invite_request(transport=upper)
        key, _ = layer.send_request(request, peer, now=0.0)
        layer.receive_response(make_response(request, status, to_tag="t"), peer, now=0.0)
    return layer, key


@pytest.mark.parametrize(
    ("kind", "status", "transport", "state", "lifetime"),
    [
        ("nist", 200, "udp", NistState.COMPLETED, TIMER_J),
        ("nist", 200, "tcp", None, 0.0),
        ("nist", 403, "tls", None, 0.0),
        ("nict", 200, "udp", NictState.COMPLETED, T4),
        ("nict", 401, "tcp", None, 0.0),
        ("ist", 486, "udp", IstState.CONFIRMED, T4),  # after the ACK: timer I
        ("ist", 486, "tcp", None, 0.0),
        ("ist", 200, "udp", IstState.ACCEPTED, 64 * T1),  # timer L
        ("ist", 200, "tcp", IstState.ACCEPTED, 64 * T1),
        ("ict", 486, "udp", IctState.COMPLETED, TIMER_D),
        ("ict", 486, "tcp", None, 0.0),
        ("ict", 200, "udp", IctState.ACCEPTED, 64 * T1),  # timer M
        ("ict", 200, "tcp", IctState.ACCEPTED, 64 * T1),
    ],
)
def test_final_states_and_their_lifetimes(
    kind: str, status: int, transport: str, state: TransactionState | None, lifetime: float
) -> None:
    layer, key = _drive(kind, status, transport)
    assert layer.state(key) is state
    if state is None:
        assert len(layer) == 0 and layer.next_deadline() is None
        return
    assert layer.next_deadline() == lifetime
    assert layer.on_timer(lifetime - 0.001) == [] and key in layer
    assert layer.on_timer(lifetime) == []
    assert key not in layer and len(layer) == 0 and layer.next_deadline() is None


def test_many_transactions_share_one_heap_without_leaking() -> None:
    layer = TransactionLayer()
    dest = Peer("udp", *UAS)
    keys = []
    for n in range(3000):
        request = register_request(f"z9hG4bK-many-{n}")
        key, _ = layer.send_request(request, dest, now=n * 0.001)
        keys.append((key, request))
    assert len(layer) == 3000
    fired = layer.on_timer(1.0)  # E fired for the early ones: their entries moved
    assert len(fired) == 501 and all(isinstance(o, Send) for o in fired)
    failed = keys[:2000]
    for key, _ in failed:  # leaves their heap entries behind, stale
        assert layer.transport_failed(key, now=2.0) == [TransportFailed(key=key)]
    for n, (key, request) in enumerate(keys[2000:]):  # each response supersedes E/F
        layer.receive_response(make_response(request, 200), dest, now=4.0 + n * 0.001)
    assert len(layer) == 1000
    assert layer.next_deadline() == 4.0 + T4
    assert layer.on_timer(4.0 + T4 + 0.4995) == []
    assert len(layer) == 500 and layer.next_deadline() == pytest.approx(4.0 + T4 + 0.5)
    assert layer.on_timer(100.0) == []
    assert len(layer) == 0 and layer.next_deadline() is None
