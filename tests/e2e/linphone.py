"""A Linphone softphone for end-to-end tests: ``linphonec`` (Debian
``linphone-cli``) driven over its stdin, its console output read by a thread.

linphonec keeps its state under ``$HOME`` and will not start its SIP stack
without a writable database there, so each phone gets its own home in the
test's directory, and a configuration file that pins its SIP and RTP ports
and takes audio from files (``soundcard use files``: ``play`` sends a WAV
into the call, ``record`` writes what the call brings). IPv6 is off (the
pjsua2 phones speak IPv4 only); linphonec still advertises the machine's
own interface address in its SDP, not 127.0.0.1 (this version has no
setting for it), so media to it stays on this host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from tests.server import free_port

CONFIG = """\
[sip]
sip_port={sip_port}
sip_tcp_port=0
sip_tls_port={tls_port}
{tls_settings}use_rfc2833=1
use_info=0
guess_hostname=0
register_only_when_network_is_up=0
use_ipv6=0
ipv6_migration_done=1
[rtp]
audio_rtp_port={rtp_port}
[sound]
echocancellation=0
[video]
enabled=0
automatically_initiate=0
automatically_accept=0
"""


def available() -> bool:
    return shutil.which("linphonec") is not None


class Linphone:
    def __init__(self, directory: Path, *, tls_ca: Path | None = None) -> None:
        """``tls_ca``: speak SIP over TLS only (UDP off), trusting this CA
        and checking the server's name, as a phone set up for TLS does."""
        home = directory / "home"
        (home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        config = directory / "linphonerc"
        tls = "" if tls_ca is None else f"root_ca={tls_ca}\nverify_server_certs=1\nverify_server_cn=1\n"
        config.write_text(CONFIG.format(sip_port=free_port() if tls_ca is None else 0, rtp_port=free_port(),
                                        tls_port=0 if tls_ca is None else free_port(), tls_settings=tls))
        self.output = directory / "linphonec.out"
        self._lines: list[str] = []
        self._lock = threading.Condition()
        self.process = subprocess.Popen(
            ["linphonec", "-c", str(config), "-d", "5", "-l", str(directory / "linphone.log")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(home)}, cwd=directory)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.send("soundcard use files")  # read when the console is up (its prompt ends no line)
        self.wait_for("Using wav files")

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.output.open("wb") as log:
            for raw in self.process.stdout:
                log.write(raw)
                log.flush()
                with self._lock:
                    self._lines.append(raw.decode("utf-8", "replace"))
                    self._lock.notify_all()

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((line + "\n").encode())
        self.process.stdin.flush()

    def wait_for(self, text: str, timeout: float = 10.0) -> str:
        """The first line seen so far or from now on holding ``text``
        (consumed, so the next wait for the same text waits for a new one)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for index, line in enumerate(self._lines):
                    if text in line:
                        del self._lines[:index + 1]
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise TimeoutError(f"linphonec: no {text!r} within {timeout} s; see {self.output}:\n"
                                       f"{self.output.read_text(errors='replace')[-2000:]}")
                self._lock.wait(left)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("terminate")
                self.send("quit")
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
