"""``pbx explain`` over the example plan: the decision, the chain of rules
with their places in the file, and clear answers to bad questions."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pbx.cli.main import main
from tests.routing.test_loader import EXAMPLE


def explain(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["explain", "--dialplan", str(EXAMPLE), *args])
    return result.exit_code, result.stdout, result.stderr


def test_why_was_international_refused_for_sales_on_tet() -> None:
    code, out, _ = explain("--from", "1003", "--to", "0081312345678", "--at", "2027-02-08 10:00")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "call from 1003 (Lê Minh Châu, department sales) to 0081312345678"
    assert lines[1] == "at Mon 2027-02-08 10:00 Asia/Ho_Chi_Minh"
    assert f"  2. number_plans.vietnam[9]  ({EXAMPLE}:" in out
    assert "holiday on calendar vietnam: Third Day of Lunar New Year (public holiday VN)" in out
    assert "decision: refuse with 403 (international_not_allowed)" in out
    assert "          international is allowed only during business_hours, and that is not now" in out


def test_the_same_call_on_a_working_day_goes_out() -> None:
    code, out, _ = explain("--from", "1003", "--to", "0081312345678", "--at", "2027-03-10T03:00+00:00")
    assert code == 0
    assert "at Wed 2027-03-10 10:00 Asia/Ho_Chi_Minh" in out  # an explicit offset is converted
    assert "decision: call +81312345678 through trunk viettel, caller ID 02873000200" in out
    assert "class international, rule routes.vn-international" in out


def test_a_call_in_from_the_trunk_on_the_first_day_of_tet() -> None:
    code, out, _ = explain("--from", "trunk:viettel/0912345678", "--to", "+842873000200", "--at", "2027-02-06 09:00")
    assert code == 0
    assert out.startswith("call from 0912345678 via trunk viettel to +842873000200\n")
    assert "+842873000200 is an inbound number: answered by menu main" in out
    assert "Lunar New Year (public holiday VN)): menu after_hours instead of main" in out
    assert "decision: the PBX answers: auto attendant menu after_hours" in out
    assert "class inbound, rule ivr_menus.after_hours" in out


def test_relay_through_the_trunk_is_explained_as_refused() -> None:
    code, out, _ = explain("--from", "trunk:viettel", "--to", "0912345678")
    assert code == 0
    assert "decision: refuse with 403 (relay_denied)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "9999", "--to", "1001"), "pbx explain: --from '9999': no such extension"),
        (("--from", "trunk:nosuch", "--to", "1"), "pbx explain: --from 'trunk:nosuch': no trunk 'nosuch'"),
        (("--from", "1001", "--to", "1002", "--at", "tomorrow"), "pbx explain: --at 'tomorrow': expected"),
    ],
)
def test_bad_questions_exit_2(args: tuple[str, ...], message: str) -> None:
    code, out, err = explain(*args)
    assert code == 2 and out == ""
    assert err.startswith(message)


def test_a_broken_dialplan_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "plan.yaml"
    broken.write_text("domain: pbx.example.com\nroutes:\n  - {name: r, trunk: nowhere}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["explain", "--dialplan", str(broken), "--from", "1001", "--to", "1"])
    assert result.exit_code == 1
    assert f"{broken}:3:22: route 'r' names unknown trunk 'nowhere'" in result.stderr
