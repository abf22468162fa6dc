"""SIPp in the trunk tests: running a scenario (often as the provider) and
reading its message log (``-trace_msg -message_file F``)."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.server import free_port

_SEPARATOR = re.compile(r"^-{20,}.*$", re.M)


@dataclass(frozen=True, slots=True)
class Logged:
    received: bool
    """True for a message SIPp received, False for one it sent."""
    text: str

    @property
    def start_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        match = re.search(rf"^{re.escape(name)}\s*:\s*(.*?)\s*$", self.text, re.M | re.I)
        return match.group(1) if match else None


def read_messages(path: Path) -> list[Logged]:
    """Every message in the log, in order. Retransmissions included."""
    if not path.exists():
        return []
    found = []
    for block in _SEPARATOR.split(path.read_text(errors="replace")):
        description, _, message = block.strip("\n").partition("\n")
        if "message received" in description or "message sent" in description:
            found.append(Logged(received="received" in description, text=message.strip("\n")))
    return found


def requests(path: Path, method: str) -> list[Logged]:
    """The ``method`` requests SIPp received."""
    return [m for m in read_messages(path) if m.received and m.start_line.startswith(f"{method} ")]


SCENARIOS = Path(__file__).resolve().parents[2] / "sipp-scenarios"


class Sipp:
    """One SIPp process playing a scenario of sipp-scenarios/ over UDP on
    127.0.0.1, with its message log and error log in ``log_dir``.

    ``remote`` (host:port) makes it a UAC towards that address; without it
    it is a UAS waiting on ``port``. ``calls`` is SIPp's ``-m``: it exits
    after that many calls, 0 when every one went as the scenario says.
    """

    def __init__(self, scenario: str, log_dir: Path, *, keys: dict[str, str] | None = None,
                 port: int | None = None, remote: str | None = None, calls: int = 1,
                 extra: tuple[str, ...] = ()) -> None:
        self.port = port if port is not None else free_port()
        name = f"{scenario}-{self.port}"
        self.messages = log_dir / f"{name}-messages.log"
        self.errors = log_dir / f"{name}-errors.log"
        self.output = log_dir / f"{name}.out"
        command = ["sipp", *([remote] if remote else []), "-sf", str(SCENARIOS / f"{scenario}.xml"),
                   "-i", "127.0.0.1", "-p", str(self.port), "-mp", str(free_port()), "-t", "u1",
                   "-m", str(calls), "-nostdin", "-trace_msg", "-message_file", str(self.messages),
                   "-trace_err", "-error_file", str(self.errors), *extra]
        for key, value in (keys or {}).items():
            command += ["-key", key, value]
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, cwd=log_dir)
        time.sleep(0.1)   # let it bind before anyone sends to it
        if self.process.poll() is not None:
            raise AssertionError(f"sipp exited at start: {self.describe()}")

    def wait(self, timeout: float = 15.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"sipp did not finish: {self.describe()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def requests(self, method: str) -> list[Logged]:
        return requests(self.messages, method)

    def describe(self) -> str:
        parts = []
        for path in (self.output, self.errors):
            if path.exists():
                parts.append(f"{path.name}:\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)
