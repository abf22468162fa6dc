"""What legitimate phones see while the PBX is flooded.

Starts `pbx serve` with a dialplan of --users extensions and the default
security settings, then runs, for --seconds each, a steady stream of
legitimate registrations (REGISTER, its 401, the authenticated REGISTER,
200: from 127.0.0.1 at --rate per second) and, beside them, legitimate
calls (one extension calling another that answers at once: INVITE, 407,
INVITE with credentials, 200, ACK, BYE, at --call-rate per second; see
legit_calls.py) alone, and beside each flood:

- junk:   random bytes (1-300 per datagram) over UDP from 127.0.0.2, at
          --flood-rate datagrams per second (0: as fast as one process can);
- invite: unauthenticated INVITEs over UDP from 127.0.0.3, at --flood-rate
          per second, each with a new Call-ID (the attacker's count of
          responses shows whether the PBX reflects traffic);
- tcp:    connections from 127.0.0.4-127.0.0.23, 250 from each, held open
          without a byte (the caps close most at once, the idle timer the
          rest);
- all:    the three together.

Each flood runs in its own process. The table gives, per run, the share of
legitimate registrations and calls that succeeded, their time to 200 (p50,
p99), the server's CPU, and what the attacker sent and got back.

    python bench/flood.py [--seconds 10] [--rate 10] [--call-rate 2] [--users 200] [--flood-rate 20000]

The default flood rate, 20,000 packets a second per flood, is about what a
50 Mbit/s link carries of such packets. At 0 (unpaced, several hundred
thousand a second over loopback) one Python process cannot even read the
datagrams as fast as they come, and the kernel drops legitimate ones with
the rest: that flood belongs to a firewall (deploy/fail2ban/ bans by the
PBX's own block lines).

Loopback addresses other than 127.0.0.1 need no set-up on Linux (all of
127.0.0.0/8 is on lo). Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Final

from legit_calls import Callee, call_once
from make_users import Security, User, dialplan_yaml, make_users
from procfs import cpu_ticks, group_members
from register_rate import REPO_ROOT, kill_group

DOMAIN: Final = "pbx.example.com"
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
# The shipped defaults (pbx/routing/dialplan.py SecuritySettings): the point
# is to measure the protection a real installation has.
DEFAULTS: Final = Security(max_auth_failures=10, failure_window=60, block_seconds=300,
                           unauthenticated_per_second=20, unauthenticated_burst=400, source_packets_per_second=2000)


@dataclass(frozen=True, slots=True)
class Legit:
    attempted: int
    succeeded: int
    times_ms: list[float]


@dataclass(frozen=True, slots=True)
class Row:
    flood: str
    legit: Legit
    calls: Legit
    tcp_ok: int
    tcp_tried: int
    cpu_percent: float
    attacker: str


# --------------------------------------------------------------- the server

@contextmanager
def server(dialplan: Path, db: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    argv = [sys.executable, "-m", "pbx", "serve", "--dialplan", str(dialplan), "--db", f"sqlite:///{db}",
            "--listen", "udp:127.0.0.1:0", "--listen", "tcp:0.0.0.0:0"]
    with log.open("wb") as output:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   cwd=REPO_ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        ports: dict[str, int] = {}
        while len(ports) < 2:
            for line in log.read_text(errors="replace").splitlines():
                words = line.split()
                if len(words) == 2 and words[0] == "listening":
                    transport = words[1].split(":", 1)[0]
                    ports[transport] = int(words[1].rsplit(":", 1)[1])
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield process, ports["udp"], ports["tcp"]
    finally:
        kill_group(process)


# --------------------------------------------------------------- legitimate phones

def register_once(sock: socket.socket, port: int, user: User, timeout: float = 2.0) -> float | None:
    """One full registration; seconds to the 200, or None."""
    from pbx.sip import digest
    from pbx.sip.message import Response
    from pbx.sip.parser import parse_message

    host, local_port = sock.getsockname()[:2]
    call_id = secrets.token_hex(8)

    def request(cseq: int, authorization: str | None) -> bytes:
        lines = [f"REGISTER sip:{DOMAIN} SIP/2.0",
                 f"Via: SIP/2.0/UDP {host}:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport",
                 "Max-Forwards: 70", f"From: <sip:{user.extension}@{DOMAIN}>;tag={call_id[:8]}",
                 f"To: <sip:{user.extension}@{DOMAIN}>", f"Call-ID: {call_id}", f"CSeq: {cseq} REGISTER",
                 f"Contact: <sip:{user.extension}@{host}:{local_port}>", "Expires: 600"]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        return ("\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n").encode()

    def final(cseq: int, deadline: float) -> Response | None:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except (TimeoutError, socket.timeout):
                return None
            message = parse_message(data)
            if isinstance(message, Response) and message.status >= 200 and message.cseq.number == cseq:
                return message
        return None

    start = time.monotonic()
    deadline = start + timeout
    sock.sendto(request(1, None), ("127.0.0.1", port))
    challenged = final(1, deadline)
    if challenged is None or challenged.status != 401:
        return None
    value = digest.choose_challenge(challenged.get_all("www-authenticate"))
    if value is None:
        return None
    answer = digest.answer_challenge(value, username=user.extension, password=user.password, method="REGISTER",
                                     uri=f"sip:{DOMAIN}", cnonce=secrets.token_hex(4), nc=1)
    sock.sendto(request(2, answer), ("127.0.0.1", port))
    ok = final(2, deadline)
    return time.monotonic() - start if ok is not None and ok.status == 200 else None


def paced(rate: float, seconds: float, attempt: Callable[[socket.socket, int], float | None]) -> Legit:
    """``attempt(sock, n)`` at ``rate`` a second for ``seconds``, from one
    socket on 127.0.0.1; each returns its seconds, or None for a failure."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    times: list[float] = []
    attempted = 0
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            due = start + attempted / rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            took = attempt(sock, attempted)
            attempted += 1
            if took is not None:
                times.append(took * 1000)
    finally:
        sock.close()
    return Legit(attempted=attempted, succeeded=len(times), times_ms=times)


def legitimate(port: int, users: Sequence[User], rate: float, seconds: float) -> Legit:
    return paced(rate, seconds, lambda sock, n: register_once(sock, port, users[n % len(users)]))


def legitimate_calls(port: int, caller: User, callee: str, rate: float, seconds: float) -> Legit:
    return paced(rate, seconds, lambda sock, n: call_once(sock, port, caller, callee, DOMAIN))


def tcp_options(port: int, tries: int = 10) -> int:
    """New TCP connections from 127.0.0.1 that get an OPTIONS answered."""
    ok = 0
    for n in range(tries):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                host, local = sock.getsockname()[:2]
                sock.sendall((f"OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TCP {host}:{local};branch=z9hG4bKo{n}\r\n"
                              f"From: <sip:probe@{DOMAIN}>;tag={n}\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: probe-{n}\r\n"
                              "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode())
                ok += sock.recv(100).startswith(b"SIP/2.0 200")
        except OSError:
            pass
    return ok


# --------------------------------------------------------------- attackers

class Pacer:
    """Batches of 100 at ``rate`` per second (0: unpaced)."""

    def __init__(self, rate: float) -> None:
        self.rate, self.start, self.batches = rate, time.monotonic(), 0

    def wait(self) -> None:
        self.batches += 1
        if self.rate:
            due = self.start + self.batches * 100 / self.rate
            if (left := due - time.monotonic()) > 0:
                time.sleep(left)


def junk(port: int, rate: float, stop: Event, result: "multiprocessing.Queue[str]") -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.2", 0))
    sock.setblocking(False)
    rng = random.Random(1)
    sent = 0
    pacer = Pacer(rate)
    while not stop.is_set():
        pacer.wait()
        for _ in range(100):
            try:
                sock.sendto(rng.randbytes(rng.randint(1, 300)), ("127.0.0.1", port))
                sent += 1
            except BlockingIOError:
                time.sleep(0.001)
    result.put(f"junk: {sent:,} datagrams")


def invites(port: int, rate: float, stop: Event, result: "multiprocessing.Queue[str]") -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.3", 0))
    sock.setblocking(False)
    local_port = sock.getsockname()[1]
    sent = answered = sent_bytes = answered_bytes = 0
    pacer = Pacer(rate)
    while not stop.is_set():
        pacer.wait()
        for _ in range(100):
            tag = secrets.token_hex(6)
            data = (f"INVITE sip:0912345678@{DOMAIN} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.3:{local_port};branch=z9hG4bK{tag}\r\nMax-Forwards: 70\r\n"
                    f"From: <sip:1001@{DOMAIN}>;tag={tag}\r\nTo: <sip:0912345678@{DOMAIN}>\r\n"
                    f"Call-ID: {tag}@flood\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@127.0.0.3:{local_port}>\r\n"
                    "Content-Length: 0\r\n\r\n").encode()
            try:
                sock.sendto(data, ("127.0.0.1", port))
                sent += 1
                sent_bytes += len(data)
            except BlockingIOError:
                time.sleep(0.001)
        while True:
            try:
                answered_bytes += len(sock.recv(65535))
                answered += 1
            except BlockingIOError:
                break
    time.sleep(1.0)  # late answers (and retransmissions) still count
    sock.settimeout(0.2)
    try:
        while True:
            answered_bytes += len(sock.recv(65535))
            answered += 1
    except (TimeoutError, socket.timeout):
        pass
    result.put(f"invite: {sent:,} sent ({sent_bytes / 1e6:.1f} MB), {answered:,} answers "
               f"({answered_bytes / 1e6:.1f} MB)")


def connections(port: int, rate: float, stop: Event, result: "multiprocessing.Queue[str]") -> None:
    opened: list[socket.socket] = []
    refused = 0
    for n in range(20):
        for _ in range(250):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((f"127.0.0.{4 + n}", 0))
                sock.connect(("127.0.0.1", port))
                opened.append(sock)
            except OSError:
                refused += 1
                sock.close()
    time.sleep(1.0)
    alive = 0
    for sock in opened:
        sock.setblocking(False)
        try:
            alive += sock.recv(1) != b""  # data would be odd; b"" is a close
        except BlockingIOError:
            alive += 1  # nothing to read: still open
        except OSError:
            pass
    stop.wait()
    for sock in opened:
        sock.close()
    result.put(f"tcp: {len(opened) + refused:,} tried, {alive:,} open after 1 s")


FLOODS: Final = {"junk": (junk,), "invite": (invites,), "tcp": (connections,), "all": (junk, invites, connections)}


def run_one(name: str, process: subprocess.Popen[bytes], udp: int, tcp: int, users: Sequence[User],
            args: argparse.Namespace) -> Row:
    stop = multiprocessing.Event()
    results: multiprocessing.Queue[str] = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=f, args=(tcp if f is connections else udp, args.flood_rate, stop,
                                                       results))
               for f in FLOODS.get(name, ())]
    for worker in workers:
        worker.start()
    # users[0] answers calls from users[1]; the others register.
    callee = Callee(udp, users[0], register_once)
    time.sleep(1.0 if workers else 0.0)  # let the flood reach its pace
    pids = group_members(process.pid) or [process.pid]
    before = cpu_ticks(pids)
    started = time.monotonic()
    calls: list[Legit] = []
    caller = threading.Thread(target=lambda: calls.append(
        legitimate_calls(udp, users[1], users[0].extension, args.call_rate, args.seconds)))
    caller.start()
    legit = legitimate(udp, users[2:], args.rate, args.seconds)
    caller.join()
    elapsed = time.monotonic() - started
    callee.close()
    cpu = (cpu_ticks(pids) - before) / CLK_TCK / elapsed * 100
    tcp_ok = tcp_options(tcp)
    stop.set()
    lines = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return Row(flood=name, legit=legit, calls=calls[0], tcp_ok=tcp_ok, tcp_tried=10, cpu_percent=cpu,
               attacker="; ".join(sorted(lines)) or "-")


def _columns(legit: Legit) -> str:
    times = sorted(legit.times_ms)
    p50 = f"{statistics.median(times):.1f}" if times else "-"
    p99 = f"{times[min(len(times) - 1, int(len(times) * 0.99))]:.1f}" if times else "-"
    return f"{legit.succeeded}/{legit.attempted} | {p50} | {p99}"


def table(rows: Sequence[Row]) -> str:
    out = ["| flood | legit registrations ok | p50 ms | p99 ms | legit calls ok | to 200 p50 ms | p99 ms "
           "| legit TCP OPTIONS ok | server CPU | attacker |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        out.append(f"| {row.flood} | {_columns(row.legit)} | {_columns(row.calls)} | {row.tcp_ok}/{row.tcp_tried} | "
                   f"{row.cpu_percent:.0f} % | {row.attacker} |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run (default 10)")
    parser.add_argument("--rate", type=float, default=10.0, help="legitimate registrations per second (default 10)")
    parser.add_argument("--call-rate", type=float, default=2.0, help="legitimate calls per second (default 2)")
    parser.add_argument("--users", type=int, default=200, help="extensions in the dialplan (default 200)")
    parser.add_argument("--flood-rate", type=float, default=20000.0,
                        help="packets per second of each UDP flood; 0: as fast as possible (default 20000)")
    parser.add_argument("--floods", default="none,junk,invite,tcp,all",
                        help="runs, comma-separated, from none, junk, invite, tcp, all")
    args = parser.parse_args(argv)
    users = make_users(args.users, password="flood-bench-secret")
    with tempfile.TemporaryDirectory(prefix="pbx-flood-") as work:
        workdir = Path(work)
        dialplan = workdir / "dialplan.yaml"
        dialplan.write_text(dialplan_yaml(users, domain=DOMAIN, credentials="password", security=DEFAULTS))
        rows = []
        for name in args.floods.split(","):
            # A fresh server per run: blocks and counts from one flood must
            # not colour the next.
            with server(dialplan, workdir / f"{name}.sqlite3", workdir / f"{name}.log") as (process, udp, tcp):
                rows.append(run_one(name, process, udp, tcp, users, args))
            print(f"{name}: done", file=sys.stderr, flush=True)
    flood = f"{args.flood_rate:,.0f} packets/s per UDP flood" if args.flood_rate else "unpaced UDP floods"
    print(f"legitimate: {args.rate:g} registrations/s and {args.call_rate:g} calls/s from 127.0.0.1 for "
          f"{args.seconds:g} s per run; {flood}; default security settings")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
