"""Run a real `pbx serve` process for end-to-end tests.

    with run_server(dialplan, "sqlite:///" + str(tmp_path / "pbx.sqlite3"),
                    ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]) as server:
        sipp(f"127.0.0.1:{server.udp_port}", ...)

Port 0 lets the server pick a free port; it prints what it bound as
`listening udp:HOST:PORT` lines on stdout, and `run_server` waits for one such
line per `--listen` before it yields.  `restart()` stops the server and starts
it again on the ports it had, so clients keep their address for it.  The
server runs in its own process group, which is killed on exit whatever
happened in the test.

PBX_SERVER_COMMAND, if set, replaces `python -m pbx` (split like a shell
line), to run the tests against another build of the server.
"""

from __future__ import annotations

import collections
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0
# `listening udp:127.0.0.1:5060`; IPv6 hosts come bracketed: `tcp:[::1]:5060`.
_LISTENING: Final = re.compile(r"\blistening (udp|tcp|tls|wss|ws):(\[[^\]]+\]|[^\s:]+):(\d+)\b")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


class ServerError(RuntimeError):
    """The server did not start, or stopped before it said where it listens."""


@dataclass(frozen=True, slots=True)
class Listen:
    """One `--listen` value: transport, host and port (0: any free port)."""

    transport: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        transport, sep, rest = text.partition(":")
        host, sep2, port = rest.rpartition(":")
        if not sep or not sep2 or transport not in ("udp", "tcp", "tls", "ws", "wss") or not host or not port.isdigit():
            raise ValueError(f"listen address must look like udp:HOST:PORT or tcp:HOST:PORT, got {text!r}")
        return cls(transport, host, int(port))

    def __str__(self) -> str:
        return f"{self.transport}:{self.host}:{self.port}"


def server_command() -> list[str]:
    """How to start the server: PBX_SERVER_COMMAND or this Python's `-m pbx`."""
    override = os.environ.get("PBX_SERVER_COMMAND")
    if override:
        return shlex.split(override)
    return [sys.executable, "-m", "pbx"]


class _OutputReader:
    """Drains the server's stdout in a thread, so the pipe never fills.

    Keeps the last lines for error messages and the addresses from the
    `listening` lines.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Condition()
        self._tail: collections.deque[str] = collections.deque(maxlen=200)
        self._all: list[str] = []  # every line, for tests that look for one
        self._listening: list[Listen] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="pbx-stdout", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for line in self._stream:
            with self._lock:
                self._tail.append(line.rstrip("\n"))
                self._all.append(line.rstrip("\n"))
                if (match := _LISTENING.search(line)) is not None:
                    transport, host, port = match.groups()
                    self._listening.append(Listen(transport, host.strip("[]"), int(port)))
                self._lock.notify_all()
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def wait_listening(self, count: int, deadline: float) -> list[Listen] | None:
        """The first `count` addresses, or None if stdout closed or time ran out."""
        with self._lock:
            while len(self._listening) < count and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(timeout=left)
            return list(self._listening[:count]) if len(self._listening) >= count else None

    def tail(self) -> str:
        with self._lock:
            return "\n".join(self._tail)

    def lines_with(self, text: str) -> list[str]:
        with self._lock:
            return [line for line in self._all if text in line]

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


STARTED: list[RunningServer] = []
"""Servers started since the current test began (tests/conftest.py shows
their output when the test fails, then clears the list)."""


class RunningServer:
    """A started `pbx serve`; `udp_port`/`tcp_port` are the real bound ports."""

    def __init__(self, dialplan: Path, db_url: str, listens: list[str], extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        if not listens:
            raise ValueError("run_server needs at least one listen address")
        self._dialplan = dialplan
        self._db_url = db_url
        self._extra_args = extra_args
        self._env = env or {}
        self._requested = [Listen.parse(text) for text in listens]
        self._bound: list[Listen] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader: _OutputReader | None = None
        # Each server its own pid file: tests run servers side by side.
        self.pid_file = Path(tempfile.mkdtemp(prefix="pbx-test-")) / "pbx.pid"

    @property
    def process(self) -> subprocess.Popen[str]:
        if self._process is None:
            raise ServerError("the server is not running")
        return self._process

    @property
    def udp_port(self) -> int:
        return self._port("udp")

    @property
    def tcp_port(self) -> int:
        return self._port("tcp")

    @property
    def tls_port(self) -> int:
        return self._port("tls")

    @property
    def listening(self) -> list[Listen]:
        """Every address the server reported, in the order it did."""
        return list(self._bound)

    def output(self) -> str:
        """The last lines the server wrote (stdout and stderr), for messages."""
        return self._reader.tail() if self._reader is not None else ""

    def _port(self, transport: str) -> int:
        for listen in self._bound:
            if listen.transport == transport:
                return listen.port
        raise LookupError(f"the server was not asked to listen on {transport}")

    def start(self) -> None:
        """Start the process and wait until it reported every listen address."""
        # After a restart, ask for the ports it had, not for new port-0 ones.
        listens = self._bound or self._requested
        command = [*server_command(), "serve", "--dialplan", str(self._dialplan), "--db", self._db_url,
                   "--pid-file", str(self.pid_file), *self._extra_args]
        for listen in listens:
            command += ["--listen", str(listen)]
        environment = dict(os.environ, PYTHONUNBUFFERED="1", **self._env)
        self._process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group, killed as one
        )
        assert self._process.stdout is not None
        self._reader = _OutputReader(self._process.stdout)
        bound = self._reader.wait_listening(len(listens), time.monotonic() + START_TIMEOUT)
        if bound is None:
            try:  # stdout closes just before the exit status can be read
                code: int | None = self._process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = None
            self.stop()
            state = f"exited with {code}" if code is not None else f"said nothing in {START_TIMEOUT:.0f} s"
            raise ServerError(f"pbx serve {state}: {shlex.join(command)}\n{self.output()}")
        self._bound = bound
        STARTED.append(self)

    def stop(self) -> int | None:
        """SIGTERM the process group, SIGKILL it if it lingers; the exit code."""
        process = self._process
        if process is None:
            return None
        self._process = None
        for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        code = process.wait(timeout=STOP_TIMEOUT)
        # The group may hold children that outlived the leader.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self._reader is not None:
            self._reader.join(timeout=STOP_TIMEOUT)
        return code

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the server process (SIGHUP: reload)."""
        os.kill(self.process.pid, signum)

    def lines_with(self, text: str) -> list[str]:
        """Every line the server printed since it (re)started holding ``text``."""
        return self._reader.lines_with(text) if self._reader is not None else []

    def wait_lines(self, text: str, count: int = 1, *, timeout: float = 10.0) -> list[str]:
        """Wait until ``count`` lines holding ``text`` were printed; them.
        Raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines_with(text)
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"server printed {len(lines)} of {count} lines with {text!r}; output:\n{self.output()[-4000:]}")
            time.sleep(0.05)

    def restart(self) -> None:
        """Stop the server and start it again on the same addresses."""
        self.stop()
        self.start()


@contextmanager
def run_server(dialplan: Path, db_url: str, listens: list[str],
               extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """Start `pbx serve` with these listen addresses (and more options from
    ``extra_args``, more environment from ``env``); stop it at exit."""
    server = RunningServer(dialplan, db_url, listens, extra_args, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()
