"""Talking to a running ``pbx serve`` from the command line: find it by its
pid file and signal it."""

from __future__ import annotations

import os
import signal
from pathlib import Path


class ControlError(Exception):
    """The server could not be reached; the message says why."""


def server_pid(pid_file: Path) -> int:
    """The pid in ``pid_file``, checked to be a live ``pbx serve``.

    A pid file can outlive its server and the pid be reused by an unrelated
    process; signalling that one with SIGHUP could kill it, so the command
    line of the process is checked first.
    """
    try:
        text = pid_file.read_text().strip()
    except OSError as err:
        raise ControlError(f"cannot read pid file {pid_file}: {err.strerror}; is pbx serve running?") from None
    if not text.isdigit():
        raise ControlError(f"pid file {pid_file} does not hold a process id")
    pid = int(text)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        raise ControlError(f"no process {pid} (from {pid_file}): pbx serve is not running") from None
    words = [part.decode(errors="replace") for part in cmdline]
    if "serve" not in words or not any("pbx" in word for word in words):
        raise ControlError(f"process {pid} (from {pid_file}) is not pbx serve")
    return pid


def signal_reload(pid_file: Path) -> int:
    """Send SIGHUP to the server named by ``pid_file``; its pid."""
    pid = server_pid(pid_file)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ControlError(f"process {pid} ended before it could be signalled") from None
    except PermissionError:
        raise ControlError(f"not allowed to signal process {pid}") from None
    return pid
