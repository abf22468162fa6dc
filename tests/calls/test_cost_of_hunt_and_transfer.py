"""The cost of calls whose trunk leg is not the plain winner: a hunt
group's outside member answering is priced by that member's tariff (before,
a hunt group's mobile leg cost the company money and the CDR said
nothing); a paid call the caller transfers to a colleague keeps its cost. On the in-memory wire of tests/calls/test_outside_call_limits.py
(real SIP messages, a hand-held wall clock), the CDR written by the real
writer to SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import structlog
from sqlalchemy import Engine

from pbx.calls.budgets import BudgetHit, SharedHold
from pbx.calls.cdr_adapter import CdrRecorder
from pbx.calls.limits import LimitHit
from pbx.cdr.writer import CdrWriter
from pbx.routing.loader import load_dialplan
from pbx.sip.message import Request, Response, make_request, make_response
from pbx.store.writer import BackgroundWriter
from tests.calls.test_cost_and_budgets import NATIONAL, Pending, WallClock, background, hang_up, plan_text
from tests.calls.test_outside_call_limits import CHAU_DESK, DESK, LimitWire, dial, final, phone_request
from tests.cdr.conftest import all_calls, db_url, engine, migrated
from tests.trunks.test_trunk_calls import GW1, PBX, PHONE, answer_200, provider_invite

__all__ = ["background", "db_url", "engine", "migrated"]

HUNT = """\
hunt_groups:
  "709":
    name: Field sales
    strategy: linear
    department: sales
    members: [{number: "0912000001"}]
"""


def test_a_hunt_groups_outside_member_answering_is_priced_on_the_cdr(
        tmp_path: Path, migrated: Engine, background: BackgroundWriter) -> None:
    path = tmp_path / f"plan-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(plan_text(increment="30/6", per_minute="1200") + HUNT)
    clock, pending = WallClock(), Pending()
    recorder = CdrRecorder(CdrWriter(background, "pbx-test", notify=pending))
    wire = LimitWire(load_dialplan(path), wall_clock=clock, recorder=recorder)
    invite = dial(wire, "709")
    (placed,) = wire.to_gateway()
    assert placed.uri.startswith("sip:+84912000001@")
    wire.deliver(answer_200(placed), GW1)
    ok = final(wire, invite)
    assert ok is not None and ok.status == 200
    clock.now += 61
    hang_up(wire, invite, ok)
    pending.run(background, wire)
    (row,) = all_calls(migrated)
    # 61 s at 30/6: 66 s billed at 1,200 a minute.
    assert (row["disposition"], row["hunt_group"], row["billsec"], row["trunk"]) == ("ANSWERED", "709", 61, "viettel")
    assert (row["cost_minor"], row["cost"], row["currency"], row["tariff"]) == (1320, Decimal(1320), "VND",
                                                                                "vn-national")


def test_a_paid_call_the_caller_transfers_to_a_colleague_keeps_its_cost(
        tmp_path: Path, migrated: Engine, background: BackgroundWriter) -> None:
    # 1001 calls out, then hands the provider's party to 1002 (blind REFER)
    # and leaves; the trunk leg stays in the call until 1002 hangs up. The
    # whole time the provider's party was connected is billed, and 1001's
    # budget counts it (before, the call ended with an internal winner and
    # cost nothing: a way round any budget).
    path = tmp_path / "plan.yaml"
    path.write_text(plan_text(per_minute="1200", budget="100000"))
    clock, pending = WallClock(), Pending()
    recorder = CdrRecorder(CdrWriter(background, "pbx-test", notify=pending))
    wire = LimitWire(load_dialplan(path), wall_clock=clock, recorder=recorder)
    invite = dial(wire, NATIONAL)
    (placed,) = wire.to_gateway()
    wire.deliver(answer_200(placed), GW1)
    ok = final(wire, invite)
    assert ok is not None and ok.status == 200
    to_header = ok.get("to") or ""
    wire.deliver(phone_request("ACK", invite, to_header, 2), PHONE)
    clock.now += 30
    refer = phone_request("REFER", invite, to_header, 3)
    wire.deliver(replace(refer, headers=(*refer.headers, ("refer-to", "<sip:1002@pbx.example.com>"),
                                         ("contact", f"<sip:1001@{PHONE.host}:{PHONE.port}>"))), PHONE)
    assert [r.status for r in wire.responses_to(PHONE) if r.cseq.method == "REFER"] == [202]
    (to_desk,) = [m for m in wire.take(DESK) if isinstance(m, Request) and m.method == "INVITE"]
    desk_ok = make_response(to_desk, 200, to_tag="desk", headers=[
        ("contact", f"<sip:1002@{DESK.host}:{DESK.port}>"), ("content-type", "application/sdp")],
        body=b"v=0\r\no=desk 1 1 IN IP4 192.0.2.60\r\n")
    wire.deliver(desk_ok, DESK)
    (reinvite,) = [m for m in wire.take(GW1) if isinstance(m, Request) and m.method == "INVITE"]
    wire.deliver(make_response(reinvite, 200, headers=[("contact", "<sip:provider@198.51.100.1:5070>"),
                                                       ("content-type", "application/sdp")],
                               body=b"v=0\r\no=provider 1 2 IN IP4 198.51.100.1\r\n"), GW1)
    assert [m.method for m in wire.take(PHONE) if isinstance(m, Request) and m.method == "BYE"] == ["BYE"]
    clock.now += 31
    bye = make_request("BYE", f"sip:pbx@{PBX[0]}:{PBX[1]}", [
        ("via", f"SIP/2.0/UDP {DESK.host}:{DESK.port};branch=z9hG4bKdeskbye;rport"), ("max-forwards", "70"),
        ("from", desk_ok.get("to") or ""), ("to", to_desk.get("from") or ""), ("call-id", to_desk.call_id),
        ("cseq", "1 BYE")])
    wire.deliver(bye, DESK)
    pending.run(background, wire)
    (row,) = all_calls(migrated)
    assert (row["disposition"], row["billsec"], row["destination"]) == ("ANSWERED", 61, "1002")
    assert (row["cost_minor"], row["tariff"]) == (2400, "vn-national")  # 61 s at 60/60
    assert wire.controller.budgets.spent("extension:1001", "2026-12") == 2400


def desk_request(method: str, to_desk: Request, desk_ok: Response, cseq: int,
                 headers: tuple[tuple[str, str], ...] = ()) -> Request:
    """A request 1002's desk sends in the dialog of the INVITE it answered."""
    return make_request(method, f"sip:pbx@{PBX[0]}:{PBX[1]}", [
        ("via", f"SIP/2.0/UDP {DESK.host}:{DESK.port};branch=z9hG4bKdesk{method.lower()}{cseq};rport"),
        ("max-forwards", "70"), ("from", desk_ok.get("to") or ""), ("to", to_desk.get("from") or ""),
        ("call-id", to_desk.call_id), ("cseq", f"{cseq} {method}"),
        ("contact", f"<sip:1002@{DESK.host}:{DESK.port}>"), *headers])


def desk_answers(wire: LimitWire) -> tuple[Request, str, Request, Response]:
    """1001 calls 1002, whose desk answers: (1001's INVITE, the To 1001 was
    answered with, the desk's INVITE, its 200)."""
    invite = dial(wire, "1002")
    (to_desk,) = [m for m in wire.take(DESK) if isinstance(m, Request) and m.method == "INVITE"]
    desk_ok = make_response(to_desk, 200, to_tag="desk", headers=[
        ("contact", f"<sip:1002@{DESK.host}:{DESK.port}>"), ("content-type", "application/sdp")],
        body=b"v=0\r\no=desk 1 1 IN IP4 192.0.2.60\r\n")
    wire.deliver(desk_ok, DESK)
    ok = final(wire, invite)
    assert ok is not None and ok.status == 200
    wire.deliver(phone_request("ACK", invite, ok.get("to") or "", 2), PHONE)
    wire.deliver(desk_request("ACK", to_desk, desk_ok, 1), DESK)
    return invite, ok.get("to") or "", to_desk, desk_ok


def refer_out(wire: LimitWire, to_desk: Request, desk_ok: Response) -> list[bytes]:
    """1002 blind-transfers 1001 to a national number: the NOTIFY bodies it gets."""
    wire.deliver(desk_request("REFER", to_desk, desk_ok, 2,
                              (("refer-to", f"<sip:{NATIONAL}@pbx.example.com>"),)), DESK)
    sent = wire.take(DESK)
    assert [m.status for m in sent if isinstance(m, Response) and m.cseq.method == "REFER"] == [202]
    return [m.body for m in sent if isinstance(m, Request) and m.method == "NOTIFY"]


def test_a_blind_transfer_out_is_held_to_the_payers_budget(tmp_path: Path) -> None:
    # 1002 has spent nothing but its budget has no room for reserve_seconds
    # of the call: the transfer is refused and the call stays as it was.
    path = tmp_path / "plan.yaml"
    path.write_text(plan_text(budget="100").replace("extensions: {'1001'", "extensions: {'1002'"))
    wire = LimitWire(load_dialplan(path), wall_clock=WallClock())
    _, _, to_desk, desk_ok = desk_answers(wire)
    with structlog.testing.capture_logs() as logs:
        bodies = refer_out(wire, to_desk, desk_ok)
    assert wire.to_gateway() == []
    assert any(body.startswith(b"SIP/2.0 403") for body in bodies), bodies
    (hit,) = [e for e in logs if e["event"] == "budget_exhausted"]
    assert (hit["budget"], hit["extension"], hit["outcome"]) == ("extension:1002", "1002", "transfer_refused")


def joined_outside(wire: LimitWire, clock: WallClock) -> tuple[Request, str]:
    """1001 calls 1002, they talk 100 s, 1002 transfers 1001 to a national
    number and its leg joins: (1001's INVITE, the To it was answered with)."""
    invite, answered_to, to_desk, desk_ok = desk_answers(wire)
    clock.now += 100  # the internal part of the call costs nothing
    refer_out(wire, to_desk, desk_ok)
    (placed,) = wire.to_gateway()
    wire.deliver(answer_200(placed), GW1)
    (reinvite,) = [m for m in wire.take(PHONE) if isinstance(m, Request) and m.method == "INVITE"]
    wire.deliver(make_response(reinvite, 200, headers=[("contact", f"<sip:1001@{PHONE.host}:{PHONE.port}>"),
                                                       ("content-type", "application/sdp")],
                               body=b"v=0\r\no=phone 1 2 IN IP4 192.0.2.50\r\n"), PHONE)
    assert [m.method for m in wire.take(DESK) if isinstance(m, Request) and m.method == "BYE"] == ["BYE"]
    return invite, answered_to


def transfer_plan(tmp_path: Path, budget: str) -> Path:
    """The budget is 1002's; the number plan knows the country, so a leg's
    E.164 target (what an attended transfer checks) is understood."""
    path = tmp_path / "plan.yaml"
    path.write_text(plan_text(budget=budget).replace("extensions: {'1001'", "extensions: {'1002'").replace(
        "  vietnam:\n    - {pattern: \"11[345]\"",
        "  vietnam:\n   country_code: \"84\"\n   national_prefix: \"0\"\n   entries:\n"
        "    - {pattern: \"11[345]\""))
    return path


def test_a_blind_transfer_out_is_priced_from_when_it_joins_and_charged_to_the_payer(
        tmp_path: Path, migrated: Engine, background: BackgroundWriter) -> None:
    clock, pending = WallClock(), Pending()
    recorder = CdrRecorder(CdrWriter(background, "pbx-test", notify=pending))
    wire = LimitWire(load_dialplan(transfer_plan(tmp_path, "100000")), wall_clock=clock, recorder=recorder)
    invite, answered_to = joined_outside(wire, clock)
    clock.now += 61
    wire.deliver(phone_request("BYE", invite, answered_to, 3), PHONE)
    pending.run(background, wire)
    (row,) = all_calls(migrated)
    assert (row["disposition"], row["billsec"], row["destination"]) == ("ANSWERED", 161, NATIONAL)
    assert (row["cost_minor"], row["tariff"]) == (2400, "vn-national")  # 61 s of the outside leg at 60/60
    assert (row["caller_number"], row["billed_to"]) == ("1001", "1002")  # reports and recounts: 1002 pays
    assert wire.controller.budgets.spent("extension:1002", "2026-12") == 2400
    assert wire.controller.budgets.holding() == 0


def test_a_second_transfer_out_is_refused_and_the_first_stays_priced(tmp_path: Path) -> None:
    # The outside party a transfer brought in stays on the call whoever
    # transfers next: a second outside leg would go unpriced, so it is refused.
    clock = WallClock()
    wire = LimitWire(load_dialplan(transfer_plan(tmp_path, "100000")), wall_clock=clock)
    invite, answered_to = joined_outside(wire, clock)
    refer = phone_request("REFER", invite, answered_to, 3)
    with structlog.testing.capture_logs() as logs:
        wire.deliver(replace(refer, headers=(*refer.headers, ("refer-to", "<sip:0287654321@pbx.example.com>"),
                                             ("contact", f"<sip:1001@{PHONE.host}:{PHONE.port}>"))), PHONE)
    notified = [m.body for m in wire.take(PHONE) if isinstance(m, Request) and m.method == "NOTIFY"]
    assert any(body.startswith(b"SIP/2.0 403") for body in notified), notified
    assert wire.to_gateway() == []
    assert [e["reason"] for e in logs if e["event"] == "transfer_refused"] == ["second_transfer_out"]
    clock.now += 60
    wire.deliver(phone_request("BYE", invite, answered_to, 4), PHONE)
    (ended,) = wire.recorder.ended
    assert (ended.cost, ended.rate.tariff.id if ended.rate else None) == (1200, "vn-national")
    assert wire.controller.budgets.spent("extension:1002", "2026-12") == 1200


def test_a_transfer_out_the_number_refuses_releases_its_hold(tmp_path: Path) -> None:
    # The outside number is busy: the call goes on as it was, unpriced, and
    # 1002's budget holds nothing for the leg that never joined.
    clock = WallClock()
    wire = LimitWire(load_dialplan(transfer_plan(tmp_path, "100000")), wall_clock=clock)
    invite, answered_to, to_desk, desk_ok = desk_answers(wire)
    refer_out(wire, to_desk, desk_ok)
    assert wire.controller.budgets.holding() == 1
    (placed,) = wire.to_gateway()
    wire.deliver(make_response(placed, 486, to_tag="gw"), GW1)
    assert wire.controller.budgets.holding() == 0
    clock.now += 60
    wire.deliver(phone_request("BYE", invite, answered_to, 3), PHONE)
    (ended,) = wire.recorder.ended
    assert (ended.cost, ended.billed_to) == (None, None)
    assert wire.controller.budgets.spent("extension:1002", "2026-12") == 0


def test_a_failed_transfer_of_the_outside_party_to_a_colleague_keeps_it_priced(tmp_path: Path) -> None:
    # 1002 put 1001 through to a national number; 1001 then tries to hand
    # that party to 1003, who is busy. The outside leg is still on the call
    # and still 1002's to pay: the attempt must not drop its price or hold.
    clock = WallClock()
    wire = LimitWire(load_dialplan(transfer_plan(tmp_path, "100000")), wall_clock=clock)
    invite, answered_to = joined_outside(wire, clock)
    refer = phone_request("REFER", invite, answered_to, 3)
    wire.deliver(replace(refer, headers=(*refer.headers, ("refer-to", "<sip:1003@pbx.example.com>"),
                                         ("contact", f"<sip:1001@{PHONE.host}:{PHONE.port}>"))), PHONE)
    (to_chau,) = [m for m in wire.take(CHAU_DESK) if isinstance(m, Request) and m.method == "INVITE"]
    wire.deliver(make_response(to_chau, 486, to_tag="chau"), CHAU_DESK)
    notified = [m.body for m in wire.take(PHONE) if isinstance(m, Request) and m.method == "NOTIFY"]
    assert notified and not notified[-1].startswith(b"SIP/2.0 200"), notified
    assert wire.controller.budgets.holding() == 1  # 1002's hold for the outside leg
    clock.now += 60
    wire.deliver(phone_request("BYE", invite, answered_to, 4), PHONE)
    (ended,) = wire.recorder.ended
    assert (ended.cost, ended.rate.tariff.id if ended.rate else None) == (1200, "vn-national")
    assert ended.billed_to is not None and ended.billed_to.number == "1002"
    assert wire.controller.budgets.spent("extension:1002", "2026-12") == 1200
    assert wire.controller.budgets.holding() == 0


def test_a_forwarded_call_the_caller_transfers_out_stays_billed_to_the_forwarder(tmp_path: Path) -> None:
    # 1002 forwards everything to a national number (1002 pays that leg);
    # 1001 then transfers that party to another national number (1001 pays
    # the new leg). A CDR row has one payer: it stays 1002's, and the split
    # is logged; each live budget still gets its own part.
    path = transfer_plan(tmp_path, "100000")
    text = path.read_text().replace("password: binh-secret-1002}",
                                    f"password: binh-secret-1002, forward: {{always: '{NATIONAL}'}}}}")
    path.write_text(text)
    clock = WallClock()
    wire = LimitWire(load_dialplan(path), wall_clock=clock)
    invite = dial(wire, "1002")
    (forwarded,) = wire.to_gateway()
    wire.deliver(answer_200(forwarded), GW1)
    ok = final(wire, invite)
    assert ok is not None and ok.status == 200
    answered_to = ok.get("to") or ""
    wire.deliver(phone_request("ACK", invite, answered_to, 2), PHONE)
    clock.now += 60  # a minute of the forward: 1002's
    refer = phone_request("REFER", invite, answered_to, 3)
    with structlog.testing.capture_logs() as logs:
        wire.deliver(replace(refer, headers=(*refer.headers, ("refer-to", "<sip:0287654321@pbx.example.com>"),
                                             ("contact", f"<sip:1001@{PHONE.host}:{PHONE.port}>"))), PHONE)
        (placed,) = wire.to_gateway()
        wire.deliver(answer_200(placed, tag="second"), GW1)
        for message in wire.take(GW1):  # the forward's party is re-INVITEd to the new one
            if isinstance(message, Request) and message.method == "INVITE":
                wire.deliver(answer_200(message), GW1)
    assert [e["event"] for e in logs if e["event"] in ("transfer_completed", "transfer_billed_split")] == [
        "transfer_billed_split", "transfer_completed"]
    clock.now += 60  # a minute of both outside parties
    wire.deliver(make_request("BYE", f"sip:pbx@{PBX[0]}:{PBX[1]}", [
        ("via", f"SIP/2.0/UDP {GW1.host}:{GW1.port};branch=z9hG4bKgwbye;rport"), ("max-forwards", "70"),
        ("from", f"{placed.get('to')};tag=second"), ("to", placed.get("from") or ""),
        ("call-id", placed.call_id), ("cseq", "1 BYE")]), GW1)
    (ended,) = wire.recorder.ended
    assert ended.billed_to is not None and ended.billed_to.number == "1002"
    assert ended.cost == 2400 + 1200  # the forward's two minutes, the transfer's one
    assert wire.controller.budgets.spent("extension:1002", "2026-12") == 2400
    assert wire.controller.budgets.holding() == 0


def test_an_attended_transfer_out_bills_the_consultation_and_the_rest_to_the_payer(tmp_path: Path) -> None:
    # 1001 calls 1002; 1002 consults a national number from its own line
    # (the second call), then joins 1001 to it with REFER/Replaces in the
    # first call. The consultation is billed until the hand-over, the first
    # call from then on, both to 1002 (before, neither cost anything).
    clock = WallClock()
    wire = LimitWire(load_dialplan(transfer_plan(tmp_path, "100000")), wall_clock=clock)
    invite, answered_to, to_desk, desk_ok = desk_answers(wire)
    clock.now += 100
    consult = dial(wire, NATIONAL, user="1002")
    (placed,) = wire.to_gateway()
    wire.deliver(answer_200(placed), GW1)
    consult_ok = final(wire, consult)
    assert consult_ok is not None and consult_ok.status == 200
    wire.deliver(phone_request("ACK", consult, consult_ok.get("to") or "", 3), PHONE)
    clock.now += 20
    pbx_tag = (consult_ok.get("to") or "").split("tag=")[1]
    replaces = f"{consult.call_id}%3Bto-tag%3D{pbx_tag}%3Bfrom-tag%3Dph2"
    wire.deliver(desk_request("REFER", to_desk, desk_ok, 2, (
        ("refer-to", f"<sip:{NATIONAL}@pbx.example.com?Replaces={replaces}>"),)), DESK)
    (fetch,) = [m for m in wire.take(GW1) if isinstance(m, Request) and m.method == "INVITE"]
    assert fetch.call_id == placed.call_id and fetch.body == b""
    wire.deliver(make_response(fetch, 200, headers=[("contact", "<sip:provider@198.51.100.1:5070>"),
                                                    ("content-type", "application/sdp")],
                               body=b"v=0\r\no=provider 1 2 IN IP4 198.51.100.1\r\n"), GW1)
    (reinvite,) = [m for m in wire.take(PHONE) if isinstance(m, Request) and m.method == "INVITE"]
    assert reinvite.call_id == invite.call_id
    wire.deliver(make_response(reinvite, 200, headers=[("contact", f"<sip:1001@{PHONE.host}:{PHONE.port}>"),
                                                       ("content-type", "application/sdp")],
                               body=b"v=0\r\no=phone 1 2 IN IP4 192.0.2.50\r\n"), PHONE)
    (consultation,) = wire.recorder.ended
    assert (consultation.reason, consultation.cost) == ("transferred", 1200)  # 20 s: one started minute
    clock.now += 61
    wire.deliver(phone_request("BYE", invite, answered_to, 3), PHONE)
    first = [c for c in wire.recorder.ended if c is not consultation]
    assert [(c.cost, c.rate.tariff.id if c.rate else None) for c in first] == [(2400, "vn-national")]
    assert wire.controller.budgets.spent("extension:1002", "2026-12") == 3600
    assert wire.controller.budgets.holding() == 0


def test_a_call_from_the_trunk_overflowing_to_an_outside_number_is_priced(tmp_path: Path) -> None:
    # Nobody's extension places the overflow leg (the caller is outside),
    # so no budget pays for it; the company still does, and the CDR says so.
    path = tmp_path / "plan.yaml"
    path.write_text(plan_text() + """\
hunt_groups:
  "710":
    name: Night line
    department: sales
    members: ["1003"]
    member_seconds: 5
    total_seconds: 5
    overflow: {no_answer: {number: "0912000009"}}
inbound:
  "+842873000100": {hunt_group: "710"}
""")
    clock = WallClock()
    wire = LimitWire(load_dialplan(path), wall_clock=clock)
    incoming = provider_invite("+842873000100")
    wire.deliver(incoming, GW1)
    assert [m.method for m in wire.take(CHAU_DESK) if isinstance(m, Request)] == ["INVITE"]
    wire.advance(6)  # 1003 does not answer: the group's no_answer overflow
    (placed,) = [invite for invite in wire.to_gateway() if invite.call_id != incoming.call_id]
    assert placed.uri.startswith("sip:+84912000009@")
    wire.deliver(answer_200(placed), GW1)
    (ok,) = [r for r in wire.responses_to(GW1) if r.call_id == incoming.call_id and r.status == 200]
    clock.now += 61
    bye = make_request("BYE", "sip:pbx@192.0.2.1:5060", [
        ("via", f"SIP/2.0/UDP {GW1.host}:{GW1.port};branch=z9hG4bKprovbye"), ("max-forwards", "70"),
        ("from", incoming.get("from") or ""), ("to", ok.get("to") or ""), ("call-id", incoming.call_id),
        ("cseq", "2 BYE")])
    wire.deliver(bye, GW1)
    (ended,) = wire.recorder.ended
    assert (ended.cost, ended.rate.tariff.id if ended.rate else None) == (2400, "vn-national")
    assert wire.controller.budgets.holding() == 0


class HeldInStore:
    """The shared store's side (pbx.billing.shared on PostgreSQL), held by
    the test: it answers each reservation when told."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, SharedHold, Callable[[BudgetHit | LimitHit | None], None]]] = []
        self.released: list[str] = []

    def reserve(self, call: str, hold: SharedHold, done: Callable[[BudgetHit | LimitHit | None], None]) -> None:
        self.asked.append((call, hold, done))

    def release(self, call: str) -> None:
        self.released.append(call)


def test_with_several_nodes_a_transfer_out_rings_only_once_the_store_holds_it(tmp_path: Path) -> None:
    """Nodes share the payer's budgets: a blind transfer out is held in the
    store, like a call the payer places, before anything rings (before, the
    transfer checked only this node's ledger: two nodes could each let one
    through past the budget). The hold goes when the call ends."""
    clock, store = WallClock(), HeldInStore()
    wire = LimitWire(load_dialplan(transfer_plan(tmp_path, "100000")), wall_clock=clock)
    wire.controller.shared_budgets = store
    invite, answered_to, to_desk, desk_ok = desk_answers(wire)
    assert store.asked == []  # an internal call holds nothing
    refer_out(wire, to_desk, desk_ok)
    [(key, hold, done)] = store.asked
    assert key.endswith("/transfer") and [c.budget.key for c in hold.charges] == ["extension:1002"]
    assert wire.to_gateway() == []  # nothing rings before the store says so
    done(None)
    (placed,) = wire.to_gateway()
    assert placed.method == "INVITE"
    wire.deliver(phone_request("BYE", invite, answered_to, 3), PHONE)
    assert key in store.released


def test_with_several_nodes_a_transfer_out_the_store_refuses_does_not_ring(tmp_path: Path) -> None:
    clock, store = WallClock(), HeldInStore()
    wire = LimitWire(load_dialplan(transfer_plan(tmp_path, "100000")), wall_clock=clock)
    wire.controller.shared_budgets = store
    _, _, to_desk, desk_ok = desk_answers(wire)
    refer_out(wire, to_desk, desk_ok)
    [(key, hold, done)] = store.asked
    charge = hold.charges[0]
    with structlog.testing.capture_logs() as logs:
        done(hold.hit((charge.budget.key, charge.period), 99_000, 900))  # the other node spent it
    assert wire.to_gateway() == []
    bodies = [m.body for m in wire.take(DESK) if isinstance(m, Request) and m.method == "NOTIFY"]
    assert any(body.startswith(b"SIP/2.0 403") for body in bodies), bodies
    assert [e["outcome"] for e in logs if e["event"] == "budget_exhausted"] == ["transfer_refused"]
    assert wire.controller.budgets.holding() == 0 and key in store.released
