"""The example dialplan's account codes, as issue 10 writes them down and
as someone trying the shipped plan meets them: `pbx serve` with
dialplans/example.yaml unchanged but for its gateways' ports (moved to
free ones nobody listens on: the provider is unreachable), a code added
with `pbx codes add`, pjsua2 phones keying it by RFC 4733.

- Reception 1099 (``restricted``) dials abroad: the PBX answers and asks
  for the code in the plan's language (Vietnamese, heard and timed);
- accounting's 1008 (``all_outbound``) dials a local number its own class
  of service allows: asked all the same;

and in both the call fails after the code is taken (no provider), and the
CDR still bills the code's owner.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.routing.test_loader import EXAMPLE
from tests.server import free_port

from .harness import DOMAIN, Pbx, start_pbx
from .phone import Phone, PhoneFactory
from .test_ivr import AFTER_PROMPT, assert_heard_whole, prompt_span, voiced

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PASSWORDS = {"1099": "demo-Reception-1099", "1008": "demo-Mai-1008"}
CODE, OWNER = "583920", "Nguyễn Văn An"
KEY = "6a" * 32


def example_unreachable() -> str:
    """The example dialplan, its trunks' gateways on ports nobody listens on."""
    text = EXAMPLE.read_text(encoding="utf-8")
    for old in ("port: 5070", "port: 5072", "port: 5080"):
        assert old in text, old
        text = text.replace(old, f"port: {free_port()}")
    return text


@pytest.fixture(autouse=True)
def code_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBX_ACCOUNT_CODE_KEY", KEY)


@pytest.fixture
def pbx(tmp_path: Path) -> Iterator[Pbx]:
    (tmp_path / "pbx").mkdir()
    shutil.copytree(EXAMPLE.parent / "groups", tmp_path / "pbx" / "groups")
    with start_pbx(tmp_path / "pbx", example_unreachable()) as running:
        yield running


def add_code(pbx: Pbx, tmp_path: Path) -> str:
    """The management code of the issue's example, as the README says to add it: its id."""
    done = subprocess.run([sys.executable, "-m", "pbx", "codes", "add", "--owner", OWNER,
                           "--class-of-service", "management", "--department", "management", "--code", CODE,
                           "--db", pbx.db_url, "--dialplan", str(tmp_path / "pbx" / "plan.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("code #"), done.stdout
    return done.stdout.split()[1].removeprefix("#")


def registered(phones: PhoneFactory, pbx: Pbx, number: str) -> Phone:
    phone = phones(f"ext{number}")
    state = phone.register(number, PASSWORDS[number], DOMAIN, pbx.registrar())
    assert state["code"] == 200, state
    return phone


def asked_then_billed(pbx: Pbx, phone: Phone, caller: str, dialled: str, tmp_path: Path) -> dict[str, str]:
    """``caller`` dials ``dialled``, hears the Vietnamese prompt, keys the
    code; the call ends (nobody at the gateways): its CDR row."""
    call = phone.call(f"sip:{dialled}@{pbx.registrar()};transport=udp")
    phone.wait_for("media_state", 10.0, call=call, status="active")
    heard = tmp_path / f"prompt-{caller}.wav"
    phone.record(heard, call)
    time.sleep(prompt_span("enter_account_code", "vi") + AFTER_PROMPT)
    phone.stop_record(call)
    first, last = voiced(heard)
    assert_heard_whole(first, last, prompt_span("enter_account_code", "vi"), pbx.server, share=0.15, plus=0.1)
    phone.send_dtmf(f"{CODE}#", call)
    phone.wait_call_state("DISCONNECTED", call, timeout=60.0)
    return pbx.cdr_for(caller, dialled, timeout=10.0)


def test_reception_abroad_and_accounting_locally_ask_for_a_code_and_bill_its_owner_with_the_provider_down(
        pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    code_id = add_code(pbx, tmp_path)
    reception = registered(phones, pbx, "1099")
    row = asked_then_billed(pbx, reception, "1099", "0081312345678", tmp_path)
    assert (row["account_code"], row["account_owner"], row["account_rights"]) == (code_id, OWNER, "management")
    assert (row["trunk"], row["call_class"]) == ("viettel", "international")
    assert row["disposition"] not in ("ANSWERED", "AUTH_FAILED"), row
    assert row["ivr_path"] == "account_code[(secret)]"

    mai = registered(phones, pbx, "1008")
    row = asked_then_billed(pbx, mai, "1008", "38221234", tmp_path)
    assert (row["account_code"], row["account_owner"], row["trunk"]) == (code_id, OWNER, "viettel")
    assert row["disposition"] not in ("ANSWERED", "AUTH_FAILED"), row
    assert pbx.server.lines_with(CODE) == []
