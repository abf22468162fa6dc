"""bench/register_rate.py and its reference, Kamailio with the shipped
bench/kamailio/registrar.cfg.

- The shipped config registers SIPp's users (register_auth.xml, over UDP and
  TCP): each registration is a real 401 challenge for the bench's realm
  (MD5, qop="auth") and a 200 carrying the phone's Contact; a wrong password
  is challenged again, not registered. Skipped without kamailio.
- The whole bench runs both targets for one short step and prints the ratio.
- The summary's wording, from hand-made steps: a ladder that topped out or
  stopped at SIPp's limit gives "≥ N" and bounds the ratio.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Final

import pytest

from tests.server import REPO_ROOT

sys.path.append(str(REPO_ROOT / "bench"))  # the bench's modules import each other by bare name
from make_users import DEFAULT_DOMAIN, make_users, sipp_csv  # noqa: E402
from register_rate import SCENARIO, Kamailio, Pinning, Step, kamailio_binary, summary  # noqa: E402

USERS: Final = 5
REGISTRATIONS: Final = 10  # at 10/s: one second of SIPp


def binaries() -> tuple[str, str]:
    """(sipp, kamailio); the Kamailio tests skip without it, as the cluster's do."""
    kamailio = kamailio_binary()
    if kamailio is None:
        pytest.skip("kamailio is not installed (make deps)")
    sipp = shutil.which("sipp")
    if sipp is None:
        pytest.fail("sipp is not installed: run `make deps` (Debian package sip-tester)")
    return sipp, kamailio


def sipp_register(sipp: str, port: int, transport: str, users_csv: Path, count: int, workdir: Path, *,
                  recv_timeout_ms: int = 5000) -> tuple[int, str, dict[str, str]]:
    """SIPp's register_auth.xml, `count` registrations at 10/s: exit code,
    the messages it traced, the last row of its statistics."""
    messages, stat_file = workdir / f"{users_csv.stem}-messages.log", workdir / f"{users_csv.stem}-stat.csv"
    result = subprocess.run(
        [
            sipp, f"127.0.0.1:{port}", "-sf", str(SCENARIO), "-inf", str(users_csv),
            "-t", "u1" if transport == "udp" else "t1", "-i", "127.0.0.1",
            "-m", str(count), "-r", "10", "-recv_timeout", str(recv_timeout_ms), "-timeout", "30", "-timeout_error",
            "-default_behaviors", "none", "-nostdin",
            "-trace_msg", "-message_file", str(messages), "-trace_stat", "-stf", str(stat_file), "-fd", "1",
        ],
        cwd=workdir, capture_output=True, text=True, errors="replace", timeout=60,
    )  # fmt: skip
    rows = [line.split(";") for line in stat_file.read_text().splitlines() if line] if stat_file.exists() else []
    statistics = dict(zip(rows[0], rows[-1])) if len(rows) >= 2 else {}
    return result.returncode, messages.read_text(errors="replace") if messages.exists() else "", statistics


def received(messages: str, start: str) -> list[str]:
    """The messages SIPp received whose first line starts with `start`."""
    blocks = re.split(r"-{20,} [^\n]*\n(?:UDP|TCP) message received \[\d+\] bytes :\n", messages)
    return [block.strip() for block in blocks[1:] if block.strip().startswith(start)]


@pytest.mark.e2e
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_shipped_kamailio_config_challenges_then_registers(tmp_path: Path, transport: str) -> None:
    sipp, kamailio = binaries()
    users = make_users(USERS, password=None)
    users_csv = tmp_path / "users.csv"
    users_csv.write_text(sipp_csv(users, domain=DEFAULT_DOMAIN))
    wrong_csv = tmp_path / "wrong.csv"
    wrong_csv.write_text(sipp_csv([replace(users[0], password="not-" + users[0].password)], domain=DEFAULT_DOMAIN))
    target = Kamailio(kamailio, users, domain=DEFAULT_DOMAIN, children=1)

    with target.running(tmp_path, Pinning(), transport) as server:
        code, messages, statistics = sipp_register(sipp, server.port, transport, users_csv, REGISTRATIONS, tmp_path)
        # SIPp waits out its receive timeout for the 200 that never comes.
        wrong_code, wrong_messages, wrong_statistics = sipp_register(sipp, server.port, transport, wrong_csv, 1,
                                                                     tmp_path, recv_timeout_ms=2000)
    log = (tmp_path / "kamailio" / "kamailio.log").read_text(errors="replace")
    context = f"sipp exit {code}\n{messages[-3000:]}\nkamailio:\n{log[-3000:]}"

    assert code == 0, context
    assert statistics["SuccessfulCall(C)"] == str(REGISTRATIONS), context
    assert statistics["FailedCall(C)"] == "0", context
    challenges, accepted = received(messages, "SIP/2.0 401"), received(messages, "SIP/2.0 200")
    assert len(challenges) == len(accepted) == REGISTRATIONS, context
    for challenge in challenges:
        assert re.search(r'(?m)^WWW-Authenticate: Digest realm="pbx\.example\.com", nonce="[^"]+", qop="auth"',
                         challenge), challenge
    # SIPp cycles through the users file: user i registers at i, i+5, ...
    for number, answer in enumerate(accepted):
        user = users[number % USERS].extension
        assert re.search(rf"(?m)^Contact: <sip:{user}@127\.0\.0\.1:\d+;transport={transport}>;expires=3600",
                         answer, re.IGNORECASE), answer
    # The second REGISTER, with a wrong password, draws another 401 (again
    # for each UDP retransmission), never a 200.
    assert wrong_code != 0, wrong_messages
    assert wrong_statistics["FailedCall(C)"] == "1", wrong_messages
    assert any("\nCSeq: 2 REGISTER" in answer for answer in received(wrong_messages, "SIP/2.0 401")), wrong_messages
    assert not received(wrong_messages, "SIP/2.0 200"), wrong_messages
    assert "ERROR" not in log, log[-3000:]


@pytest.mark.e2e
def test_bench_measures_pbx_then_kamailio_and_prints_the_ratio(tmp_path: Path) -> None:
    binaries()
    results = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "register_rate.py"), "--rates", "20", "--duration", "1",
         "--users", "20", "--no-pin", "--workdir", str(tmp_path / "work"), "--results", str(results)],
        capture_output=True, text=True, errors="replace", timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pbx / kamailio authenticated REGISTER/s: 1.00 (both figures are lower bounds" in result.stdout, result.stdout
    document = json.loads(results.read_text())
    assert document["max_sustained"] == {"pbx": 20, "kamailio": 20}, result.stdout
    assert [(step["target"], step["successful"]) for step in document["steps"]] == [("pbx", 20), ("kamailio", 20)]


# --- the summary, from hand-made steps ---------------------------------------

def held(rate: int) -> Step:
    """A 30 s step that counted, at 500 µs of server CPU per registration."""
    return Step(
        target="pbx", offered=rate, calls=30 * rate, sipp_exit=0, successful=30 * rate, failed=0,
        retransmissions=0, elapsed_s=30.0, achieved=float(rate), retrans_percent=0.0, mean_response_ms=2.0,
        server_cpu_percent=rate / 20, server_rss_mb=100.0, server_pss_mb=90.0, sipp_cpu_percent=40.0, udp_drops=0,
    )  # fmt: skip


def slow(rate: int, *, sipp_cpu_percent: float = 40.0) -> Step:
    """A step that did not count: its mean response time was 250 ms."""
    return replace(held(rate), mean_response_ms=250.0, sipp_cpu_percent=sipp_cpu_percent)


def ladder(target: str, *steps: Step) -> list[Step]:
    return [replace(step, target=target) for step in steps]


def test_the_pbx_alone_prints_the_line_it_always_printed() -> None:
    lines, figures = summary({"pbx": [held(1000), slow(2000)]})
    assert lines == ["max sustained authenticated REGISTER/s: 1000"]
    assert figures["max_sustained"] == {"pbx": 1000}


@pytest.mark.parametrize(
    ("pbx", "kamailio", "expected"),
    [
        # both ladders found their limit: a plain ratio
        ([held(1000), slow(2000)], [held(1000), held(2000), slow(4000)],
         ["  max sustained authenticated REGISTER/s, pbx: 1000 (500 µs server CPU per registration there)",
          "  max sustained authenticated REGISTER/s, kamailio: 2000 (500 µs server CPU per registration there)",
          "  pbx / kamailio authenticated REGISTER/s: 0.50"]),
        # Kamailio held the top of the ladder: a lower bound, so the ratio is an upper one
        ([held(500), slow(2000)], [held(500), held(2000)],
         ["  max sustained authenticated REGISTER/s, pbx: 500 (500 µs server CPU per registration there)",
          "  max sustained authenticated REGISTER/s, kamailio: ≥ 2000 (every step held: give higher --rates; "
          "500 µs server CPU per registration there)",
          "  pbx / kamailio authenticated REGISTER/s: ≤ 0.25"]),
        # Kamailio's failing step had SIPp at its limit: a lower bound too
        ([held(1000), slow(2000)], [held(1000), slow(2000, sipp_cpu_percent=99.0)],
         ["  max sustained authenticated REGISTER/s, pbx: 1000 (500 µs server CPU per registration there)",
          "  max sustained authenticated REGISTER/s, kamailio: ≥ 1000 (at 2000/s SIPp used 99 % of its core: "
          "the limit may be SIPp's; 500 µs server CPU per registration there)",
          "  pbx / kamailio authenticated REGISTER/s: ≤ 1.00"]),
        # both topped out: no ratio to speak of
        ([held(1000)], [held(1000)],
         ["  max sustained authenticated REGISTER/s, pbx: ≥ 1000 (every step held: give higher --rates; "
          "500 µs server CPU per registration there)",
          "  max sustained authenticated REGISTER/s, kamailio: ≥ 1000 (every step held: give higher --rates; "
          "500 µs server CPU per registration there)",
          "  pbx / kamailio authenticated REGISTER/s: 1.00 (both figures are lower bounds: not a real ratio)"]),
        # the PBX held no step
        ([slow(1000)], [held(1000), slow(2000)],
         ["  max sustained authenticated REGISTER/s, pbx: 0",
          "  max sustained authenticated REGISTER/s, kamailio: 1000 (500 µs server CPU per registration there)",
          "  pbx / kamailio authenticated REGISTER/s: n/a (a target held no step)"]),
    ],
)
def test_the_summary_states_both_maxima_and_bounds_the_ratio(pbx: list[Step], kamailio: list[Step],
                                                             expected: list[str]) -> None:
    lines, _ = summary({"pbx": ladder("pbx", *pbx), "kamailio": ladder("kamailio", *kamailio)})
    assert lines == ["summary", *expected]
