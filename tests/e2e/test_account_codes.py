"""Account codes end to end: `pbx serve`, pjsua2 phones, SIPp as the
provider behind the trunk, codes added with `pbx codes`.

A restricted phone (1099) dials abroad, hears the recorded prompt, keys a
code (RFC 4733, SIP INFO, in-band tones, or the dial prefix), and the
provider receives the call with the phone's caller ID; the CDR shows the
code's owner. Wrong codes: retries, goodbye, AUTH_FAILED, then a lock-out.
A disabled or expired code is refused; the same code from an all_outbound
phone carries the same rights; internal, short-number and emergency calls
never prompt. The digits never reach the server's output.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.server import free_port
from tests.trunks.provider import Sipp

from .harness import DOMAIN, Pbx, rows_once, start_pbx
from .phone import Phone, PhoneFactory
from .test_ivr import (AFTER_PROMPT, assert_heard_whole, hears_before_refusal, prompt_span,
                       registered as ivr_registered, voiced)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240),
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")]

PASSWORDS = {"1099": "reception-secret-1099", "1008": "mai-secret-1008", "1001": "boss-secret-1001"}
CODE, OWNER = "483948", "Trần Thị Bích"
LOCAL_CODE = "602817"
INTERNATIONAL, E164 = "0081312345678", "+81312345678"
KEY = "5f" * 32


def dialplan(gateway: int) -> str:
    return f"""\
domain: {DOMAIN}
timezone: Asia/Ho_Chi_Minh
security: {{outside_calls: {{simultaneous: 50, per_minute: 1000}}}}
account_codes:
  length: 6
  attempts: 3
  first_digit_timeout: 6
  digit_timeout: 3
  lockout: {{failures: 4, window: 600, lock_seconds: 600, flag_after: 50}}
departments:
  office: {{name: Office, class_of_service: local_only, caller_id: "02873000100"}}
  accounting: {{name: "Kế toán / Accounting", class_of_service: local_only, caller_id: "02873000400",
               account_codes: all_outbound}}
extensions:
  1001: {{name: Boss, department: office, password: {PASSWORDS["1001"]}}}
  1008: {{name: Bùi Thanh Mai, department: accounting, password: {PASSWORDS["1008"]}}}
  1099: {{name: Reception, department: office, password: {PASSWORDS["1099"]}, account_codes: restricted}}
number_plans:
  vietnam:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    area_code: "28"
    entries:
      - {{pattern: "11[345]", class: emergency}}
      - {{pattern: "00 .", class: international}}
      - {{pattern: "0[35789] XXXX XXXX", class: mobile}}
      - {{pattern: "[2-9] XXX XXXX", class: local}}
classes_of_service:
  local_only: {{allow: [local]}}
  management: {{allow: [local, mobile, international]}}
trunks:
  provider:
    gateways: [{{host: 127.0.0.1, port: {gateway}}}]
    invite_timeout: 2
    rewrites:
      - {{match: "00", strip: 2, prepend: "+"}}
      - {{match: "1"}}
      - {{match: "0", strip: 1, prepend: "+84"}}
      - {{match: "", prepend: "+8428"}}
routes:
  - {{name: out, pattern: "X.", trunk: provider}}
groups:
  office:
    name: Office
    members:
      601: {{name: Boss, extension: "1001"}}
      602: {{name: Mai, extension: "1008"}}
media: {{rtp_ports: "33000-33199", language: en, tones: VN}}
"""


@pytest.fixture(autouse=True)
def code_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """One secret for the server and `pbx codes`, not the checkout's var/ file."""
    monkeypatch.setenv("PBX_ACCOUNT_CODE_KEY", KEY)


@pytest.fixture
def gateway() -> int:
    return free_port()


@pytest.fixture
def pbx(tmp_path: Path, gateway: int) -> Iterator[Pbx]:
    with start_pbx(tmp_path / "pbx", dialplan(gateway)) as running:
        yield running


def codes(pbx: Pbx, tmp_path: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pbx", "codes", *args, "--db", pbx.db_url,
                           "--dialplan", str(tmp_path / "pbx" / "plan.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def add_code(pbx: Pbx, tmp_path: Path, digits: str, owner: str, rights: str, *extra: str) -> str:
    """The new code's id."""
    out = codes(pbx, tmp_path, "add", "--owner", owner, "--class-of-service", rights, "--code", digits, *extra)
    assert out.startswith("code #"), out
    return out.split()[1].removeprefix("#")


def registered(phones: PhoneFactory, pbx: Pbx, number: str, **options: object) -> Phone:
    return ivr_registered(phones, pbx, number, passwords=PASSWORDS, **options)


def dial(phone: Phone, dialled: str, pbx: Pbx) -> int:
    return phone.call(f"sip:{dialled.replace('#', '%23')}@{pbx.registrar()};transport=udp")


DTMF = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209), "5": (770, 1336),
        "6": (770, 1477), "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "0": (941, 1336),
        "*": (941, 1209), "#": (941, 1477)}


def dtmf_wav(path: Path, keys: str) -> Path:
    """In-band tones: each key 120 ms, 120 ms apart."""
    t = np.arange(int(0.12 * 8000)) / 8000
    parts = []
    for digit in keys:
        low, high = DTMF[digit]
        parts += [(np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)) * 0.3 * 32767, np.zeros(960)]
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.concatenate(parts).astype("<i2").tobytes())
    return path


def key_in(phone: Phone, call: int, keys: str, method: str, tmp_path: Path) -> None:
    if method == "inband":
        phone.play(dtmf_wav(tmp_path / f"keys-{keys.replace('#', 'H')}.wav", keys), call)
        phone.wait_for("play_done", 10.0, call=call)
    else:
        phone.send_dtmf(keys, call, method=method)


def hear_prompt(phone: Phone, call: int, tmp_path: Path) -> Path:
    """Record the call from the answer while the code prompt plays."""
    phone.wait_for("media_state", 10.0, call=call, status="active")
    heard = tmp_path / "prompt.wav"
    phone.record(heard, call)
    time.sleep(prompt_span("enter_account_code") + AFTER_PROMPT)
    phone.stop_record(call)
    return heard


def provider(tmp_path: Path, port: int, calls: int = 1) -> Sipp:
    logs = tmp_path / "sipp"
    logs.mkdir(exist_ok=True)
    return Sipp("call_uas", logs, port=port, calls=calls)


def no_digits_in_output(pbx: Pbx, *digits: str) -> None:
    for secret in digits:
        assert pbx.server.lines_with(secret) == [], secret


@pytest.mark.parametrize("method", ["rfc4733", "info", "inband", "prefix"])
def test_a_restricted_phone_dials_abroad_with_a_code(pbx: Pbx, phones: PhoneFactory, tmp_path: Path,
                                                     gateway: int, method: str) -> None:
    code_id = add_code(pbx, tmp_path, CODE, OWNER, "management", "--employee-id", "NV-002")
    sipp = provider(tmp_path, gateway)
    try:
        reception = registered(phones, pbx, "1099")
        if method == "prefix":
            call = dial(reception, f"*11{CODE}#{INTERNATIONAL}", pbx)
        else:
            call = dial(reception, INTERNATIONAL, pbx)
            first, last = voiced(hear_prompt(reception, call, tmp_path))
            assert_heard_whole(first, last, prompt_span("enter_account_code"), pbx.server, share=0.15, plus=0.1)
            key_in(reception, call, f"{CODE}#", method, tmp_path)
        if method == "prefix":
            reception.wait_call_state("CONFIRMED", call, timeout=15.0)
        else:  # answered by the prompt already; the callee's answer moves the media to it
            pbx.server.wait_lines("direct_media", timeout=15.0)
        time.sleep(0.5)
        reception.hangup(call)
        assert sipp.wait(timeout=20.0) == 0, sipp.describe()
    finally:
        sipp.stop()
    (invite,) = sipp.requests("INVITE")
    assert invite.start_line.startswith(f"INVITE sip:{E164}@")
    assert "<sip:02873000100@" in (invite.header("From") or "")   # the phone's department's caller ID
    row = pbx.cdr_for("1099", INTERNATIONAL)
    assert (row["disposition"], row["trunk"], row["call_class"]) == ("ANSWERED", "provider", "international")
    assert (row["account_code"], row["account_owner"], row["account_rights"]) == (code_id, OWNER, "management")
    assert row["ivr_path"] == ("" if method == "prefix" else "account_code[(secret)]")
    no_digits_in_output(pbx, CODE)
    # The manager's view: one person's calls.
    listed = subprocess.run([sys.executable, "-m", "pbx", "cdr", "list", "--db", pbx.db_url, "--owner", OWNER],
                            capture_output=True, text=True, timeout=30, check=True).stdout
    assert OWNER in listed and INTERNATIONAL in listed


def test_three_wrong_codes_then_goodbye_and_auth_failed(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    add_code(pbx, tmp_path, CODE, OWNER, "management")
    reception = registered(phones, pbx, "1099")
    call = dial(reception, INTERNATIONAL, pbx)
    reception.wait_for("media_state", 10.0, call=call, status="active")
    heard = tmp_path / "wrong.wav"
    reception.record(heard, call)
    for _ in range(3):
        reception.send_dtmf("271828#", call)
        time.sleep(prompt_span("invalid_code") + 1.0)
    end = reception.wait_call_state("DISCONNECTED", call, timeout=prompt_span("goodbye") + 15.0)
    assert end["code"] == 200   # the PBX said goodbye and hung up
    reception.wait_for("record_done", 5.0)
    first, last = voiced(heard)
    assert last - first >= 2 * prompt_span("invalid_code") + prompt_span("enter_account_code")
    row = pbx.cdr_for("1099", INTERNATIONAL)
    assert (row["disposition"], row["reason"], row["hangup_side"]) == ("AUTH_FAILED", "auth_failed", "pbx")
    assert row["ivr_path"] == "account_code[(secret)|(secret)|(secret)]"
    assert row["account_code"] == "" and row["answered_at"] == "" and row["billsec"] == "0"
    no_digits_in_output(pbx, "271828")
    assert len(pbx.server.wait_lines("account_code_refused", 3)) == 3


def prefix_call(phone: Phone, pbx: Pbx, code: str, number: str = INTERNATIONAL) -> int:
    """A call with the code dialled before the number, to its end: the final status."""
    call = dial(phone, f"*11{code}#{number}", pbx)
    return int(str(phone.wait_call_state("DISCONNECTED", call, timeout=20.0)["code"]))


def test_wrong_codes_lock_the_phone_out(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    add_code(pbx, tmp_path, CODE, OWNER, "management")
    reception = registered(phones, pbx, "1099")
    ends = [prefix_call(reception, pbx, wrong) for wrong in ("314159", "271828", "161803", "141421")]
    assert ends == [403, 403, 403, 403]
    refused = pbx.server.wait_lines("account_code_refused", 3)
    assert len(refused) == 3 and len(pbx.server.wait_lines("account_code_locked_out")) == 1
    # Locked: even the right code is not let through, and it is said why.
    assert prefix_call(reception, pbx, CODE) == 403
    assert "1099" in codes(pbx, tmp_path, "lockouts")
    rows = rows_once(pbx.cdrs, lambda row: row["caller_number"] == "1099" and bool(row["ended_at"]), 5)
    assert [row["disposition"] for row in rows] == ["AUTH_FAILED"] * 5
    assert [row["reason"] for row in rows] == ["account_code_invalid"] * 3 + ["account_code_locked"] * 2
    no_digits_in_output(pbx, "314159", "271828", "161803", "141421", CODE)
    # Dialled without a code: not asked for one, but told the phone is locked (its own words), then 403.
    call = dial(reception, INTERNATIONAL, pbx)
    hears_before_refusal(reception, call, tmp_path / "locked.wav", "code_locked", 403, pbx.server)
    assert pbx.server.lines_with("account_code_prompt") == []
    assert "1099: unlocked" in codes(pbx, tmp_path, "unlock", "1099")


def test_disabled_and_expired_codes_are_refused_and_the_owner_is_billed_even_when_the_provider_is_down(
        pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    code_id = add_code(pbx, tmp_path, CODE, OWNER, "management")
    add_code(pbx, tmp_path, "715093", "Project X", "management", "--valid-until", "2020-01-01")
    reception = registered(phones, pbx, "1099")
    codes(pbx, tmp_path, "disable", code_id)   # the running server sees it on the next call
    assert prefix_call(reception, pbx, CODE) == 403
    assert prefix_call(reception, pbx, "715093") == 403
    codes(pbx, tmp_path, "enable", OWNER)
    # Nobody listens at the gateway: the call fails after the code was taken.
    assert prefix_call(reception, pbx, CODE) >= 400
    rows = rows_once(pbx.cdrs, lambda row: row["caller_number"] == "1099" and bool(row["ended_at"]), 3)
    assert [row["disposition"] for row in rows[:2]] == ["AUTH_FAILED", "AUTH_FAILED"]
    last = rows[2]
    assert last["disposition"] not in ("ANSWERED", "AUTH_FAILED")
    assert (last["account_code"], last["account_owner"], last["trunk"]) == (code_id, OWNER, "provider")
    refusals = [line for line in pbx.server.lines_with("account_code_refused")]
    assert any("disabled" in line for line in refusals) and any("expired" in line for line in refusals)


def test_an_all_outbound_phone_asks_for_every_outside_call_and_the_code_carries_its_rights(
        pbx: Pbx, phones: PhoneFactory, tmp_path: Path, gateway: int) -> None:
    code_id = add_code(pbx, tmp_path, CODE, OWNER, "management")
    add_code(pbx, tmp_path, LOCAL_CODE, "Intern", "local_only")
    sipp = provider(tmp_path, gateway)
    try:
        mai = registered(phones, pbx, "1008")
        # A local number the phone could dial itself: asked all the same.
        call = dial(mai, "38221234", pbx)
        mai.wait_for("media_state", 10.0, call=call, status="active")
        mai.send_dtmf(f"{CODE}#", call)
        pbx.server.wait_lines("direct_media", timeout=15.0)
        mai.hangup(call)
        assert sipp.wait(timeout=20.0) == 0, sipp.describe()
    finally:
        sipp.stop()
    row = pbx.cdr_for("1008", "38221234")
    assert (row["account_code"], row["account_owner"], row["disposition"]) == (code_id, OWNER, "ANSWERED")
    (invite,) = sipp.requests("INVITE")
    assert "<sip:02873000400@" in (invite.header("From") or "")
    # A valid code whose rights do not cover the number: told so, then hung up.
    call = dial(mai, INTERNATIONAL, pbx)
    mai.wait_for("media_state", 10.0, call=call, status="active")
    mai.send_dtmf(f"{LOCAL_CODE}#", call)
    end = mai.wait_call_state("DISCONNECTED", call, timeout=prompt_span("not_allowed") + 15.0)
    assert end["code"] == 200
    row = pbx.cdr_for("1008", INTERNATIONAL)
    assert (row["disposition"], row["reason"], row["account_owner"]) == ("REJECTED", "not_allowed", "Intern")


def test_internal_short_number_and_emergency_calls_never_ask(pbx: Pbx, phones: PhoneFactory, tmp_path: Path,
                                                           gateway: int) -> None:
    sipp = provider(tmp_path, gateway)
    try:
        boss = registered(phones, pbx, "1001", auto_answer=200)
        mai = registered(phones, pbx, "1008")
        for dialled in ("1001", "601"):
            call = dial(mai, dialled, pbx)
            mai.wait_call_state("CONFIRMED", call, timeout=10.0)
            mai.hangup(call)
            boss.wait_call_state("DISCONNECTED", timeout=10.0)
        call = dial(mai, "115", pbx)
        mai.wait_call_state("CONFIRMED", call, timeout=10.0)
        mai.hangup(call)
        assert sipp.wait(timeout=20.0) == 0, sipp.describe()
    finally:
        sipp.stop()
    assert sipp.requests("INVITE")[0].start_line.startswith("INVITE sip:115@")
    assert pbx.server.lines_with("account_code_prompt") == []
    for dialled in ("1001", "601", "115"):
        row = pbx.cdr_for("1008", dialled)
        assert (row["disposition"], row["ivr_path"], row["account_code"]) == ("ANSWERED", "", "")
