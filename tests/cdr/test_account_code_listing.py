"""The manager's view of issue 10: ``pbx cdr list --account-code ID`` and
``--owner NAME`` give one person's calls (those placed with their code,
from any phone), as a table or CSV; calls without a code, or with
another's, are left out; refused guesses (AUTH_FAILED) carry no owner."""

from __future__ import annotations

import csv
import io
import uuid

from click.testing import CliRunner
from sqlalchemy import Engine

from pbx.cdr.records import CallRouted, Disposition, HangupSide
from pbx.cdr.writer import CdrWriter
from pbx.cli.cdr import cdr
from pbx.store.writer import BackgroundWriter

from .conftest import at, make_answer, make_end, make_start, run_now

# (caller, dialled, account code id, owner, rights, disposition)
CALLS = [
    ("1099", "0081312345678", "7", "Trần Thị Bích", "management", Disposition.ANSWERED),
    ("1008", "38221234", "7", "Trần Thị Bích", "management", Disposition.ANSWERED),  # her code, another phone
    ("1008", "0912345678", "12", "Lê Minh Châu", "sales", Disposition.ANSWERED),
    ("1099", "0081312345678", None, None, None, Disposition.AUTH_FAILED),
    ("1001", "1002", None, None, None, Disposition.ANSWERED),
]


def write(migrated: Engine) -> list[str]:
    background = BackgroundWriter(migrated)
    cdrs = CdrWriter(background, "pbx-a", run_now)
    ids = []
    for offset, (caller, dialled, code, owner, rights, disposition) in enumerate(CALLS):
        call = uuid.uuid4()
        ids.append(str(call))
        cdrs.started(make_start(call, caller_number=caller, dialed_number=dialled, started_at=at(offset * 600)))
        cdrs.routed(CallRouted(call_uuid=call, call_class="outside", account_code=code, account_owner=owner,
                               account_rights=rights))
        if disposition is Disposition.ANSWERED:
            cdrs.answered(make_answer(call, answered_at=at(offset * 600 + 5), destination=dialled))
            cdrs.ended(make_end(call, ended_at=at(offset * 600 + 65)))
        else:
            cdrs.ended(make_end(call, ended_at=at(offset * 600 + 20), disposition=disposition,
                                hangup_side=HangupSide.PBX, hangup_status=403))
    assert background.close(timeout=30)
    return ids


def test_one_persons_calls_by_code_id_or_owner_as_csv_and_table(migrated: Engine, db_url: str) -> None:
    ids = write(migrated)
    runner = CliRunner()
    for selector in (["--account-code", "7"], ["--account-code", "#7"], ["--owner", "Trần Thị Bích"]):
        result = runner.invoke(cdr, ["list", "--db", db_url, "--csv", "--no-bom", *selector])
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
        assert [row["call_uuid"] for row in rows] == ids[:2], selector
        assert {(row["account_code"], row["account_owner"], row["account_rights"]) for row in rows} == {
            ("7", "Trần Thị Bích", "management")}
    table = runner.invoke(cdr, ["list", "--db", db_url, "--utc", "--owner", "Lê Minh Châu"])
    assert table.exit_code == 0, table.output
    assert len(table.stdout.splitlines()) == 2 and "0912345678" in table.stdout
    nobody = runner.invoke(cdr, ["list", "--db", db_url, "--owner", "Nobody"])
    assert (nobody.exit_code, nobody.stdout, nobody.stderr) == (0, "", "no calls\n")
