"""The cost of a call, end to end: a pjsua2 phone calls out through SIPp
playing the provider, talks a few seconds and hangs up; the CDR row `pbx
serve` wrote carries the cost the tariff gives for its billsec, and `pbx
report --by department --csv` shows it."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from pbx.routing.tariffs import Increment, Tariff
from tests.server import free_port

from .phone import PhoneFactory
from .test_trunks import Pbx, dialplan, phones, provider, register_phone, sipp_dir

__all__ = ["phones", "sipp_dir"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed"),
]

BILLING = """\
billing:
  currency: VND
  tariffs:
    - {id: vn-national-per-second, trunk: viettel, classes: [national], per_minute: 600, setup: 200,
       increment: 1/1}
budgets:
  departments: {sales: 1000000}
"""
TARIFF = Tariff(id="vn-national-per-second", per_minute=600, setup=200, increment=Increment(1, 1))


def test_the_cdr_of_a_call_out_carries_its_cost_and_the_report_shows_it(
        tmp_path: Path, sipp_dir: Path, phones: PhoneFactory) -> None:
    sipp = provider(sipp_dir, calls=1)
    try:
        pbx = Pbx(tmp_path, dialplan((sipp.port, free_port()), register=False) + BILLING)
        pbx.start()
        try:
            alice = register_phone(phones, pbx)
            call = alice.call(f"sip:0912345678@{pbx.address}", transport="udp")
            alice.wait_call_state("CONFIRMED", call, timeout=10.0)
            time.sleep(3.0)  # the known time the call lasts
            alice.hangup(call)
            row = pbx.cdr("0912345678")
            report = subprocess.run(
                [sys.executable, "-m", "pbx", "report", "--by", "department", "--csv", "--db", pbx.db_url,
                 "--dialplan", str(pbx.dialplan)],
                capture_output=True, timeout=30, check=True).stdout
        finally:
            pbx.stop()
        assert sipp.wait() == 0, sipp.describe()
    finally:
        sipp.stop()

    billsec = int(row["billsec"])
    assert billsec >= 2, row  # about three seconds were talked
    cost = TARIFF.cost(billsec)  # 200 set-up + 10 a second
    assert (row["disposition"], row["trunk"], row["call_class"]) == ("ANSWERED", "viettel", "national")
    assert (row["tariff"], row["currency"], row["cost_minor"]) == ("vn-national-per-second", "VND", str(cost))
    assert Decimal(row["cost"]) == cost  # VND has no minor unit: the amount is the count of đồng
    assert report.startswith("\ufeff".encode())
    lines = list(csv.DictReader(io.StringIO(report.decode("utf-8-sig"))))
    assert [(r["department"], r["calls"], r["answered"], r["cost"], r["currency"]) for r in lines] == [
        ("sales", "1", "1", str(cost), "VND"), ("TOTAL", "1", "1", str(cost), "VND")]
