"""Dead calls do not live for ever: session timers (RFC 4028) relayed and
watched by a real `pbx serve`, and the maximum call duration where the
phones use no timers. The dialplans allow intervals of a few seconds
(``allow_short_timers``) so each test stays short.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pbx.sip.session_timer import parse_session_expires
from pbx.sip.message import Request, Response, split_list

from .harness import AGENT_EXTENSIONS, Agents, Pbx, open_agents, start_pbx
from .sipua import UaDialog, sdp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

# A session ends interval - min(32, interval / 3) after its last refresh:
# 4 s for the 6 s interval used here.
DIALPLAN = ("domain: pbx.example.com\n"
            "calls: {session_expires: 6, min_se: 3, allow_short_timers: true}\n" + AGENT_EXTENSIONS)


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


def session_expires(message: Request | Response) -> tuple[int, str | None] | None:
    parsed = parse_session_expires(message.get("session-expires"))
    return None if parsed is None else (parsed.interval, parsed.refresher)


def tags(message: Request | Response, header: str) -> set[str]:
    return {token.lower() for value in message.get_all(header) for token in split_list(value)}


def answer(agents: Agents, a: UaDialog, *, headers: list[str]) -> tuple[UaDialog, Request, Response]:
    """Bob answers Alice's INVITE with ``headers`` on his 200; Alice ACKs."""
    b_invite = agents.bob.expect_request("INVITE")
    b = agents.bob.answer_dialog(b_invite)
    agents.bob.respond(b_invite, 200, to_tag=b.local_tag, headers=headers, body=sdp(42000))
    ok = a.expect_response(200, method="INVITE")
    a.confirm(ok)
    a.ack()
    b.expect_request("ACK")
    return b, b_invite, ok


def expect_bye_both(agents: Agents, a: UaDialog, b: UaDialog, timeout: float) -> tuple[Request, Request]:
    bye_a = a.expect_request("BYE", timeout=timeout)
    agents.alice.respond(bye_a, 200)
    bye_b = b.expect_request("BYE", timeout=timeout)
    agents.bob.respond(bye_b, 200)
    return bye_a, bye_b


def test_interval_below_min_se_gets_422_with_our_min_se(agents: Agents) -> None:
    a = agents.alice.invite("2002", body=sdp(), headers=["Supported: timer", "Session-Expires: 2"])
    refused = a.expect_response(422, method="INVITE")
    assert refused.get("min-se") == "3"
    # A retry with the interval asked for goes through (RFC 4028 §7.4).
    retry = agents.alice.invite("2002", body=sdp(), headers=["Supported: timer", "Session-Expires: 3"])
    b_invite = agents.bob.expect_request("INVITE")
    assert session_expires(b_invite) == (3, None)
    agents.bob.respond(b_invite, 486, to_tag="busy")
    retry.expect_response(486, method="INVITE")


def test_refreshes_keep_the_call_and_a_missed_refresh_ends_it(pbx: Pbx, agents: Agents) -> None:
    a = agents.alice.invite("2002", body=sdp(), headers=[
        "Supported: timer", "Session-Expires: 60;refresher=uac", "Min-SE: 2"])
    b, b_invite, ok = answer(agents, a, headers=["Require: timer", "Session-Expires: 6;refresher=uac"])
    # Relayed: the timer option, the interval shortened to ours, our floor.
    assert "timer" in tags(b_invite, "supported")
    assert session_expires(b_invite) == (6, "uac")
    assert b_invite.get("min-se") == "3"
    assert session_expires(ok) == (6, "uac") and "timer" in tags(ok, "require")
    # Two refreshes by UPDATE 2.5 s apart carry the call past its first
    # expiry (4 s after the answer) ...
    for _ in range(2):
        time.sleep(2.5)
        a.send("UPDATE", headers=["Supported: timer", "Session-Expires: 6;refresher=uac"])
        update = b.expect_request("UPDATE")
        assert session_expires(update) == (6, "uac")
        agents.bob.respond(update, 200, headers=["Require: timer", "Session-Expires: 6;refresher=uac"])
        assert session_expires(a.expect_response(200, method="UPDATE")) == (6, "uac")
        refreshed = time.monotonic()
    agents.alice.absent(lambda m: isinstance(m, Request) and m.method == "BYE", 2.0)
    # ... and without the next one both legs get a BYE.
    bye_a, bye_b = expect_bye_both(agents, a, b, timeout=6.0)
    assert time.monotonic() - refreshed >= 3.0
    assert "session_expired" in (bye_a.get("reason") or "")
    row = pbx.cdr_for("2001", "2002")
    assert (row["disposition"], row["hangup_side"], row["reason"]) == ("ANSWERED", "pbx", "session_expired")


def test_callee_without_timers_caller_refreshes(pbx: Pbx, agents: Agents) -> None:
    a = agents.alice.invite("2002", body=sdp(), headers=["Supported: timer"])
    b, b_invite, ok = answer(agents, a, headers=[])
    # We asked the callee for our interval; it ignored timers, so the
    # caller is told to refresh (RFC 4028 §8.2) and the PBX watches.
    assert session_expires(b_invite) == (6, None)
    assert session_expires(ok) == (6, "uac") and "timer" in tags(ok, "require")
    # A re-INVITE refresh (here without SDP) counts as well.
    time.sleep(2.0)
    a.send("INVITE", headers=["Supported: timer", "Session-Expires: 6;refresher=uac"])
    reinvite = b.expect_request("INVITE")
    agents.bob.respond(reinvite, 200, body=sdp(42002))
    refreshed = a.expect_response(200, method="INVITE")
    assert session_expires(refreshed) == (6, "uac")
    a.send("ACK", cseq=refreshed.cseq.number, body=sdp(40002))
    b.expect_request("ACK")
    started = time.monotonic()
    expect_bye_both(agents, a, b, timeout=8.0)
    assert time.monotonic() - started >= 2.5
    assert pbx.cdr_for("2001", "2002")["reason"] == "session_expired"


def test_callee_422_is_retried_with_its_min_se(pbx: Pbx, agents: Agents) -> None:
    a = agents.alice.invite("2002", body=sdp(), headers=["Supported: timer", "Session-Expires: 5"])
    first = agents.bob.expect_request("INVITE")
    agents.bob.respond(first, 422, headers=["Min-SE: 9"], to_tag="short")
    agents.bob.expect_request("ACK", call_id=first.call_id)
    second = agents.bob.expect_request("INVITE")
    assert second.call_id == first.call_id and second.cseq.number > first.cseq.number
    assert second.to.tag is None and second.from_.tag == first.from_.tag
    assert session_expires(second) == (9, None) and second.get("min-se") == "9"
    b = agents.bob.answer_dialog(second)
    agents.bob.respond(second, 200, to_tag=b.local_tag, body=sdp(42000),
                       headers=["Require: timer", "Session-Expires: 9;refresher=uac"])
    ok = a.expect_response(200, method="INVITE")  # the caller never saw the 422
    assert session_expires(ok) == (9, "uac")
    assert not any(isinstance(r.message, Response) and r.message.status == 422 for r in agents.alice.log)
    a.confirm(ok)
    a.ack()
    b.expect_request("ACK")
    # Refreshes towards the callee are raised to its floor too.
    a.send("UPDATE", headers=["Supported: timer", "Session-Expires: 5;refresher=uac"])
    update = b.expect_request("UPDATE")
    assert session_expires(update) == (9, "uac") and update.get("min-se") == "9"
    agents.bob.respond(update, 200, headers=["Require: timer", "Session-Expires: 9;refresher=uac"])
    a.expect_response(200, method="UPDATE")
    a.send("BYE")
    agents.bob.respond(b.expect_request("BYE"), 200)
    a.expect_response(200, method="BYE")
    row = pbx.cdr_for("2001", "2002")
    assert (row["disposition"], row["hangup_side"]) == ("ANSWERED", "caller")


def test_in_dialog_refresh_below_min_se_gets_422(agents: Agents) -> None:
    a = agents.alice.invite("2002", body=sdp(), headers=["Supported: timer", "Session-Expires: 6"])
    b, _, _ = answer(agents, a, headers=["Require: timer", "Session-Expires: 6;refresher=uac"])
    a.send("UPDATE", headers=["Supported: timer", "Session-Expires: 1;refresher=uac"])
    refused = a.expect_response(422, method="UPDATE")
    assert refused.get("min-se") == "3"
    agents.bob.absent(lambda m: isinstance(m, Request) and m.method == "UPDATE", 0.3)
    a.send("BYE")
    agents.bob.respond(b.expect_request("BYE"), 200)
    a.expect_response(200, method="BYE")


def test_without_timers_the_maximum_duration_ends_the_call(tmp_path: Path) -> None:
    plan = "domain: pbx.example.com\ncalls: {max_call_seconds: 3}\n" + AGENT_EXTENSIONS
    with start_pbx(tmp_path / "pbx", plan) as pbx, open_agents(pbx) as agents:
        a = agents.alice.invite("2002", body=sdp())  # no Supported: timer
        b, b_invite, ok = answer(agents, a, headers=[])
        assert b_invite.get("session-expires") is None and "timer" not in tags(b_invite, "supported")
        assert ok.get("session-expires") is None
        answered = time.monotonic()
        bye_a, _ = expect_bye_both(agents, a, b, timeout=8.0)
        assert time.monotonic() - answered >= 2.5
        assert "max_duration" in (bye_a.get("reason") or "")
        row = pbx.cdr_for("2001", "2002")
        assert (row["disposition"], row["hangup_side"], row["reason"]) == ("ANSWERED", "pbx", "max_duration")
        assert 2.0 <= float(row["billsec"]) <= 6.0

