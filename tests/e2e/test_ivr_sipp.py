"""SIPp drives the auto attendant: callers from a trunk reach a menu by its
DID and key 9 (hang up) with RFC 4733 telephone-events replayed from a pcap
(sipp-scenarios/dtmf_9.pcap, written by make_dtmf_pcap.py); 20 calls at
once (counted from the server's log), no failure, one CDR per call with the
key in its IVR path."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from tests.server import REPO_ROOT, free_port
from tests.trunks.provider import Sipp

from .harness import rows_once, start_pbx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DID = "+842873000200"
CALLS = 40


def dialplan(gateway: int) -> str:
    return f"""\
domain: pbx.example.com
departments:
  office: {{name: Office}}
extensions:
  1099: {{name: Reception, department: office, password: reception-secret-1099}}
trunks:
  provider:
    gateways: [{{host: 127.0.0.1, port: {gateway}}}]
inbound:
  "{DID}": {{menu: main}}
media: {{rtp_ports: "32000-32399", language: en}}
ivr_menus:
  main:
    greeting: welcome
    options:
      "9": {{hangup: true}}
      "0": {{extension: "1099"}}
    timeout: 10
"""


def test_twenty_callers_at_once_key_through_the_menu(tmp_path: Path) -> None:
    gateway = free_port()
    sipp_dir = tmp_path / "sipp"
    sipp_dir.mkdir()
    shutil.copy(REPO_ROOT / "sipp-scenarios" / "dtmf_9.pcap", sipp_dir)
    with start_pbx(tmp_path / "pbx", dialplan(gateway)) as pbx:
        sipp = Sipp("ivr_rfc4733", sipp_dir, port=gateway, remote=pbx.registrar(), calls=CALLS,
                    keys={"caller": "0912345678"}, extra=("-s", DID, "-l", "20", "-r", "20"))
        try:
            assert sipp.wait(timeout=90.0) == 0, sipp.describe()
        finally:
            sipp.stop()
        rows = rows_once(pbx.cdrs, lambda row: row["dialed_number"] == DID and bool(row["ended_at"]), CALLS)
        assert len(rows) == CALLS
        assert len({row["call_id"] for row in rows}) == CALLS
        assert all((row["disposition"], row["hangup_side"], row["reason"], row["ivr_path"])
                   == ("ANSWERED", "pbx", "menu_hangup", "main[9]") for row in rows), rows
        assert pbx.server.lines_with("media_ports_exhausted") == []
        # 20 at once indeed: the menu's answers and the PBX's hang-ups, in order.
        changes = sorted([(event(line)["timestamp"], 1) for line in pbx.server.lines_with('"call_answered_by_menu"')]
                         + [(event(line)["timestamp"], -1) for line in pbx.server.lines_with('"call_ended_by_pbx"')])
        assert len(changes) == 2 * CALLS
        assert max(itertools.accumulate(step for _, step in changes)) == 20


def event(line: str) -> dict[str, str]:
    found = json.loads(line)
    assert isinstance(found, dict)
    return found
