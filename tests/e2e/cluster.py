"""A cluster for end-to-end tests: a real Kamailio (deploy/kamailio/
kamailio.cfg) in front of two `pbx serve` nodes sharing one PostgreSQL
schema, all on loopback ports.

    with start_cluster(tmp_path, dialplan) as cluster:
        phone.register(..., registrar=cluster.edge)   # phones talk to the edge only
        cluster.kill("node-a")                        # SIGKILL: a crash

The schema is made for the cluster and dropped after it (as tests/store
does), so parallel runs against one server never meet.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import pytest
import trustme
from sqlalchemy import text

from pbx.store.db import make_engine
from tests.postgres import postgres_schema
from tests.server import REPO_ROOT, RunningServer, free_port
from tests.tls_certs import write_ca, write_leaf

from .harness import cdr_rows

KAMAILIO_CONFIG: Final = REPO_ROOT / "deploy" / "kamailio" / "kamailio.cfg"
NODES: Final = ("node-a", "node-b")
START_TIMEOUT: Final = 20.0


class Kamailio:
    """A Kamailio process in the foreground on ``port``, dispatching to
    ``nodes`` (host:port each)."""

    def __init__(self, directory: Path, port: int, nodes: list[str], *,
                 tls: tuple[int, Path, Path] | None = None, flood_requests: int | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.nodes_file = directory / "dispatcher.list"
        self.nodes_file.write_text("".join(f"1 sip:{node}\n" for node in nodes))
        self.log_path = directory / "kamailio.log"
        run_dir = directory / "run"
        run_dir.mkdir(exist_ok=True)
        binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        self.command = [
            binary, "-DD", "-E", "-f", str(KAMAILIO_CONFIG), "-Y", str(run_dir), "-w", str(directory),
            "-A", f"EDGE_LISTEN=udp:127.0.0.1:{port}", "-A", f"EDGE_LISTEN_TCP=tcp:127.0.0.1:{port}",
            "-A", f'DISPATCHER_LIST="{self.nodes_file}"',
        ]
        if flood_requests is not None:
            self.command += ["-A", f"FLOOD_REQUESTS={flood_requests}"]
        if tls is not None:  # (port, certificate, key)
            tls_port, cert, key = tls
            self.command += ["-A", f"EDGE_LISTEN_TLS=tls:127.0.0.1:{tls_port}", "-A", f'EDGE_TLS_CERT="{cert}"',
                             "-A", f'EDGE_TLS_KEY="{key}"']
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_answering()

    def _wait_answering(self) -> None:
        """Until the edge answers an OPTIONS to itself."""
        deadline = time.monotonic() + START_TIMEOUT
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            probe.settimeout(0.5)
            local = probe.getsockname()[1]
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"kamailio exited with {self.process.returncode}:\n{self.output()}")
                branch = uuid.uuid4().hex
                probe.sendto((
                    f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{branch};rport\r\n"
                    "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=probe\r\n"
                    f"To: <sip:127.0.0.1:{self.port}>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\n"
                    "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", self.port))
                try:
                    if probe.recv(4096).startswith(b"SIP/2.0 200"):
                        return
                except TimeoutError:
                    continue
        raise RuntimeError(f"kamailio did not answer in {START_TIMEOUT} s:\n{self.output()}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def lines_with(self, text_: str) -> list[str]:
        return [line for line in self.log_path.read_text(errors="replace").splitlines() if text_ in line]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


@dataclass
class Cluster:
    edge_port: int
    db_url: str
    nodes: dict[str, RunningServer]
    kamailio: Kamailio
    killed: set[str] = field(default_factory=set)
    tls_port: int | None = None
    ca_file: Path | None = None
    """The CA that signed the edge's TLS certificate (phones trust it)."""

    @property
    def edge(self) -> str:
        """host:port phones register and call to."""
        return f"127.0.0.1:{self.edge_port}"

    @property
    def edge_tls(self) -> str:
        """host:port of the edge's TLS listener (``start_cluster(tls=True)``)."""
        assert self.tls_port is not None, "started without tls"
        return f"127.0.0.1:{self.tls_port}"

    def kill(self, node: str) -> None:
        """SIGKILL ``node``'s process group: a crash, nothing said to anyone."""
        os.killpg(self.nodes[node].process.pid, signal.SIGKILL)
        self.nodes[node].process.wait(timeout=10)
        self.killed.add(node)

    def wait_known(self, aor: str, timeout: float = 10.0) -> None:
        """Until every live node knows ``aor``'s registration: it is in the
        store, and each node that did not take it has read it back (the
        REGISTER's 200 goes out before the binding is written)."""
        deadline = time.monotonic() + timeout
        taken_by: set[str] = set()
        engine = make_engine(self.db_url)
        try:
            while not taken_by:
                with engine.connect() as conn:
                    taken_by = {row[0] for row in conn.execute(
                        text("SELECT node FROM registration_bindings WHERE aor = :aor"), {"aor": aor})}
                if time.monotonic() > deadline:
                    raise AssertionError(f"{aor} is not in the store:\n{self.output()}")
                time.sleep(0.05)
        finally:
            engine.dispose()
        for name, server in self.nodes.items():
            if name in taken_by or name in self.killed:
                continue
            while not [line for line in server.lines_with("bindings_refreshed") if f'"{aor}"' in line]:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} never read {aor} back:\n{self.output()}")
                time.sleep(0.05)

    def cdrs(self) -> list[dict[str, str]]:
        return cdr_rows(self.db_url)

    def output(self) -> str:
        """Everything worth showing when a test fails."""
        parts = [f"--- {name}\n{server.output()[-3000:]}" for name, server in self.nodes.items()]
        return "\n".join([*parts, f"--- kamailio\n{self.kamailio.output()}"])


@contextmanager
def start_cluster(directory: Path, dialplan: str, nodes: tuple[str, ...] = NODES, *,
                  tls: bool = False, flood_requests: int | None = None) -> Iterator[Cluster]:
    """Kamailio and ``nodes`` (two by default) on one fresh PostgreSQL schema;
    ``tls``: the edge listens on TLS too, with a certificate from a test CA;
    ``flood_requests``: the edge's per-address limit per 2 s (a load
    generator is one address standing for many phones)."""
    if shutil.which("kamailio") is None and not Path("/usr/sbin/kamailio").exists():
        pytest.skip("kamailio is not installed (make deps)")
    directory.mkdir(parents=True, exist_ok=True)
    plan = directory / "plan.yaml"
    plan.write_text(dialplan)
    with ExitStack() as stack:
        db_url = stack.enter_context(postgres_schema("pbx_cluster"))
        edge_port = free_port()
        servers = {name: RunningServer(plan, db_url, ["udp:127.0.0.1:0"], env={"PBX_NODE": name}) for name in nodes}
        for server in servers.values():
            stack.callback(server.stop)
        # Started side by side (the first to migrate holds the others on the
        # migration lock), which halves the wait.
        with ThreadPoolExecutor(len(servers)) as starting:
            for started in [starting.submit(server.start) for server in servers.values()]:
                started.result()
        tls_port = ca_file = edge_tls = None
        if tls:
            ca = trustme.CA()
            cert, key = write_leaf(ca, directory / "tls", "localhost", "127.0.0.1", stem="edge")
            ca_file = write_ca(ca, directory / "tls" / "ca.pem")
            tls_port = free_port()
            edge_tls = (tls_port, cert, key)
        kamailio = Kamailio(directory / "kamailio", edge_port,
                            [f"127.0.0.1:{server.udp_port}" for server in servers.values()], tls=edge_tls,
                            flood_requests=flood_requests)
        stack.callback(kamailio.stop)
        yield Cluster(edge_port=edge_port, db_url=db_url, nodes=servers, kamailio=kamailio, tls_port=tls_port,
                      ca_file=ca_file)
