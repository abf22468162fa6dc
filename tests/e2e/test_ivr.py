"""The auto attendant with real pjsua2 phones through `pbx serve`: the
caller hears the greeting, keys a choice (RFC 4733, SIP INFO, in-band
tones), hears ringback, and then talks to the phone that answered, media
flowing directly; closed hours, retries and fallback; a refused call hears
why before its final response. The CDR shows the path."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

from pbx.ivr.prompts import PromptLibrary

from tests.server import RunningServer

from .harness import DOMAIN, Pbx
from .linphone import Linphone, available as linphone_available
from .phone import Phone, PhoneFactory, write_tone_wav
from .prompt_match import heard_prompt, recorded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PASSWORDS = {"1001": "caller-secret-1001", "1002": "sales-secret-1002", "1004": "lan-secret-1004",
             "1099": "reception-secret-1099"}

DIALPLAN = """\
domain: pbx.example.com
timezone: Asia/Ho_Chi_Minh
departments:
  office: {name: Office, class_of_service: office}
extensions:
  1001: {name: Caller, department: office, password: caller-secret-1001}
  1002: {name: Sales, department: office, password: sales-secret-1002}
  1003: {name: Away, department: office, password: away-secret-1003, dnd: true}
  1004: {name: Lan, department: office, password: lan-secret-1004, language: zh}
  1099: {name: Reception, department: office, password: reception-secret-1099, class_of_service: reception}
number_plans:
  vietnam:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    area_code: "28"
    entries:
      - {pattern: "00 .", class: international}
      - {pattern: "0[35789] XXXX XXXX", class: mobile}
classes_of_service:
  office: {allow: [mobile, international]}
  reception: {allow: [mobile]}
schedules:
  always: {open: [{days: mon-sun, from: "00:00", to: "24:00"}]}
media: {rtp_ports: "31000-31199", language: en, tones: VN}
voicemail: {enabled: false}   # refusals come back to the caller, said first
ivr_menus:
  main:
    number: "800"
    greeting: welcome
    options:
      "1": {extension: "1002"}
      "0": {extension: "1099"}
      "5": {hunt_group: "510"}
    dial_by_extension: true
    timeout: 4
    digit_timeout: 1
    retries: 1
    fallback: {extension: "1099"}
    hours: always
    closed: after_hours
  after_hours: {greeting: closed, timeout: 1, retries: 0, fallback: {hangup: true}}
hunt_groups:
  "510": {name: Team, strategy: linear, members: ["1099", "1002"], member_seconds: 5}
"""

LIBRARY = PromptLibrary()
DTMF_ROWS = {"1": (697.0, 1209.0)}


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


def registered(phones: PhoneFactory, pbx: Pbx, number: str, *, passwords: Mapping[str, str] = PASSWORDS,
               **options: object) -> Phone:
    phone = phones(f"ext{number}")
    state = phone.register(number, passwords[number], DOMAIN, pbx.registrar(), **options)  # type: ignore[arg-type]
    assert state["code"] == 200, state
    return phone


def dial(phone: Phone, number: str, pbx: Pbx) -> int:
    return phone.call(f"sip:{number}@{pbx.registrar()};transport=udp")


def samples(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as source:
        assert source.getsampwidth() == 2
        rate, channels = source.getframerate(), source.getnchannels()
        data = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2").astype(np.float64)
    return data[::channels], rate


def voiced_span(data: np.ndarray, rate: int, *, level: float = 300.0) -> tuple[float, float]:
    """(first, last) second at which 20 ms frames are louder than ``level``."""
    frame = rate // 50
    count = len(data) // frame
    loud = np.sqrt((data[:count * frame].reshape(count, frame) ** 2).mean(axis=1)) > level
    found = np.flatnonzero(loud)
    assert len(found), "silence"
    return found[0] / 50, (found[-1] + 1) / 50


def voiced(path: Path) -> tuple[float, float]:
    return voiced_span(*samples(path))


def prompt_span(name: str, language: str = "en") -> float:
    """How long the shipped prompt speaks (its own silences left out)."""
    audio = LIBRARY.load(language, name)
    first, last = voiced_span(np.frombuffer(audio.linear, dtype="<i2").astype(np.float64), 8000)
    return last - first


# Seconds a phone records past a prompt's voiced length: the prompt's own
# silences, the phone's jitter buffer, and the time a server stalled on a busy
# machine holds the prompt back (it delays the rest rather than cut it).
AFTER_PROMPT = 2.0


def held_back(server: RunningServer) -> float:
    """Seconds the server's media clock has held prompts back so far, as
    its ``playback_held_back`` lines say; a caller heard as much silence
    inside them."""
    lines = server.lines_with('"playback_held_back"')
    return sum(int(json.loads(line)["held_back_ms"]) for line in lines) / 1000


def assert_heard_whole(first: float, last: float, expected: float, server: RunningServer, *,
                       share: float, plus: float = 0.0) -> None:
    """The phone heard the prompt whole and once: its voiced span, from
    ``first`` to ``last``, is the prompt's own (``expected``) within
    ``share`` of it plus ``plus`` seconds, and may be longer by no more
    than the time the server held it back."""
    slack, late = share * expected + plus, held_back(server)
    assert expected - slack <= last - first <= expected + late + slack, (first, last, expected, late)


def dtmf_wav(path: Path, digit: str) -> Path:
    low, high = DTMF_ROWS[digit]
    t = np.arange(int(0.25 * 8000)) / 8000
    tone = (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)) * 0.3 * 32767
    pcm = np.concatenate([tone, np.zeros(1600)]).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(pcm.tobytes())
    return path


def hear_greeting(caller: Phone, call: int, tmp_path: Path, name: str, language: str = "en") -> Path:
    """Record from the answer until the greeting has played."""
    caller.wait_for("media_state", 10.0, call=call, status="active")
    heard = tmp_path / f"{name}.wav"
    caller.record(heard, call)
    time.sleep(prompt_span("welcome", language) + AFTER_PROMPT)
    caller.stop_record(call)
    return heard


def talk(caller: Phone, call: int, callee: Phone, callee_call: int, tmp_path: Path) -> tuple[Path, Path]:
    """Both sides play a tone and record the other."""
    heard_by_callee, heard_by_caller = tmp_path / "callee-heard.wav", tmp_path / "caller-heard.wav"
    callee.record(heard_by_callee, callee_call)
    caller.record(heard_by_caller, call)
    caller.play(write_tone_wav(tmp_path / "a.wav", frequency=440.0, seconds=1.0), call)
    callee.play(write_tone_wav(tmp_path / "b.wav", frequency=660.0, seconds=1.0), callee_call)
    caller.wait_for("play_done", 5.0, call=call)
    callee.wait_for("play_done", 5.0, call=callee_call)
    time.sleep(0.5)
    callee.stop_record(callee_call)
    caller.stop_record(call)
    return heard_by_caller, heard_by_callee


def dominant(path: Path) -> float:
    data, rate = samples(path)
    spectrum = np.abs(np.fft.rfft(data))
    return float(np.fft.rfftfreq(len(data), 1 / rate)[int(np.argmax(spectrum[1:])) + 1])


@pytest.mark.parametrize("method", ["rfc4733", "info", "inband"])
def test_menu_greets_takes_a_key_and_transfers_with_direct_media(pbx: Pbx, phones: PhoneFactory, tmp_path: Path,
                                                                 method: str) -> None:
    caller = registered(phones, pbx, "1001")
    sales = registered(phones, pbx, "1002", auto_answer=200, auto_answer_delay=1.5)
    call = dial(caller, "800", pbx)
    greeting = hear_greeting(caller, call, tmp_path, "greeting")
    first, last = voiced(greeting)
    assert_heard_whole(first, last, prompt_span("welcome"), pbx.server, share=0.1)

    def press() -> None:
        if method == "inband":
            caller.play(dtmf_wav(tmp_path / "key1.wav", "1"), call)
        else:
            caller.send_dtmf("1", call, method=method)

    put_through(pbx, caller, call, sales, press, tmp_path)
    row = pbx.cdr_for("1001", "800")
    assert (row["disposition"], row["destination"], row["hangup_side"]) == ("ANSWERED", "1002", "caller")
    assert row["ivr_path"] == "main[1]"
    assert row["rule"] == "ivr_menus.main.options.1"


def put_through(pbx: Pbx, caller: Phone, call: int, callee: Phone, press: Callable[[], object],
                tmp_path: Path) -> None:
    """The caller keys (``press``) and hears ringback until ``callee`` (set
    to answer 1.5 s after it rings) answers; then the PBX leaves the media
    path and both hear each other; the caller hangs up."""
    ringing = tmp_path / "ringing.wav"
    caller.record(ringing, call)
    press()
    callee_call = int(callee.wait_for("incoming_call", 10.0)["call"])
    time.sleep(1.0)
    caller.stop_record(call)
    voiced(ringing)
    assert abs(dominant(ringing) - 425.0) < 15.0, dominant(ringing)  # the plan's tones: VN ringback
    callee.wait_call_state("CONFIRMED", callee_call, timeout=10.0)
    pbx.server.wait_lines("direct_media", timeout=10.0)
    time.sleep(0.5)
    heard_by_caller, heard_by_callee = talk(caller, call, callee, callee_call, tmp_path)
    assert abs(dominant(heard_by_caller) - 660.0) < 20.0
    assert abs(dominant(heard_by_callee) - 440.0) < 20.0
    caller.hangup(call)
    callee.wait_call_state("DISCONNECTED", callee_call, timeout=10.0)


def test_a_key_for_a_hunt_group_hunts_its_members(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    """Key 5 is hunt group 510 (linear: 1099, then 1002). 1099 is not
    registered, so it is skipped at once and 1002 rings and answers."""
    caller = registered(phones, pbx, "1001")
    sales = registered(phones, pbx, "1002", auto_answer=200, auto_answer_delay=1.5)
    call = dial(caller, "800", pbx)
    caller.wait_for("media_state", 10.0, call=call, status="active")
    put_through(pbx, caller, call, sales, lambda: caller.send_dtmf("5", call), tmp_path)
    row = pbx.cdr_for("1001", "800")
    assert (row["disposition"], row["destination"], row["ivr_path"]) == ("ANSWERED", "1002", "main[5]")


def test_a_caller_hears_the_menu_in_their_language_and_dials_an_extension(pbx: Pbx, phones: PhoneFactory,
                                                                         tmp_path: Path) -> None:
    """1004's language is zh (the plan's is en): the greeting is the
    Mandarin one. Dial-by-extension: 1002 then # puts the caller through."""
    caller = registered(phones, pbx, "1004")
    sales = registered(phones, pbx, "1002", auto_answer=200, auto_answer_delay=1.5)
    call = dial(caller, "800", pbx)
    greeting = hear_greeting(caller, call, tmp_path, "greeting", "zh")
    put_through(pbx, caller, call, sales, lambda: caller.send_dtmf("1002#", call), tmp_path)
    heard = recorded(greeting)  # compared after the call: the menu does not wait for us
    chinese, english = heard_prompt(heard, "welcome", "zh"), heard_prompt(heard, "welcome", "en")
    assert chinese > 0.5 and chinese > english, (chinese, english)
    row = pbx.cdr_for("1004", "800")
    assert (row["destination"], row["ivr_path"], row["rule"]) == ("1002", "main[1002]", "ivr_menus.main.dial_by_extension")


@pytest.mark.parametrize(("key", "phrase"), [
    ("0", "not_available"),  # 1099 is not registered
    ("1", "busy"),           # 1002 answers 486
])
def test_a_transfer_nobody_takes_is_said_then_the_pbx_hangs_up(pbx: Pbx, phones: PhoneFactory, tmp_path: Path,
                                                              key: str, phrase: str) -> None:
    caller = registered(phones, pbx, "1001")
    registered(phones, pbx, "1002", auto_answer=486)
    call = dial(caller, "800", pbx)
    caller.wait_for("media_state", 10.0, call=call, status="active")
    caller.send_dtmf(key, call)
    heard = tmp_path / "failed.wav"
    caller.record(heard, call)
    end = caller.wait_call_state("DISCONNECTED", call, timeout=20.0)
    assert end["code"] == 200  # answered by the menu, then ended by the PBX's BYE
    caller.wait_for("record_done", 5.0)
    matches = {name: heard_prompt(recorded(heard), name) for name in ("not_available", "busy")}
    assert matches[phrase] > 0.5 and max(matches, key=lambda name: matches[name]) == phrase, matches
    row = pbx.cdr_for("1001", "800")
    assert (row["hangup_side"], row["ivr_path"]) == ("pbx", f"main[{key}]"), row


def test_silence_and_invalid_keys_are_retried_then_the_fallback_rings(pbx: Pbx, phones: PhoneFactory) -> None:
    caller = registered(phones, pbx, "1001")
    reception = registered(phones, pbx, "1099", auto_answer=200)
    call = dial(caller, "800", pbx)
    caller.wait_call_state("CONFIRMED", call, timeout=10.0)
    caller.send_dtmf("7", call)  # no option, no extension begins with 7: invalid at once
    reception_call = int(reception.wait_for("incoming_call", 2 * prompt_span("welcome") + 20.0)["call"])
    reception.wait_call_state("CONFIRMED", reception_call, timeout=10.0)
    caller.hangup(call)
    row = pbx.cdr_for("1001", "800")
    assert row["ivr_path"] == "main[7 invalid|no input]"
    assert (row["destination"], row["rule"]) == ("1099", "ivr_menus.main.fallback")


def test_closed_by_the_administrator_the_closed_greeting_then_goodbye(pbx: Pbx, phones: PhoneFactory,
                                                                      tmp_path: Path) -> None:
    plan = tmp_path / "pbx" / "plan.yaml"
    done = subprocess.run([sys.executable, "-m", "pbx", "hours", "close", "--schedule", "always", "--db", pbx.db_url,
                           "--dialplan", str(plan), "--pid-file", str(pbx.server.pid_file)],
                          check=True, capture_output=True, text=True, timeout=60)
    assert "told pbx serve (pid" in done.stdout, done.stdout  # at once, not at the next sweep
    pbx.server.wait_lines("hours_overrides_loaded", timeout=10.0)
    caller = registered(phones, pbx, "1001")
    call = dial(caller, "800", pbx)
    caller.wait_for("media_state", 10.0, call=call, status="active")
    heard = tmp_path / "closed.wav"
    caller.record(heard, call)
    end = caller.wait_call_state("DISCONNECTED", call, timeout=prompt_span("closed") + 15.0)
    assert end["code"] == 200  # the PBX hung up after its goodbye
    caller.wait_for("record_done", 5.0)
    first, last = voiced(heard)
    closed = prompt_span("closed")
    assert last - first >= closed * 0.9  # the closed greeting, then goodbye
    row = pbx.cdr_for("1001", "800")
    assert row["ivr_path"] == "after_hours[no input]"
    assert (row["disposition"], row["hangup_side"], row["reason"]) == ("ANSWERED", "pbx", "menu_hangup")


def test_a_refused_call_hears_not_allowed_before_the_403(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    reception = registered(phones, pbx, "1099")
    call = dial(reception, "0081312345678", pbx)  # international: not for the reception phone
    hears_before_refusal(reception, call, tmp_path / "refused.wav", "not_allowed", 403, pbx.server)
    row = pbx.cdr_for("1099", "0081312345678")
    assert (row["disposition"], row["hangup_status"]) == ("REJECTED", "403")


@pytest.mark.parametrize(("dialled", "phrase", "status"), [
    ("1234", "number_does_not_exist", 404),  # no extension, no entry of the number plan
    ("1003", "busy", 486),                   # do not disturb
    ("1002", "not_available", 480),          # not registered
])
def test_a_refused_internal_call_hears_why_before_its_final_response(pbx: Pbx, phones: PhoneFactory, tmp_path: Path,
                                                                     dialled: str, phrase: str, status: int) -> None:
    caller = registered(phones, pbx, "1001")
    call = dial(caller, dialled, pbx)
    heard = tmp_path / "refused.wav"
    hears_before_refusal(caller, call, heard, phrase, status, pbx.server)
    # The phrase itself, not another of similar length (cross-correlation).
    matches = {name: heard_prompt(recorded(heard), name) for name in ("number_does_not_exist", "busy", "not_available")}
    assert matches[phrase] > 0.5 and max(matches, key=lambda name: matches[name]) == phrase, matches
    row = pbx.cdr_for("1001", dialled)
    assert row["hangup_status"] == str(status)


def hears_before_refusal(phone: Phone, call: int, heard: Path, phrase: str, status: int,
                         server: RunningServer) -> None:
    """``phone``'s ``call`` carries early media: records it until the final
    response, which must be ``status``; what was heard is ``phrase``, its
    voiced length within 15 % (+0.1 s) of the prompt's (see
    :func:`assert_heard_whole`)."""
    phone.wait_for("media_state", 10.0, call=call, status="active")
    phone.record(heard, call)
    end = phone.wait_call_state("DISCONNECTED", call, timeout=15.0)
    assert end["code"] == status
    phone.wait_for("record_done", 5.0)
    first, last = voiced(heard)
    assert_heard_whole(first, last, prompt_span(phrase), server, share=0.15, plus=0.1)


def first_utterance(path: Path, *, max_gap: float = 0.8, level: float = 300.0) -> tuple[float, float]:
    """(start, end) of the first stretch of sound with no silence longer than ``max_gap``."""
    data, rate = samples(path)
    frame = rate // 50
    count = len(data) // frame
    loud = np.flatnonzero(np.sqrt((data[:count * frame].reshape(count, frame) ** 2).mean(axis=1)) > level)
    assert len(loud), f"{path}: silence"
    end = loud[0]
    for index in loud[1:]:
        if (index - end) / 50 > max_gap:
            break
        end = index
    return loud[0] / 50, (end + 1) / 50


def tail_frequency(path: Path, seconds: float) -> float:
    data, rate = samples(path)
    tail = data[-int(seconds * rate):]
    spectrum = np.abs(np.fft.rfft(tail))
    return float(np.fft.rfftfreq(len(tail), 1 / rate)[int(np.argmax(spectrum[1:])) + 1])


@pytest.mark.skipif(not linphone_available(), reason="no linphonec: make deps installs linphone-cli")
def test_a_linphone_caller_keys_through_to_a_pjsua_phone(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    sales = registered(phones, pbx, "1002", auto_answer=200, auto_answer_delay=1.0)
    caller = Linphone(tmp_path / "linphone")
    heard_by_caller, heard_by_sales = tmp_path / "linphone-heard.wav", tmp_path / "sales-heard.wav"
    try:
        caller.send(f"register sip:1001@{DOMAIN} sip:{pbx.registrar()} {PASSWORDS['1001']}")
        caller.send(f"call sip:800@{pbx.registrar()}")
        caller.wait_for("connected", 10.0)
        caller.send(f"record {heard_by_caller}")
        time.sleep(prompt_span("welcome") + AFTER_PROMPT)  # a key sooner would cut the greeting
        caller.send("1")  # RFC 2833 / 4733, as linphonec is configured
        sales_call = int(sales.wait_for("incoming_call", 10.0)["call"])
        sales.wait_call_state("CONFIRMED", sales_call, timeout=10.0)
        pbx.server.wait_lines("direct_media", timeout=10.0)
        time.sleep(0.5)
        sales.record(heard_by_sales, sales_call)
        caller.send(f"play {write_tone_wav(tmp_path / 'a.wav', frequency=440.0, seconds=3.0)}")
        sales.play(write_tone_wav(tmp_path / "b.wav", frequency=660.0, seconds=3.0), sales_call, loop=True)
        time.sleep(2.5)
        sales.stop_record(sales_call)
        caller.send("terminate")
        sales.wait_call_state("DISCONNECTED", sales_call, timeout=10.0)
    finally:
        caller.close()
    first, last = first_utterance(heard_by_caller)
    assert_heard_whole(first, last, prompt_span("welcome"), pbx.server, share=0.1)
    assert abs(tail_frequency(heard_by_caller, 1.5) - 660.0) < 20.0
    assert abs(dominant(heard_by_sales) - 440.0) < 20.0
    row = pbx.cdr_for("1001", "800")
    assert (row["disposition"], row["destination"], row["ivr_path"]) == ("ANSWERED", "1002", "main[1]")
