"""A budget per account code, end to end: a code added with `pbx codes`,
its budget set to nothing with `pbx budget set code ID 0` (which reloads
the running `pbx serve`), and a restricted phone dialling abroad under the
code with the dial prefix is refused before anything is placed: 403, the
`budget_exhausted` log line naming the code's budget, a REJECTED CDR that
still carries the code. The phone's own department budget has room: only
the code's budget refuses it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import free_port

from .harness import Pbx, start_pbx
from .phone import PhoneFactory
from .test_account_codes import (CODE, INTERNATIONAL, OWNER, add_code, code_secret, dialplan, no_digits_in_output,
                                 prefix_call, registered)

__all__ = ["code_secret"]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

COST = """\
billing:
  currency: VND
  tariffs:
    - {id: international, classes: [international], per_minute: 5000, increment: 30/6}
budgets:
  reserve_seconds: 60
  departments: {office: 100000000}
"""


@pytest.fixture
def pbx(tmp_path: Path) -> Iterator[Pbx]:
    # Nobody listens at the gateway: a call the budget let through would
    # fail there (408/503), not with the budget's 403 and reason.
    with start_pbx(tmp_path / "pbx", dialplan(free_port()) + COST) as running:
        yield running


def test_a_code_without_budget_left_is_refused_while_the_department_has_room(
        pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    code_id = add_code(pbx, tmp_path, CODE, OWNER, "management")
    done = subprocess.run(
        [sys.executable, "-m", "pbx", "budget", "set", "code", code_id, "0", "--dialplan",
         str(tmp_path / "pbx" / "plan.yaml"), "--pid-file", str(pbx.server.pid_file)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pbx.server.wait_lines("dialplan_reloaded")
    reception = registered(phones, pbx, "1099")
    assert prefix_call(reception, pbx, CODE) == 403
    (line,) = pbx.server.wait_lines('"event":"budget_exhausted"')
    logged = json.loads(line)
    assert (logged["budget"], logged["rule"], logged["limit"], logged["needed"], logged["outcome"]) == (
        f"account_code:{code_id}", f"budgets.account_codes.{code_id}", 0, 5000, "refused")
    row = pbx.cdr_for("1099", INTERNATIONAL)
    assert (row["disposition"], row["reason"], row["account_code"], row["account_owner"]) == (
        "REJECTED", "budget_exhausted", code_id, OWNER)
    no_digits_in_output(pbx, CODE)
