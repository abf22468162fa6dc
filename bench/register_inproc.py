"""Authenticated REGISTERs per second through the SIP core, without sockets.

Each registration is what SIPp's register_auth.xml does over the wire:
REGISTER, 401 with a digest challenge, REGISTER with Authorization, 200.
Here the bytes go straight into a `SipEndpoint` and the requests it reports
into a `Registrar`, so the figure is the CPU cost of the protocol core alone
(parser, transaction layer, digest, registrar, response encoding); no event
loop, no socket, no database.

The client half (building the REGISTER bytes, parsing the 401, computing the
digest answer) runs in the same process, so it is timed apart: "server" is
the time spent inside the endpoint and the registrar, "client" the rest.

Every run uses branches and Call-IDs it has never used before, so each
REGISTER starts a new server transaction, as in a load test; the transactions
of earlier runs stay in the layer (and its timer heap) as they would on a
live server during their timer J.

    python bench/register_inproc.py                       # 5 runs of 5000
    python bench/register_inproc.py --runs 3 --registrations 20000 --users 1000
    python bench/register_inproc.py --profile /tmp/inproc.prof   # cProfile, server side only
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from pbx.registrar.auth import Authenticator  # noqa: E402
from pbx.registrar.bindings import BindingTable  # noqa: E402
from pbx.security.lockout import Lockout  # noqa: E402
from pbx.registrar.registrar import Registrar  # noqa: E402
from pbx.routing.loader import load_dialplan  # noqa: E402
from pbx.sip import digest  # noqa: E402
from pbx.sip.address import Peer  # noqa: E402
from pbx.sip.endpoint import SipEndpoint  # noqa: E402
from pbx.sip.events import RequestReceived, Send  # noqa: E402
from pbx.sip.message import Response  # noqa: E402
from pbx.sip.parser import parse_message  # noqa: E402

DOMAIN = "pbx.example.com"
SERVER = ("127.0.0.1", 5099)
CLIENT = Peer("udp", "127.0.0.1", 5098)
REQUEST_URI = f"sip:{SERVER[0]}:{SERVER[1]}"


@dataclass(frozen=True, slots=True)
class RunResult:
    registrations: int
    server_seconds: float
    client_seconds: float

    @property
    def server_rate(self) -> float:
        return self.registrations / self.server_seconds

    @property
    def total_rate(self) -> float:
        return self.registrations / (self.server_seconds + self.client_seconds)


class BenchError(Exception):
    pass


def write_dialplan(directory: Path, users: int) -> dict[str, str]:
    """A dialplan of ``users`` extensions (20000...) storing ha1_md5, as
    bench/make_users.py writes it for SIPp; returns user -> password."""
    passwords = {str(20000 + i): secrets.token_hex(8) for i in range(users)}
    lines = [
        f'domain: "{DOMAIN}"',
        "registrar:",
        "  min_expires: 60",
        "  max_expires: 7200",
        "  default_expires: 3600",
        "  auth_algorithms: [MD5]",
        "security:",
        "  max_auth_failures: 100000",
        "  failure_window: 60",
        "  block_seconds: 1",
        "departments:",
        "  bench:",
        '    name: "Benchmark"',
        "extensions:",
    ]
    for user, password in passwords.items():
        ha1 = hashlib.md5(f"{user}:{DOMAIN}:{password}".encode()).hexdigest()
        lines += [f'  "{user}":', f'    name: "User {user}"', "    department: bench", f'    ha1_md5: "{ha1}"']
    (directory / "users.yaml").write_text("\n".join(lines) + "\n")
    return passwords


def register_bytes(user: str, cseq: int, call_id: str, branch: str, authorization: str | None) -> bytes:
    """The REGISTER of sipp-scenarios/register_auth.xml, as SIPp fills it in."""
    auth_line = f"Authorization: {authorization}\r\n" if authorization else ""
    return (
        f"REGISTER {REQUEST_URI} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CLIENT.host}:{CLIENT.port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{user}@{DOMAIN}>;tag=bench{call_id}\r\n"
        f"To: <sip:{user}@{DOMAIN}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{user}@{CLIENT.host}:{CLIENT.port};transport=UDP>\r\n"
        "Expires: 3600\r\n"
        f"{auth_line}"
        "User-Agent: SIPp register_auth\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class Bench:
    def __init__(self, plan_path: Path, passwords: dict[str, str]) -> None:
        plan = load_dialplan(plan_path)
        tracker = Lockout(max_failures=100_000, window=60, block_seconds=1)
        nonces = digest.NonceIssuer(secrets.token_bytes(32), lifetime=300)
        algorithms = tuple(digest.Algorithm.parse(a) for a in plan.registrar.auth_algorithms)
        authenticator = Authenticator(plan, nonces, tracker, algorithms)
        self.registrar = Registrar(plan, authenticator, BindingTable(), to_tag="bench")
        self.endpoint = SipEndpoint()
        self.users = sorted(passwords)
        self.passwords = passwords
        self.run_number = 0
        self.clock = 1000.0  # transaction-layer time, advanced as a server's would be

    def server_step(self, data: bytes) -> list[Send]:
        """What the server does with one datagram: endpoint, registrar, send."""
        endpoint = self.endpoint
        now = self.clock
        endpoint.receive(data, CLIENT, now)
        sends, events = endpoint.drain()
        for event in events:
            if isinstance(event, RequestReceived):
                outcome = self.registrar.handle(event.request, event.source, time.time())
                endpoint.send_response(event.key, outcome.response, now)
            else:
                raise BenchError(f"unexpected event {event!r}")
        more, _ = endpoint.drain()
        return sends + more

    def fire_timers(self) -> None:
        endpoint = self.endpoint
        deadline = endpoint.next_deadline()
        if deadline is not None and deadline <= self.clock:
            endpoint.on_timer(self.clock)
            sends, events = endpoint.drain()
            if sends or events:
                raise BenchError("a timer sent something: a transaction retransmitted or timed out")

    def run(self, registrations: int, server_step: Callable[[bytes], list[Send]] | None = None) -> RunResult:
        step = server_step or self.server_step
        self.run_number += 1
        tag = f"{self.run_number}x{secrets.token_hex(4)}"
        users, passwords = self.users, self.passwords
        perf = time.perf_counter
        server = 0.0
        started = perf()
        for i in range(registrations):
            user = users[i % len(users)]
            call_id = f"{tag}-{i}"
            first = register_bytes(user, 1, call_id, f"z9hG4bK{tag}a{i}", None)
            t0 = perf()
            sent = step(first)
            server += perf() - t0
            challenge = _only_response(sent, 401)
            value = digest.choose_challenge(challenge.get_all("www-authenticate"))
            if value is None:
                raise BenchError("no usable challenge in the 401")
            authorization = digest.answer_challenge(
                value, username=user, password=passwords[user], method="REGISTER",
                uri=REQUEST_URI, cnonce=secrets.token_hex(8), nc=1,
            )  # fmt: skip
            second = register_bytes(user, 2, call_id, f"z9hG4bK{tag}b{i}", authorization)
            t0 = perf()
            sent = step(second)
            server += perf() - t0
            _only_response(sent, 200)
            self.clock += 0.0002  # 5000 registrations/s of transaction time
            if i % 50 == 49:  # the driver's timer: timer J ends old transactions
                t0 = perf()
                self.fire_timers()
                server += perf() - t0
        total = perf() - started
        return RunResult(registrations, server, total - server)


def _only_response(sent: list[Send], status: int) -> Response:
    if len(sent) != 1:
        raise BenchError(f"expected one datagram back, got {len(sent)}")
    response = parse_message(sent[0].data)
    if not isinstance(response, Response) or response.status != status:
        raise BenchError(f"expected {status}, got {getattr(response, 'status', response)!r}")
    return response


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--registrations", type=int, default=5000, help="per run")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--profile", default=None, help="cProfile the server side of one more run into this file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.registrations < 1 or args.users < 1:
        parser.error("--runs, --registrations and --users must be positive")

    with tempfile.TemporaryDirectory(prefix="pbx-inproc-") as directory:
        passwords = write_dialplan(Path(directory), args.users)
        bench = Bench(Path(directory) / "users.yaml", passwords)
        bench.run(min(1000, args.registrations))  # warm-up: caches, HA1s, first bindings
        print(f"{args.users} users, {args.registrations} authenticated registrations per run "
              "(REGISTER, 401, REGISTER with Authorization, 200)")  # fmt: skip
        print("run | server µs/reg | server reg/s | client µs/reg | server+client reg/s")
        results: list[RunResult] = []
        for run in range(1, args.runs + 1):
            result = bench.run(args.registrations)
            results.append(result)
            n = result.registrations
            print(
                f"{run:>3} | {1e6 * result.server_seconds / n:>13.1f} | {result.server_rate:>12.0f} | "
                f"{1e6 * result.client_seconds / n:>13.1f} | {result.total_rate:>19.0f}"
            )
        # Other processes on the machine only ever slow a run down, so the
        # best run is the truest figure; the median shows the spread.
        best = max(r.server_rate for r in results)
        median = statistics.median(r.server_rate for r in results)
        print(f"server reg/s: best {best:.0f}, median {median:.0f}  (SIP transactions/s: best {2 * best:.0f})")
        print(f"with the client's work: best {max(r.total_rate for r in results):.0f} reg/s")
        if args.profile:
            profiler = cProfile.Profile()

            def profiled(data: bytes) -> list[Send]:
                profiler.enable()
                try:
                    return bench.server_step(data)
                finally:
                    profiler.disable()

            bench.run(args.registrations, profiled)
            profiler.dump_stats(args.profile)
            pstats.Stats(args.profile).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
