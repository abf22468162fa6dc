"""``pbx codes`` as an administrator uses it (click's CliRunner, a real
SQLite file): a generated code of the plan's length printed once; a chosen
code refused when too short, guessable or taken; unknown rights refused;
list, disable, enable (by owner or id), rotate and remove; neither the
output of list nor the database file ever holds the digits."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pbx.accountcodes.codes import guessable
from pbx.accountcodes.lockout import LockoutPolicy
from pbx.cli.codes import codes
from pbx.store.code_key import load_code_key
from pbx.store.codes import CodeStore
from pbx.store.db import make_engine

KEY = "3c" * 32
PLAN = """\
domain: pbx.example.com
account_codes: {length: 6}
departments:
  accounting: {name: Accounting, class_of_service: local_only}
extensions:
  1008: {name: Mai, department: accounting, password: mai-secret-1008}
classes_of_service:
  local_only: {allow: [local]}
  management: {allow: [local, international]}
"""


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.setenv("PBX_ACCOUNT_CODE_KEY", KEY)
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    db = f"sqlite:///{tmp_path / 'pbx.sqlite3'}"

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(codes, [*args, "--db", db, "--dialplan", str(plan)])

    return invoke


def verify(tmp_path: Path, digits: str) -> str:
    engine = make_engine(f"sqlite:///{tmp_path / 'pbx.sqlite3'}")
    try:
        found = CodeStore(engine, load_code_key()).verify(digits, "ext:test", datetime.now(UTC), LockoutPolicy())
        return found.outcome
    finally:
        engine.dispose()


def printed_code(result: Result) -> str:
    assert result.exit_code == 0, result.output
    found = re.fullmatch(r"code #\d+ for .+ \(\w+\): (\d+)\n", result.stdout)
    assert found is not None, result.stdout
    assert "shown once" in result.stderr
    return found.group(1)


def test_an_administrator_adds_lists_and_changes_codes(run: Callable[..., Result], tmp_path: Path) -> None:
    generated = printed_code(run("add", "--owner", "Trần Thị Bích", "--class-of-service", "management",
                                 "--department", "accounting", "--employee-id", "NV-002"))
    assert len(generated) == 6 and guessable(generated) is None
    chosen = printed_code(run("add", "--owner", "Project X", "--class-of-service", "local_only", "--code", "583920",
                              "--valid-until", "2099-12-31"))
    assert chosen == "583920"

    for bad, why in (("58392", "at least 6 digits"), ("123456", "too easy to guess"), ("111111", "too easy"),
                     ("121212", "too easy"), ("58a920", "digits 0-9 only"), (generated, "already in use")):
        refused = run("add", "--owner", "Someone", "--class-of-service", "local_only", "--code", bad)
        assert refused.exit_code == 2 and why in refused.output, (bad, refused.output)
        assert bad not in refused.output  # a refusal never repeats the digits
    unknown = run("add", "--owner", "Someone", "--class-of-service", "everything")
    assert unknown.exit_code == 2 and "no class of service 'everything'" in unknown.output

    listed = run("list")
    assert listed.exit_code == 0
    assert "Trần Thị Bích" in listed.stdout and "NV-002" in listed.stdout and "2100-01-01 00:00" in listed.stdout  # the end of the day given
    assert generated not in listed.stdout and chosen not in listed.stdout
    data = (tmp_path / "pbx.sqlite3").read_bytes()
    assert generated.encode() not in data and chosen.encode() not in data

    assert verify(tmp_path, generated) == "valid"
    assert run("disable", "Trần Thị Bích").exit_code == 0
    assert "disabled" in run("list").stdout and verify(tmp_path, generated) == "invalid"
    assert run("enable", "#1").exit_code == 0 and verify(tmp_path, generated) == "valid"

    engine = make_engine(f"sqlite:///{tmp_path / 'pbx.sqlite3'}")
    try:  # refused uses of the code (a locked phone, rights exceeded) flag it for a look
        CodeStore(engine, load_code_key()).refused(1, datetime.now(UTC), LockoutPolicy(flag_after=1))
    finally:
        engine.dispose()
    # refused twice now: once disabled, once here
    assert re.search(r"#1 .* usable FLAGGED .* 2\n", run("list").stdout)

    rotated = printed_code(run("rotate", "1"))
    assert "FLAGGED" not in run("list").stdout  # new digits, a clean slate
    assert rotated != generated
    assert (verify(tmp_path, generated), verify(tmp_path, rotated)) == ("invalid", "valid")

    assert run("remove", "Project X").exit_code == 0 and verify(tmp_path, chosen) == "invalid"
    assert "Project X" not in run("list").stdout
    missing = run("disable", "Nobody")
    assert missing.exit_code == 1 and "no code with id or owner 'Nobody'" in missing.output


def test_codes_made_elsewhere_with_another_secret_are_refused_not_printed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret's file is relative to where pbx runs: `pbx codes add` run
    in another directory (with the server's --db) made a new secret there
    and printed a code that never worked. Now it says so, and `pbx serve`
    with that secret does not start."""
    monkeypatch.delenv("PBX_ACCOUNT_CODE_KEY", raising=False)
    monkeypatch.delenv("PBX_ACCOUNT_CODE_KEY_FILE", raising=False)
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    db = f"sqlite:///{tmp_path / 'pbx.sqlite3'}"
    server_dir, elsewhere = tmp_path / "srv", tmp_path / "home"
    server_dir.mkdir()
    elsewhere.mkdir()

    def add(where: Path, owner: str) -> Result:
        monkeypatch.chdir(where)
        return CliRunner().invoke(codes, ["add", "--owner", owner, "--class-of-service", "local_only", "--db", db,
                                          "--dialplan", str(plan)])

    printed_code(add(server_dir, "Mai"))
    refused = add(elsewhere, "An")
    assert refused.exit_code == 1, refused.output
    assert "made with another secret than" in refused.output
    assert str(elsewhere / "var" / "account_codes.key") in refused.output
    assert "code #" not in refused.output
    # The server started from the wrong directory says why and stops.
    served = subprocess.run([sys.executable, "-m", "pbx", "serve", "--dialplan", str(plan), "--db", db,
                             "--listen", "udp:127.0.0.1:0"], cwd=elsewhere, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert served.returncode == 1, served.stderr[-2000:]
    assert "pbx: cannot start: the account codes in this database were made with another secret" in served.stderr
