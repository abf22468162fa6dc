"""How soon a busy-lamp watcher hears of a state change (issue 14 asks for
notifications within 100 ms).

One `pbx serve` on 127.0.0.1 (UDP, SQLite); Bob (2002) registered from a
raw socket, Alice (2001) subscribed to Bob's ``dialog`` package. Each
round Carol (2003) calls Bob: the PBX's INVITE reaches Bob's socket and
Alice's NOTIFY ("early") is timed from that moment; Bob answers 486 and
Alice's next NOTIFY (no dialog) is timed from that answer's send. All
three sockets are read by one select() loop that stamps each datagram
as it is read, so a figure is the PBX's time plus one loopback hop.

    python bench/presence_latency.py                 # 100 rounds
    python bench/presence_latency.py --rounds 300 --workdir /tmp/presence

Prints a table of min / median / p95 / max per transition (ms).
"""

from __future__ import annotations

import argparse
import secrets
import select
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pbx.sip import digest  # noqa: E402
from pbx.sip.message import Message, Request, Response  # noqa: E402
from pbx.sip.parser import parse_message  # noqa: E402
from pbx.sip.transaction import build_non_2xx_ack  # noqa: E402
from tests.presence.agent import DOMAIN, Agent, dialog_info, dialog_states  # noqa: E402
from tests.e2e.test_forward_restart import PASSWORDS, PLAN, SDP  # noqa: E402
from tests.server import run_server  # noqa: E402


def wait_for(agents: list[Agent], want: dict[str, tuple[type[Message], str]],
             timeout: float = 5.0) -> dict[str, tuple[float, Message]]:
    """Read every agent's socket until each user in ``want`` got a message
    of its (type, method); each stamped when read. Others are answered
    200 (requests) or dropped."""
    got: dict[str, tuple[float, Message]] = {}
    by_sock = {agent.sock: agent for agent in agents}
    deadline = time.monotonic() + timeout
    while len(got) < len(want):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"waited for {sorted(set(want) - set(got))}")
        ready, _, _ = select.select(list(by_sock), [], [], left)
        for sock in ready:
            data = sock.recv(65535)
            stamp = time.perf_counter()
            agent, message = by_sock[sock], parse_message(data)
            kind, method = want.get(agent.user, (type(None), ""))
            if isinstance(message, kind) and message.cseq.method == method and agent.user not in got \
                    and not (isinstance(message, Response) and message.status < 200):
                got[agent.user] = (stamp, message)
            elif isinstance(message, Request) and message.method not in ("ACK", "INVITE"):
                agent.answer(message, 200)
    return got


def carol_invite(carol: Agent, call_id: str, auth: str | None) -> Request:
    data = carol.build("INVITE", f"sip:2002@{DOMAIN}", call_id=call_id, from_tag="carol",
                       headers=["Content-Type: application/sdp"], body=SDP, auth=auth)
    carol.send(data)
    request = parse_message(data)
    assert isinstance(request, Request)
    return request


def one_round(alice: Agent, bob: Agent, carol: Agent) -> tuple[float, float]:
    agents = [alice, bob, carol]
    call_id = secrets.token_hex(8)
    first = carol_invite(carol, call_id, None)
    challenge = wait_for(agents, {"2003": (Response, "INVITE")})["2003"][1]
    assert isinstance(challenge, Response) and challenge.status == 407
    carol.send(build_non_2xx_ack(first, challenge).encode())
    value = digest.choose_challenge(challenge.get_all("proxy-authenticate"))
    assert value is not None
    auth = digest.answer_challenge(value, username="2003", password=PASSWORDS["2003"], method="INVITE",
                                   uri=f"sip:2002@{DOMAIN}", cnonce=secrets.token_hex(4), nc=1)
    invite = carol_invite(carol, call_id, auth)
    seen = wait_for(agents, {"2002": (Request, "INVITE"), "2001": (Request, "NOTIFY")})
    (rung_at, to_bob), (early_at, early) = seen["2002"], seen["2001"]
    assert isinstance(to_bob, Request) and isinstance(early, Request)
    alice.answer(early, 200)
    assert dialog_states(dialog_info(early)) == ["early"]
    bob.answer(to_bob, 486)
    refused_at = time.perf_counter()
    seen = wait_for(agents, {"2001": (Request, "NOTIFY"), "2003": (Response, "INVITE")})
    idle_at, idle = seen["2001"]
    assert isinstance(idle, Request)
    alice.answer(idle, 200)
    assert dialog_states(dialog_info(idle)) == []
    busy = seen["2003"][1]
    assert isinstance(busy, Response) and busy.status == 486
    carol.send(build_non_2xx_ack(invite, busy).encode())
    return (early_at - rung_at) * 1000, (idle_at - refused_at) * 1000


def row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (f"| {name} | {len(values)} | {ordered[0]:.1f} | {statistics.median(ordered):.1f} | {p95:.1f}"
            f" | {ordered[-1]:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100, help="calls to Bob (default 100)")
    parser.add_argument("--workdir", type=Path, help="keep the dialplan, database and log here")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="presence-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    plan = workdir / "plan.yaml"
    plan.write_text(PLAN)
    ringing: list[float] = []
    ended: list[float] = []
    with run_server(plan, f"sqlite:///{workdir / 'pbx.sqlite3'}", ["udp:127.0.0.1:0"],
                    ("--log-level", "warning")) as server:
        address = ("127.0.0.1", server.udp_port)
        alice, bob, carol = (Agent(n, PASSWORDS[n], address) for n in ("2001", "2002", "2003"))
        try:
            assert bob.register().status == 200
            subscribed = alice.request("SUBSCRIBE", f"sip:2002@{DOMAIN}", headers=["Event: dialog",
                                                                                  "Expires: 3600"])
            assert subscribed.status == 200
            alice.incoming("NOTIFY")
            for _ in range(args.rounds):
                early, idle = one_round(alice, bob, carol)
                ringing.append(early)
                ended.append(idle)
                time.sleep(0.02)
        finally:
            for agent in (alice, bob, carol):
                agent.close()
    print("| NOTIFY to the watcher, ms after | rounds | min | median | p95 | max |")
    print("|---|---|---|---|---|---|")
    print(row("Bob's phone got the INVITE (early)", ringing))
    print(row("Bob answered 486 (idle)", ended))
    late = sum(1 for value in ringing + ended if value > 100.0)
    print(f"over 100 ms: {late} of {len(ringing) + len(ended)}")
    return 0 if late == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
