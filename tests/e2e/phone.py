"""pytest side of the end-to-end softphone.

Each :class:`Phone` owns one ``phone_process.py`` subprocess (pjsua2 allows a
single Endpoint per process) and talks to it with JSON lines: commands on the
child's stdin, events on its stdout, read by a thread into a queue.

Waiting works like ``pexpect``: :meth:`Phone.wait_for` reads events in order
and returns the first that matches; the events it skipped over are consumed
(they stay visible in :attr:`Phone.history`).  An ``error`` event met while
waiting for something else raises :class:`PhoneError` at once, so a refused
command fails the test where it happened.

Also here: :func:`open_phones` (a context manager that closes every phone it
started) and two WAV helpers for media checks, :func:`write_tone_wav` and
:func:`wav_rms`, in pure Python.
"""

from __future__ import annotations

import array
import collections
import contextlib
import json
import math
import queue
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

Event = dict[str, Any]
Matcher = str | Callable[[Event], bool]

PHONE_SCRIPT = Path(__file__).with_name("phone_process.py")
_EOF = "_eof"   # internal marker the reader thread queues when stdout closes


class PhoneError(Exception):
    """The phone refused a command, reported an error or died."""


def _matches(event: Event, match: Matcher, fields: dict[str, object]) -> bool:
    if isinstance(match, str):
        if event.get("event") != match:
            return False
    elif not match(event):
        return False
    return all(event.get(key) == value for key, value in fields.items())


class Phone:
    """A softphone in a subprocess.  Create with :meth:`start`."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], stderr_file: IO[bytes],
                 stderr_path: Path) -> None:
        self.name = name
        self.history: collections.deque[Event] = collections.deque(maxlen=500)
        self.udp_port = 0
        self.tcp_port = 0
        self._process = process
        self._stderr_file = stderr_file
        self._stderr_path = stderr_path
        self._events: queue.Queue[Event] = queue.Queue()
        self._eof = False
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_events, name=f"phone-{name}",
                                        daemon=True)
        self._reader.start()

    # --- life cycle -------------------------------------------------------------

    @classmethod
    def start(cls, name: str, log_dir: Path, *, log_level: int = 3,
              codecs: tuple[str, ...] = ("PCMU/8000", "PCMA/8000"),
              timeout: float = 10.0, tls_ca: Path | None = None) -> Phone:
        """Spawn a phone and wait for its ``ready`` event.

        The pjsua log goes to ``log_dir/<name>.pjsua.log`` and anything the
        process writes to stderr to ``log_dir/<name>.stderr.log``.
        """
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"phone name must be letters, digits, - or _: {name!r}")
        log_dir.mkdir(parents=True, exist_ok=True)
        stderr_path = log_dir / f"{name}.stderr.log"
        stderr_file = stderr_path.open("wb")
        command = [sys.executable, str(PHONE_SCRIPT), "--name", name,
                   "--log-file", str(log_dir / f"{name}.pjsua.log"),
                   "--log-level", str(log_level), "--codecs", ",".join(codecs)]
        if tls_ca is not None:
            command += ["--tls-ca", str(tls_ca)]
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=stderr_file)
        except BaseException:
            stderr_file.close()
            raise
        phone = cls(name, process, stderr_file, stderr_path)
        try:
            ready = phone.wait_for("ready", timeout)
        except BaseException:
            phone.close(timeout=1.0)
            raise
        phone.udp_port = int(ready["udp_port"])
        phone.tcp_port = int(ready["tcp_port"])
        return phone

    def close(self, timeout: float = 5.0, *, unregister: bool = False) -> int:
        """Ask the phone to quit; kill it after ``timeout``.  Always reaps it.

        Calls still up are hung up first; with ``unregister`` an active
        registration is removed too.  Returns the exit status (negative:
        killed by that signal).
        """
        process = self._process
        if process.poll() is None:
            with contextlib.suppress(OSError, ValueError, PhoneError):
                self.send({"cmd": "quit", "unregister": unregister})
            with contextlib.suppress(OSError, ValueError):
                assert process.stdin is not None
                process.stdin.close()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._reader.join(timeout=2.0)
        if process.stdout is not None:
            process.stdout.close()
        if process.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                process.stdin.close()
        self._stderr_file.close()
        return process.returncode

    def __enter__(self) -> Phone:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    # --- raw protocol ------------------------------------------------------------

    def send(self, command: dict[str, Any]) -> None:
        """Write one command line.  Raises PhoneError if the phone has exited."""
        if "cmd" not in command:
            raise ValueError(f"a command needs 'cmd': {command!r}")
        stdin = self._process.stdin
        if stdin is None or self._process.poll() is not None:
            raise PhoneError(f"{self.name}: phone has exited ({self._process.returncode})")
        line = json.dumps(command) + "\n"
        try:
            with self._lock:
                stdin.write(line.encode("utf-8"))
                stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise PhoneError(f"{self.name}: cannot send {command['cmd']!r}: {exc}") from exc

    def wait_for(self, match: Matcher, timeout: float = 5.0, *,
                 fail_on_error: bool = True, **fields: object) -> Event:
        """Return the next event matching ``match`` and every ``fields`` item.

        ``match`` is an event name or a predicate.  Skipped events are
        consumed.  Raises TimeoutError (with the recent events) after
        ``timeout`` seconds, PhoneError if the phone reports an error (unless
        ``fail_on_error`` is false or an error is what is awaited) or exits.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.name}: no event matching {self._describe(match, fields)} "
                    f"within {timeout:.1f}s; recent events:\n{self._recent()}")
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event.get("event") == _EOF:
                self._events.put(event)   # later waits fail fast too
                raise PhoneError(
                    f"{self.name}: phone exited while waiting for "
                    f"{self._describe(match, fields)}; recent events:\n{self._recent()}"
                    f"\nstderr tail:\n{self._stderr_tail()}")
            if _matches(event, match, fields):
                return event
            if fail_on_error and event.get("event") == "error":
                raise PhoneError(f"{self.name}: {event.get('cmd')}: {event.get('message')}")

    def command(self, command: dict[str, Any], timeout: float = 5.0) -> Event:
        """Send a command and return its ``ok`` acknowledgement."""
        self.send(command)
        return self.wait_for("ok", timeout, cmd=command["cmd"])

    # --- conveniences --------------------------------------------------------------

    def register(self, user: str, password: str, domain: str, registrar: str, *,
                 transport: str = "udp", expires: int = 300, realm: str = "*",
                 auto_answer: int | None = None, auto_answer_delay: float = 0.0,
                 outbound_proxy: bool = False, timeout: float = 5.0, srtp: str = "disabled",
                 mwi: bool = False) -> Event:
        """Register and return the resulting ``reg_state`` (success or not).
        ``outbound_proxy``: every request of the account goes to the PBX.
        ``srtp``: disabled, optional or mandatory (SDES, RFC 4568).
        ``mwi``: subscribe to the voicemail lamp (message-summary); each
        NOTIFY, subscribed or not, shows as an ``mwi`` event."""
        command: dict[str, Any] = {
            "cmd": "register", "user": user, "password": password, "domain": domain,
            "registrar": registrar, "transport": transport, "expires": expires,
            "realm": realm, "auto_answer": auto_answer, "auto_answer_delay": auto_answer_delay,
            "srtp": srtp,
            "outbound_proxy": outbound_proxy, "mwi": mwi,
        }
        self.command(command, timeout)
        return self.wait_for("reg_state", timeout)

    def reregister(self, timeout: float = 5.0) -> Event:
        self.command({"cmd": "reregister"}, timeout)
        return self.wait_for("reg_state", timeout)

    def unregister(self, timeout: float = 5.0) -> Event:
        """Remove the binding; returns the ``reg_state`` that answers it."""
        self.command({"cmd": "unregister"}, timeout)
        return self.wait_for("reg_state", timeout)

    def call(self, uri: str, *, transport: str | None = None, timeout: float = 5.0) -> int:
        """Start a call; returns its call number (the ``call`` field of events)."""
        ack = self.command({"cmd": "call", "uri": uri, "transport": transport}, timeout)
        return int(ack["call"])

    def wait_call_state(self, state: str, call: int | None = None,
                        timeout: float = 5.0) -> Event:
        if call is None:
            return self.wait_for("call_state", timeout, state=state)
        return self.wait_for("call_state", timeout, state=state, call=call)

    def answer(self, code: int = 200, call: int | None = None, timeout: float = 5.0) -> Event:
        return self.command({"cmd": "answer", "code": code, "call": call}, timeout)

    def hangup(self, call: int | None = None, code: int | None = None,
               timeout: float = 5.0) -> Event:
        """Hang up and return the DISCONNECTED ``call_state``."""
        ack = self.command({"cmd": "hangup", "call": call, "code": code}, timeout)
        return self.wait_call_state("DISCONNECTED", int(ack["call"]), timeout)

    def hold(self, call: int | None = None, timeout: float = 5.0) -> Event:
        """Put ``call`` on hold (re-INVITE, a=sendonly). pjsua refuses that
        until the call is confirmed (PJSIP_ESESSIONSTATE), and a callee
        reports its media before the ACK that confirms it has come: so the
        hold waits for CONFIRMED first."""
        if call is not None and not any(
                event.get("event") == "call_state" and event.get("call") == call and event.get("state") == "CONFIRMED"
                for event in list(self.history)):
            self.wait_call_state("CONFIRMED", call, timeout)
        return self.command({"cmd": "hold", "call": call}, timeout)

    def unhold(self, call: int | None = None, timeout: float = 5.0) -> Event:
        return self.command({"cmd": "unhold", "call": call}, timeout)

    def play(self, wav: Path, call: int | None = None, *, loop: bool = False,
             timeout: float = 5.0) -> Event:
        return self.command({"cmd": "play", "wav": str(wav), "call": call, "loop": loop},
                            timeout)

    def record(self, wav: Path, call: int | None = None, timeout: float = 5.0) -> Event:
        return self.command({"cmd": "record", "wav": str(wav), "call": call}, timeout)

    def stop_record(self, call: int | None = None, timeout: float = 5.0) -> Event:
        """Stop recording and wait until the WAV file is complete.

        Returns the ``record_done`` event (one recording per call assumed).
        """
        ack = self.command({"cmd": "stop_record", "call": call}, timeout)
        if not ack["stopped"]:
            raise PhoneError(f"{self.name}: call {ack['call']} was not recording")
        done = self.wait_for("record_done", timeout, call=ack["call"])
        if not done["complete"]:
            raise PhoneError(f"{self.name}: {done['wav']} was not finalised in time")
        return done

    def send_dtmf(self, digits: str, call: int | None = None, *, method: str = "rfc4733",
                  timeout: float = 5.0) -> Event:
        """Send DTMF as RFC 4733 events or (``method="info"``) SIP INFO."""
        return self.command({"cmd": "send_dtmf", "digits": digits, "call": call, "method": method},
                            timeout)

    def update(self, call: int | None = None, timeout: float = 5.0) -> Event:
        """Send an UPDATE (RFC 3311) with a new SDP offer in the call."""
        return self.command({"cmd": "update", "call": call}, timeout)

    def xfer(self, uri: str, call: int | None = None, timeout: float = 5.0) -> Event:
        """Blind transfer of ``call`` to ``uri`` (REFER)."""
        return self.command({"cmd": "xfer", "uri": uri, "call": call}, timeout)

    def xfer_replaces(self, call: int, to: int, timeout: float = 5.0) -> Event:
        """Attended transfer: ``call``'s peer replaces us in call ``to``."""
        return self.command({"cmd": "xfer_replaces", "call": call, "to": to}, timeout)

    def subscribe(self, uri: str, timeout: float = 5.0) -> Event:
        """Watch ``uri``'s presence; ``buddy_state`` events follow."""
        return self.command({"cmd": "subscribe", "uri": uri}, timeout)

    def message(self, uri: str, body: str, timeout: float = 5.0) -> Event:
        """Send a chat message (SIP MESSAGE); an ``im`` event at the recipient."""
        return self.command({"cmd": "message", "uri": uri, "body": body}, timeout)

    # --- internals -----------------------------------------------------------------

    def _read_events(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            for raw in stdout:
                try:
                    event = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    event = {"event": "bad_output", "line": raw.decode("utf-8", "replace")}
                if not isinstance(event, dict):
                    event = {"event": "bad_output", "line": raw.decode("utf-8", "replace")}
                self.history.append(event)
                self._events.put(event)
        except (OSError, ValueError):
            pass   # stdout closed under us by close()
        finally:
            self._events.put({"event": _EOF})

    def _recent(self, count: int = 25) -> str:
        events = list(self.history)[-count:]
        return "\n".join(f"  {json.dumps(e)}" for e in events) or "  (none)"

    def _stderr_tail(self, size: int = 2000) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")[-size:]
        except OSError as exc:
            return f"(unreadable: {exc})"

    @staticmethod
    def _describe(match: Matcher, fields: dict[str, object]) -> str:
        name = match if isinstance(match, str) else getattr(match, "__name__", "predicate")
        return f"{name} {fields}" if fields else name


class PhoneFactory:
    """Starts phones that share a log directory; see :func:`open_phones`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.phones: list[Phone] = []

    def __call__(self, name: str, *, log_level: int = 3,
                 codecs: tuple[str, ...] = ("PCMU/8000", "PCMA/8000"), tls_ca: Path | None = None) -> Phone:
        phone = Phone.start(name, self.log_dir, log_level=log_level, codecs=codecs, tls_ca=tls_ca)
        self.phones.append(phone)
        return phone

    def close_all(self) -> None:
        for phone in reversed(self.phones):
            phone.close()
        self.phones.clear()


@contextlib.contextmanager
def open_phones(log_dir: Path) -> Iterator[PhoneFactory]:
    """``with open_phones(tmp_path) as phones: alice = phones("alice")``.

    Every phone started through the factory is closed (and reaped) on exit.
    """
    factory = PhoneFactory(log_dir)
    try:
        yield factory
    finally:
        factory.close_all()


# --- audio helpers ------------------------------------------------------------------


def talk_both_ways(alice: Phone, bob: Phone, call: int, bob_call: int, folder: Path) -> tuple[float, float]:
    """On an answered call each side plays a tone and records the other;
    returns the loudness (RMS) Alice heard, then Bob's."""
    tone_a = write_tone_wav(folder / "a.wav", frequency=440.0, seconds=1.0)
    tone_b = write_tone_wav(folder / "b.wav", frequency=660.0, seconds=1.0)
    heard_by_bob, heard_by_alice = folder / "bob-heard.wav", folder / "alice-heard.wav"
    bob.record(heard_by_bob, bob_call)
    alice.record(heard_by_alice, call)
    alice.play(tone_a, call)
    bob.play(tone_b, bob_call)
    alice.wait_for("play_done", 5.0, call=call)
    bob.wait_for("play_done", 5.0, call=bob_call)
    time.sleep(1.0)
    bob.stop_record(bob_call)
    alice.stop_record(call)
    return wav_rms(heard_by_alice), wav_rms(heard_by_bob)


def write_tone_wav(path: Path, *, frequency: float = 440.0, seconds: float = 1.0,
                   rate: int = 8000, amplitude: float = 0.5) -> Path:
    """Write a mono 16-bit sine tone (for ``play``)."""
    if not 0.0 < amplitude <= 1.0:
        raise ValueError("amplitude must be in (0, 1]")
    peak = int(32767 * amplitude)
    samples = array.array("h", (
        int(peak * math.sin(2 * math.pi * frequency * n / rate))
        for n in range(int(seconds * rate))))
    if sys.byteorder != "little":
        samples.byteswap()   # WAV data is little-endian
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def wav_rms(path: Path, *, skip_seconds: float = 0.0) -> float:
    """Root mean square of a mono 16-bit WAV, 0.0 for silence or no samples."""
    with wave.open(str(path), "rb") as source:
        if source.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit WAV is supported")
        channels = source.getnchannels()
        source.setpos(min(source.getnframes(), int(skip_seconds * source.getframerate())))
        data = source.readframes(source.getnframes())
    samples = array.array("h")
    samples.frombytes(data[: len(data) - len(data) % 2])
    if sys.byteorder != "little":
        samples.byteswap()
    if channels > 1:
        samples = samples[::channels]
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))
