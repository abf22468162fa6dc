"""`make deps` waits for another apt run's lock instead of failing (issue 12
§5: on a fresh VM unattended upgrades hold /var/lib/dpkg/lock-frontend and
`make test` failed at once with "Could not get lock").

The Makefile's own apt-get command line is run for real against a private
dpkg admin directory whose lock this test holds for two seconds (apt takes
the lock in the directory of ``Dir::State::status``), so the system's
packages and lock are never touched: it must wait, then go on (and fail
only at the package name, which does not exist).
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HOLD_SECONDS = 2.0

pytestmark = pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("make") is None,
                                reason="needs apt-get and make")


def makefile_apt_get() -> list[str]:
    """$(APT_GET) as `make` expands it here."""
    out = subprocess.run(["make", "-s", "--no-print-directory", "-f", "Makefile", "--eval",
                          "print-apt-get: ; @echo $(APT_GET)", "print-apt-get"],
                         cwd=REPO, capture_output=True, text=True, timeout=30, check=True).stdout
    return shlex.split(out.strip())


def test_every_apt_get_that_takes_the_lock_goes_through_apt_get_variable() -> None:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    # install/update/upgrade take the dpkg or lists lock; `download` does not.
    bare = [line for line in text.splitlines()
            if re.search(r"(?<![$(])\bapt-get\b[^;|&]*\b(install|update|upgrade|remove)\b", line)
            and "$(APT_GET)" not in line.split("apt-get")[0] and not line.lstrip().startswith("#")
            and not line.startswith("APT_GET")]
    assert bare == []


def test_the_makefiles_apt_get_waits_for_a_held_dpkg_lock(tmp_path: Path) -> None:
    command = makefile_apt_get()
    if command[0] == "sudo":
        pytest.skip("not root: make deps would run apt-get through sudo")
    admin = tmp_path / "dpkg"
    (admin / "lists" / "partial").mkdir(parents=True)
    (admin / "cache" / "archives" / "partial").mkdir(parents=True)
    (admin / "status").touch()
    private = [
        "-o", f"Dir::State::status={admin / 'status'}", "-o", f"Dir::State::Lists={admin / 'lists'}",
        "-o", f"Dir::Cache={admin / 'cache'}", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
        "-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={admin / 'lists'}",
    ]
    lock = os.open(admin / "lock-frontend", os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(lock, fcntl.LOCK_EX)  # what a running unattended-upgrade holds
    release = threading.Timer(HOLD_SECONDS, os.close, (lock,))
    release.start()
    try:
        started = time.monotonic()
        result = subprocess.run([*command, *private, "install", "-y", "no-such-package-issue-12"],
                                capture_output=True, text=True, timeout=60)
        waited = time.monotonic() - started
    finally:
        release.cancel()
        try:
            os.close(lock)
        except OSError:
            pass  # the timer closed it
    output = result.stdout + result.stderr
    assert "Unable to acquire the dpkg frontend lock" not in output, output
    assert "Unable to locate package no-such-package-issue-12" in output, output  # past the lock
    assert waited >= HOLD_SECONDS - 0.2, waited


def test_without_the_wait_option_apt_get_fails_at_once(tmp_path: Path) -> None:
    """The control: the same run without ``DPkg::Lock::Timeout`` fails on the
    held lock, so the test above does test the option."""
    command = [part for part in makefile_apt_get() if part not in ("-o", "DPkg::Lock::Timeout=600")]
    if command[0] == "sudo":
        pytest.skip("not root")
    (tmp_path / "status").touch()
    lock = os.open(tmp_path / "lock-frontend", os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(lock, fcntl.LOCK_EX)
    try:
        result = subprocess.run([*command, "-o", f"Dir::State::status={tmp_path / 'status'}",
                                 "-o", "Dir::Etc::SourceList=/dev/null", "install", "-y", "no-such-package"],
                                capture_output=True, text=True, timeout=60)
    finally:
        os.close(lock)
    assert "Unable to acquire the dpkg frontend lock" in result.stderr, result.stderr
