"""A call refused for an exhausted budget says so before its 403 (the
cost-control issue's announcement, now that the PBX has media)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import DOMAIN, Pbx
from .phone import PhoneFactory
from .test_ivr import dial, hears_before_refusal

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DIALPLAN = """\
domain: pbx.example.com
timezone: Asia/Ho_Chi_Minh
departments:
  office: {name: Office, class_of_service: office}
extensions:
  1001: {name: Caller, department: office, password: caller-secret-1001}
number_plans:
  vietnam:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    entries:
      - {pattern: "00 .", class: international}
classes_of_service:
  office: {allow: [international]}
trunks:
  carrier:
    gateways: [{host: 127.0.0.1, port: 9}]
routes:
  - {name: abroad, classes: [international], trunk: carrier}
billing:
  currency: VND
  tariffs:
    - {id: abroad, classes: [international], per_minute: 5000, increment: 60/60}
budgets:
  extensions:
    "1001": 1
media: {rtp_ports: "31200-31299", language: en, tones: VN}
"""


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


def test_an_exhausted_budget_is_announced_before_the_403(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    phone = phones("ext1001")
    assert phone.register("1001", "caller-secret-1001", DOMAIN, pbx.registrar())["code"] == 200
    call = dial(phone, "0081312345678", pbx)
    hears_before_refusal(phone, call, tmp_path / "budget.wav", "budget_exhausted", 403, pbx.server)
    row = pbx.cdr_for("1001", "0081312345678")
    assert (row["disposition"], row["reason"]) == ("REJECTED", "budget_exhausted")
