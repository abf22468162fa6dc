"""Authenticated REGISTERs per second over TLS next to plain TCP (and TLS
with a new connection, hence a full handshake, for every registration).

Debian's SIPp is built without TLS (`-t l1` is missing), so the load comes
from Python clients here: --clients asyncio connections, each registering
one extension after another (REGISTER, 401, REGISTER with digest, 200)
for --duration seconds. The client side is Python too, so the absolute
figures are lower than bench/register_rate.py's SIPp ones; what this shows
is the cost of TLS next to TCP measured the same way, with the server's
CPU per registration beside it.

    python bench/tls_register_rate.py --duration 10 --clients 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trustme

from make_users import User, write_users
from procfs import cpu_ticks, group_members

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pbx.sip import digest  # noqa: E402
from pbx.sip.parser import StreamFramer, parse_message  # noqa: E402

DOMAIN: Final = "pbx.example.com"
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    mode: str
    registrations: int
    seconds: float
    server_cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.registrations / self.seconds

    @property
    def cpu_ms_each(self) -> float:
        return 1000 * self.server_cpu_seconds / max(1, self.registrations)


def register_request(user: User, local: str, call_id: str, cseq: int, transport: str,
                     authorization: str | None) -> bytes:
    lines = [f"REGISTER sip:{DOMAIN} SIP/2.0",
             f"Via: SIP/2.0/{transport} {local};branch=z9hG4bK{secrets.token_hex(8)};rport", "Max-Forwards: 70",
             f"From: <sip:{user.extension}@{DOMAIN}>;tag={secrets.token_hex(4)}", f"To: <sip:{user.extension}@{DOMAIN}>",
             f"Call-ID: {call_id}", f"CSeq: {cseq} REGISTER",
             f"Contact: <sip:{user.extension}@{local};transport={transport.lower()}>", "Expires: 600"]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


async def read_message(reader: asyncio.StreamReader, framer: StreamFramer, pending: list[bytes]) -> bytes:
    while not pending:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed")
        pending.extend(f for f in framer.feed(chunk) if f.strip())
    return pending.pop(0)


async def register_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, user: User, transport: str,
                        framer: StreamFramer, pending: list[bytes]) -> bool:
    local = "%s:%d" % writer.get_extra_info("sockname")[:2]
    call_id = secrets.token_hex(8)
    writer.write(register_request(user, local, call_id, 1, transport, None))
    challenge = parse_message(await read_message(reader, framer, pending))
    value = digest.choose_challenge(challenge.get_all("www-authenticate"))
    if value is None:
        return False
    answer = digest.answer_challenge(value, username=user.extension, password=user.password, method="REGISTER",
                                     uri=f"sip:{DOMAIN}", cnonce=secrets.token_hex(4), nc=1)
    writer.write(register_request(user, local, call_id, 2, transport, answer))
    final = parse_message(await read_message(reader, framer, pending))
    return getattr(final, "status", 0) == 200


async def client(port: int, users: list[User], context: ssl.SSLContext | None, transport: str, reconnect: bool,
                 until: float) -> int:
    done, index = 0, 0
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.monotonic() < until:
        if connection is None:
            connection = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                      server_hostname="127.0.0.1" if context else None)
        reader, writer = connection
        if await register_once(reader, writer, users[index % len(users)], transport, StreamFramer(), []):
            done += 1
        index += 1
        if reconnect:
            writer.close()
            connection = None
    if connection is not None:
        connection[1].close()
    return done


async def measure(port: int, users: list[User], context: ssl.SSLContext | None, transport: str, reconnect: bool,
                  clients: int, duration: float) -> int:
    until = time.monotonic() + duration
    share = max(1, len(users) // clients)
    counts = await asyncio.gather(*(client(port, users[i * share:(i + 1) * share], context, transport, reconnect,
                                           until) for i in range(clients)))
    return sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--users", type=int, default=2000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pbx-tls-bench-"))
    users = write_users(args.users, folder / "plan.yaml", folder / "users.csv")
    plan = folder / "plan.yaml"
    plan.write_text(plan.read_text().replace("security:\n", "security:\n  tcp_max_per_source: 100000\n", 1))
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = folder / "pbx.crt", folder / "pbx.key"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    context = ssl.create_default_context()
    ca.configure_trust(context)
    command = [sys.executable, "-m", "pbx", "serve", "--dialplan", str(plan), "--db",
               f"sqlite:///{folder / 'pbx.sqlite3'}", "--pid-file", str(folder / "pbx.pid"),
               "--listen", "tcp:127.0.0.1:0", "--listen", "tls:127.0.0.1:0",
               "--tls-cert", str(cert), "--tls-key", str(key), "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              start_new_session=True)
    ports: dict[str, int] = {}
    assert server.stdout is not None
    while len(ports) < 2:
        line = server.stdout.readline()
        if not line:
            raise SystemExit("pbx serve did not start")
        if line.startswith("listening "):
            kind, _, port = line.split()[1].rpartition(":")
            ports[kind.split(":")[0]] = int(port)
    rows: list[Row] = []
    try:
        # Unmeasured: every binding's first write and the server's warm-up.
        asyncio.run(measure(ports["tcp"], users, None, "TCP", False, args.clients, args.duration))
        for mode, transport, tls, reconnect in (("TCP, kept connections", "TCP", False, False),
                                                ("TLS, kept connections", "TLS", True, False),
                                                ("TLS, a handshake each", "TLS", True, True)):
            before = cpu_ticks(group_members(server.pid))
            started = time.monotonic()
            count = asyncio.run(measure(ports["tls" if tls else "tcp"], users, context if tls else None, transport,
                                        reconnect, args.clients, args.duration))
            elapsed = time.monotonic() - started
            cpu = (cpu_ticks(group_members(server.pid)) - before) / CLOCK_TICKS
            rows.append(Row(mode, count, elapsed, cpu))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    print(f"{'mode':<24} {'registrations/s':>16} {'server CPU ms each':>19}")
    for row in rows:
        print(f"{row.mode:<24} {row.rate:>16.0f} {row.cpu_ms_each:>19.2f}")


if __name__ == "__main__":
    main()
