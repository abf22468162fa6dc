"""The API's account codes, reports, budgets, extension lifecycle and
forwarding on a real ``pbx serve --http``, checked where they take effect:
the store the server checks codes in for each call (with the server's own
secret), ``pbx codes list`` and ``pbx ext forward``, the dialplan file and
the plan the running server reloaded, and report totals over CDR rows in
the server's database."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

from pbx.accountcodes.lockout import LockoutPolicy
from pbx.cdr.writer import CDR
from pbx.routing.loader import read_dialplan
from pbx.store.codes import CodeStore
from pbx.store.db import make_engine
from tests.cdr.test_reports import cdr_row
from tests.server import REPO_ROOT
from tests.web.harness import Session, Web, sessions_per_role, start_web

KEY = "cd" * 32


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PBX_ACCOUNT_CODE_KEY", KEY)  # the server's secret, and `pbx codes` below
        with start_web(tmp_path_factory.mktemp("web")) as running:
            yield running


@pytest.fixture(scope="module")
def engine(web: Web) -> Iterator[Engine]:
    made = make_engine(web.db_url)
    yield made
    made.dispose()


@pytest.fixture(scope="module")
def users(web: Web) -> dict[str, Session]:
    return sessions_per_role(web)


def _pbx(web: Web, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pbx", *args, "--db", web.db_url, "--dialplan", str(web.dialplan)],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _outcome(engine: Engine, digits: str) -> tuple[str, str]:
    """What the server's per-call check makes of ``digits`` (same store, same secret)."""
    found = CodeStore(engine, bytes.fromhex(KEY)).verify(digits, "ext:api-test", datetime.now(UTC),
                                                           LockoutPolicy(failures=50))
    return found.outcome, found.reason


def test_a_code_is_shown_once_works_at_once_and_lists_show_only_its_owner(
        web: Web, users: dict[str, Session], engine: Engine) -> None:
    admin, branch = users["admin"], users["branch_admin"]
    made = admin.post("/api/codes", json={"owner": "Nguyễn Văn An", "class_of_service": "management",
                                          "department": "management", "employee_id": "NV-001"})
    assert made.status_code == 201, made.text
    digits = made.json()["code"]
    assert len(digits) == 6 and digits.isdigit() and made.json()["shown_once"]
    assert _outcome(engine, digits) == ("valid", "")

    sales = branch.post("/api/codes", json={"owner": "Lê Minh Châu", "class_of_service": "sales",
                                            "department": "sales", "code": "583920"})
    assert sales.status_code == 201, sales.text
    listed = admin.get("/api/codes")
    assert {c["owner"] for c in listed.json()} == {"Nguyễn Văn An", "Lê Minh Châu"}
    for secret in (digits, "583920"):
        assert secret not in listed.text
        assert secret not in admin.get("/api/audit").text
        assert secret not in web.server.output()
    assert "digest" not in listed.text
    assert [c["owner"] for c in branch.get("/api/codes").json()] == ["Lê Minh Châu"]
    code_id = made.json()["id"]
    assert branch.post(f"/api/codes/{code_id}/disable").status_code == 403
    cli = _pbx(web, "codes", "list")
    assert "Nguyễn Văn An" in cli and "NV-001" in cli and digits not in cli

    # Weak or taken digits are refused with the reason.
    weak = admin.post("/api/codes", json={"owner": "Weak", "class_of_service": "staff", "code": "123456"})
    taken = admin.post("/api/codes", json={"owner": "Copy", "class_of_service": "staff", "code": "583920"})
    assert weak.status_code == 422 and taken.status_code == 422
    assert "already in use" in taken.text

    # Disable, enable, rotate: each holds for the very next lookup.
    assert admin.post(f"/api/codes/{code_id}/disable").json()["status"] == "disabled"
    assert _outcome(engine, digits) == ("invalid", "disabled")
    assert admin.post(f"/api/codes/{code_id}/enable").json()["usable"] is True
    assert _outcome(engine, digits) == ("valid", "")
    rotated = admin.post(f"/api/codes/{code_id}/rotate")
    assert rotated.status_code == 200
    new_digits = rotated.json()["code"]
    assert new_digits != digits
    assert _outcome(engine, digits) == ("invalid", "unknown")
    assert _outcome(engine, new_digits) == ("valid", "")
    assert admin.request("DELETE", f"/api/codes/{code_id}").status_code == 200
    assert _outcome(engine, new_digits) == ("invalid", "unknown")
    actions = [(e["action"], e["target"]) for e in admin.get("/api/audit").json() if e["action"].startswith("code.")]
    assert {a for a, _ in actions} == {"code.create", "code.disable", "code.enable", "code.rotate", "code.remove"}
    assert (("code.remove", f"#{code_id} Nguyễn Văn An")) in actions


MARCH = datetime(2025, 3, 10, 3, 0, tzinfo=UTC)  # long before today


def test_reports_and_the_dashboard_count_only_the_readers_calls(web: Web, users: dict[str, Session],
                                                                 engine: Engine) -> None:
    today = datetime.now(UTC) - timedelta(minutes=5)
    rows = [cdr_row(started_at=MARCH, department="sales", caller="1003", answered_after=5, billsec=120,
                    cost=1000),
            cdr_row(started_at=MARCH + timedelta(hours=1), department="sales", caller="1004", answered_after=3,
                    billsec=60, cost=500),
            cdr_row(started_at=MARCH + timedelta(hours=2), department="accounting", caller="1008",
                    answered_after=2, billsec=600, cost=7000),
            cdr_row(started_at=MARCH, department="management", caller="1001", answered_after=None, billsec=0,
                    cost=None),
            cdr_row(started_at=today, department="sales", caller="1004", answered_after=1, billsec=90, cost=2500),
            cdr_row(started_at=today, department="accounting", caller="1008", answered_after=1, billsec=90,
                    cost=9900)]
    with engine.begin() as conn:
        conn.execute(insert(CDR), rows)

    def report(role: str, query: str) -> dict[str, object]:
        answer = users[role].get(f"/api/reports?{query}")
        assert answer.status_code == 200, answer.text
        found: dict[str, object] = answer.json()
        return found

    everything = report("admin", "by=department&period=2025-03")
    assert {r["key"]: r["cost_minor"] for r in everything["rows"]} == {  # type: ignore[attr-defined]
        "accounting": 7000, "sales": 1500, "management": 0}
    assert everything["total"] == {"key": None, "calls": 4, "answered": 3, "minutes": 13.0, "cost_minor": 8500,
                                   "cost": "8,500 VND"}
    sales = report("manager", "by=department&period=2025-03")
    assert [r["key"] for r in sales["rows"]] == ["sales"]  # type: ignore[attr-defined]
    assert report("branch_admin", "by=extension&period=2025-03")["total"]["cost_minor"] == 1500  # type: ignore[index]
    own = report("employee", "by=extension&period=2025-03")
    assert [(r["key"], r["cost_minor"]) for r in own["rows"]] == [("1003", 1000)]  # type: ignore[attr-defined]
    assert users["manager"].get("/api/reports?by=trunk&extension=1008").status_code == 403
    assert users["admin"].get("/api/reports?by=nothing").status_code == 422
    assert users["admin"].get("/api/reports?period=2026-13").status_code == 422

    traffic = users["manager"].get("/api/reports/traffic?period=2025-03").json()
    assert (traffic["calls"], traffic["answered"]) == (2, 2)
    assert traffic["by_hour"][10] == 1 and traffic["by_hour"][11] == 1  # 03:00 UTC is 10:00 in Ho Chi Minh City
    chart = users["employee"].get("/api/reports/traffic.svg?period=2025-03")
    assert chart.headers["content-type"].startswith("image/svg+xml") and chart.text.startswith("<svg")

    page = users["admin"].get("/reports?by=department&period=2025-03")
    assert page.status_code == 200 and 'id="traffic-chart"' in page.text and "<svg" in page.text
    assert page.text.count('class="usage-row"') == 3
    manager_page = users["manager"].get("/reports?period=2025-03")
    assert manager_page.text.count('class="usage-row"') == 1 and "accounting" not in manager_page.text

    # Today's costliest callers, each reader within their scope.
    assert "1008" in users["admin"].get("/").text.split('id="top-spenders"')[1]
    spenders = users["manager"].get("/").text.split('id="top-spenders"')[1]
    assert "2,500 VND" in spenders and "1008" not in spenders


def test_suspend_resume_retire_take_effect_in_the_running_server(web: Web, users: dict[str, Session]) -> None:
    admin, branch = users["admin"], users["branch_admin"]
    assert branch.post("/api/extensions/1005/suspend").json()["status"] == "suspended"
    assert admin.get("/api/extensions/1005").json()["status"] == "suspended"  # the server's plan, reloaded
    plan = read_dialplan(web.dialplan).dialplan
    assert plan is not None and plan.extensions["1005"].status == "suspended"
    assert branch.post("/api/extensions/1005/resume").json()["status"] == "active"
    assert admin.post("/api/extensions/1011/retire").json()["status"] == "retired"
    assert branch.post("/api/extensions/1011/resume").status_code == 403  # taipei is not theirs
    assert admin.post("/api/extensions/4242/suspend").status_code == 404
    actions = {(e["action"], e["target"]) for e in admin.get("/api/audit").json()}
    assert {("extension.suspend", "1005"), ("extension.resume", "1005"), ("extension.retire", "1011")} <= actions


def test_forwarding_is_stored_for_the_servers_and_checked_against_the_rights(
        web: Web, users: dict[str, Session]) -> None:
    admin, employee = users["admin"], users["employee"]
    done = employee.request("PUT", "/api/extensions/1003/forwarding", json={"always": "1004", "dnd": True})
    assert done.status_code == 200, done.text
    assert (done.json()["always"], done.json()["dnd"]) == ("1004", True)
    assert "1003: always -> 1004, busy -> off" in _pbx(web, "ext", "forward", "1003")
    # 1007 may call back listed customers only: no forward abroad for it.
    refused = admin.request("PUT", "/api/extensions/1007/forwarding", json={"always": "0044207946000"})
    assert refused.status_code == 422 and "may not dial" in refused.text
    assert admin.get("/api/extensions/1007/forwarding").json()["always"] is None
    off = employee.request("PUT", "/api/extensions/1003/forwarding", json={"always": None, "dnd": False})
    assert (off.json()["always"], off.json()["dnd"]) == (None, False)
    assert employee.request("PUT", "/api/extensions/1003/forwarding", json={"always": "not a number"}
                            ).status_code == 422


def test_budgets_show_spend_and_a_new_limit_applies_at_once(web: Web, users: dict[str, Session]) -> None:
    admin, manager = users["admin"], users["manager"]
    shown = manager.get("/api/budgets").json()
    assert [(b["kind"], b["name"]) for b in shown["budgets"]] == [("department", "sales")]
    assert admin.request("PUT", "/api/budgets/department/sales", json={"amount": "35000000"}).status_code == 200
    sales = [b for b in admin.get("/api/budgets").json()["budgets"] if b["rule"] == "budgets.departments.sales"]
    assert sales[0]["limit_minor"] == 35_000_000
    before = web.dialplan.read_text()
    wrong = admin.request("PUT", "/api/budgets/department/nowhere", json={"amount": "100"})
    assert wrong.status_code == 422 and web.dialplan.read_text() == before
    assert admin.request("PUT", "/api/budgets/department/sales", json={"amount": "12.5"}).status_code == 422


def test_call_records_by_account_code_owner_within_the_readers_scope(web: Web, users: dict[str, Session],
                                                                     engine: Engine) -> None:
    may = datetime(2025, 5, 6, 2, 0, tzinfo=UTC)  # a month no other test here writes
    owner = "Trần Văn Sáu"
    rows = [cdr_row(started_at=may, department="sales", caller="1003", answered_after=2, billsec=30, cost=100,
                    code="1"),
            cdr_row(started_at=may + timedelta(minutes=1), department="accounting", caller="1008", answered_after=2,
                    billsec=30, cost=100, code="2"),
            cdr_row(started_at=may + timedelta(minutes=2), department="sales", caller="1004", answered_after=2,
                    billsec=30, cost=100, code="3"),
            cdr_row(started_at=may + timedelta(minutes=3), department="sales", caller="1004", answered_after=None,
                    billsec=0, cost=None)]
    # One insert of many rows takes its columns from the first: every row names the same ones.
    for row, code_owner, hunt_group in zip(rows, (owner, owner, "Someone Else", None), (None, None, "500", None),
                                           strict=True):
        row.update(account_owner=code_owner, hunt_group=hunt_group)
    with engine.begin() as conn:
        conn.execute(insert(CDR), rows)
    month = {"since": "2025-05-01", "until": "2025-05-31"}

    def callers(role: str, path: str, **params: str) -> list[str]:
        answer = users[role].get(path, params={**month, **params})
        assert answer.status_code == 200, answer.text
        return [row["caller_number"] for row in answer.json()["rows"]]

    assert callers("admin", "/api/cdr") == ["1004", "1004", "1008", "1003"]
    # Pages, newest first, and the other filters.
    first = users["admin"].get("/api/cdr", params={**month, "limit": "2"}).json()
    assert ([r["caller_number"] for r in first["rows"]], first["next_offset"]) == (["1004", "1004"], 2)
    second = users["admin"].get("/api/cdr", params={**month, "limit": "2", "offset": "2"}).json()
    assert ([r["caller_number"] for r in second["rows"]], second["next_offset"]) == (["1008", "1003"], None)
    assert second["rows"][1]["started_at"] == "2025-05-06T09:00:00+07:00"  # the office's time zone
    assert callers("admin", "/api/cdr", disposition="NO_ANSWER") == ["1004"]
    assert callers("admin", "/api/cdr", department="accounting") == ["1008"]
    assert callers("admin", "/api/cdr", hunt_group="500") == ["1004"]
    assert callers("admin", "/api/cdr", extension="1003") == ["1003"]
    assert users["admin"].get("/api/cdr", params={"since": "last tuesday"}).status_code == 422
    assert callers("admin", "/api/cdr", code_owner=owner) == ["1008", "1003"]
    # The owner narrows the reader's scope, never widens it.
    assert callers("manager", "/api/cdr", code_owner=owner) == ["1003"]
    assert callers("employee", "/api/cdr", code_owner="Someone Else") == []
    csv_rows = users["admin"].get("/api/cdr.csv", params={**month, "code_owner": owner}).text.splitlines()
    assert len(csv_rows) == 3 and all(owner in line for line in csv_rows[1:])

    # The search form as a browser sends it: every field, the empty ones too.
    form = {"since": "", "until": "", "extension": "", "department": "", "disposition": "", "hunt_group": "",
            "code_owner": ""}
    empty = users["admin"].get("/cdr", params=form)
    assert empty.status_code == 200, empty.text
    found = users["admin"].get("/cdr", params={**form, **month, "code_owner": owner})
    assert found.status_code == 200 and found.text.count('class="cdr-row"') == 2
    assert f'value="{owner}"' in found.text and "code_owner=" in found.text.split('id="csv-download"')[0]


def test_group_members_and_agents_change_in_the_running_server(web: Web, users: dict[str, Session]) -> None:
    admin, branch = users["admin"], users["branch_admin"]
    added = admin.post("/api/groups/factory/members", json={"short": "608", "name": "Bùi Văn Tám",
                                                            "mobile": "0987000208"})
    assert added.status_code == 201, added.text
    members = {m["short"]: m for g in admin.get("/api/groups").json() if g["key"] == "factory" for m in g["members"]}
    assert members["608"]["mobile"] == "0987000208"  # the running server's plan, reloaded
    assert "608: {name: Bùi Văn Tám" in (web.dialplan.parent / "groups" / "factory.yaml").read_text()
    # A short number that collides with an extension is refused, the file untouched.
    before = (web.dialplan.parent / "groups" / "factory.yaml").read_text()
    clash = admin.post("/api/groups/factory/members", json={"short": "1003", "name": "Clash", "mobile": "0987000209"})
    assert clash.status_code == 422 and (web.dialplan.parent / "groups" / "factory.yaml").read_text() == before
    assert admin.request("DELETE", "/api/groups/factory/members/608").status_code == 200
    assert "608" not in {m["short"] for g in admin.get("/api/groups").json() for m in g["members"]}

    def logged_in(member: str) -> bool:
        group = [g for g in admin.get("/api/hunt-groups").json() if g["number"] == "500"][0]
        return bool([m for m in group["members"] if m["member"] == member][0]["logged_in"])

    assert logged_in("1004")
    assert branch.post("/api/hunt-groups/500/agents/1004", json={"logged_in": False}).status_code == 200
    assert not logged_in("1004")
    assert branch.post("/api/hunt-groups/500/agents/1004", json={"logged_in": True}).status_code == 200
    assert logged_in("1004")
    assert admin.post("/api/hunt-groups/500/agents/1008", json={"logged_in": True}).status_code == 404


def test_dialplan_check_and_reload_keep_the_running_plan_when_the_file_is_broken(
        web: Web, users: dict[str, Session]) -> None:
    admin = users["admin"]
    assert admin.post("/api/dialplan/check").json()["ok"] is True
    good = web.dialplan.read_text()
    try:
        web.dialplan.write_text(good.replace("timezone: Asia/Ho_Chi_Minh", "timezone: Mars/Olympus_Mons"))
        checked = admin.post("/api/dialplan/check").json()
        assert checked["ok"] is False
        assert any(re.search(r"example\.yaml:\d+:\d+: .*Mars/Olympus_Mons", e) for e in checked["errors"])
        refused = admin.post("/api/dialplan/reload").json()
        assert refused["applied"] is False and refused["unchanged"] is False and refused["errors"]
        assert admin.get("/api/extensions/1003").status_code == 200  # still serving the plan it had
    finally:
        web.dialplan.write_text(good)
    # The file as the server has it: nothing to apply, nothing wrong.
    assert admin.post("/api/dialplan/reload").json() == {"applied": False, "unchanged": True, "errors": []}
    reloads = [e for e in admin.get("/api/audit").json() if e["action"] == "dialplan.reload"]
    assert [(e["actor"], e["detail"]["applied"]) for e in reloads[:2]] == [("admin", False), ("admin", False)]


def test_an_extension_name_with_a_line_break_is_refused(web: Web, users: dict[str, Session]) -> None:
    # Names are shown on phones inside a SIP header.
    admin = users["admin"]
    assert admin.post("/api/extensions", json={"number": "1791", "name": "Mai\r\nX-Injected: yes",
                                               "department": "sales"}).status_code == 422
    assert admin.request("PATCH", "/api/extensions/1004", json={"name": "Dung\nX: y"}).status_code == 422
    assert admin.post("/extensions", data={"number": "1792", "name": "Form\r\nX: y", "department": "sales"}
                      ).status_code == 422
    assert "1791" not in web.dialplan.read_text() and "1792" not in web.dialplan.read_text()
    assert admin.post("/api/extensions", json={"number": "1793", "name": 'Tú "Út" Lê', "department": "sales"}
                      ).status_code == 201
