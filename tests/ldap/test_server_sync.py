"""The directory sync inside a running ``pbx serve --http``, against a real
OpenLDAP server: the periodic sync (``ldap.interval``) and the API's
``/api/dialplan/ldap-sync``. Checked where it takes effect: the running
server's extensions, a SIP REGISTER with the password the API handed out,
and the audit log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ldap.slapd import ADMIN_PASSWORD, PEOPLE, Slapd, available, run_slapd, sync_plan, user_ldif
from tests.sipclient import SipClient
from tests.web.harness import Session, Web, start_web

pytestmark = pytest.mark.skipif(not available(), reason="needs Debian's slapd and ldap-utils (make deps)")

DOMAIN = "ldap.example.com"


def _plan(directory: Path, slapd: Slapd, interval: int) -> Path:
    return sync_plan(directory, slapd.ldap_url, interval=interval)


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    with run_slapd(tmp_path / "slapd") as server:
        yield server


def _until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def _extensions(admin: Session) -> dict[str, dict[str, Any]]:
    return {e["number"]: e for e in admin.get("/api/extensions").json()}


def _registers(web: Web, number: str, password: str) -> int | None:
    with SipClient("udp", ("127.0.0.1", web.server.udp_port)) as phone:
        answer = phone.register(number, password, DOMAIN)
    return answer.status if answer is not None else None


def test_the_server_syncs_the_directory_every_interval(slapd: Slapd, tmp_path: Path) -> None:
    slapd.ldif(user_ldif("4000", "Lê Văn Một", "Sales") + user_ldif("4001", "Phạm Thị Hai", "Sales", account_control=512)
               + user_ldif("4002", "Võ Văn Ba", "Support"))
    with start_web(tmp_path / "pbx", dialplan=_plan(tmp_path / "plan", slapd, interval=1)) as web:
        admin = web.login("admin", web.admin_password)
        made = _until(lambda: {"4000", "4001", "4002"} <= set(_extensions(admin)))
        assert made, sorted(_extensions(admin))
        shown = _extensions(admin)
        assert (shown["4002"]["department"], shown["4002"]["directory"], shown["4001"]["status"]) == (
            "support", True, "active")

        slapd.ldif(f"dn: uid=u4001,{PEOPLE}\nchangetype: modify\nreplace: userAccountControl\n"
                   "userAccountControl: 514\n\n"
                   f"dn: uid=u4002,{PEOPLE}\nchangetype: modify\nreplace: departmentNumber\n"
                   "departmentNumber: Sales\n", modify=True)
        changed = _until(lambda: (lambda e: e["4001"]["status"] == "suspended" and e["4002"]["department"] == "sales")(
            _extensions(admin)))
        assert changed, _extensions(admin)

        # Nobody watches the periodic sync: the admin collects the new
        # passwords once through the API, and a phone uses one.
        collected = admin.post("/api/dialplan/ldap-sync/passwords").json()["passwords"]
        passwords = {p["number"]: p["sip_password"] for p in collected}
        assert sorted(passwords) == ["4000", "4001", "4002"]
        assert admin.post("/api/dialplan/ldap-sync/passwords").json()["passwords"] == []  # once only
        password = passwords["4000"]
        assert _registers(web, "4000", password) == 200
        assert not web.server.lines_with(password)
        suspended = admin.post("/api/extensions/4001/password").json()["sip_password"]
        assert _registers(web, "4001", suspended) == 403  # the right password, but not in use

        # Removed from the directory: suspended too, never deleted.
        slapd.ldif(f"dn: uid=u4000,{PEOPLE}\nchangetype: delete\n", modify=True)
        assert _until(lambda: _extensions(admin)["4000"]["status"] == "suspended"), _extensions(admin)["4000"]
        assert _registers(web, "4000", password) == 403

        actions = {(e["actor"], e["action"], e["target"]) for e in admin.get("/api/audit").json()}
        assert {("ldap-sync", "ldap.create", "4000"), ("ldap-sync", "ldap.suspend", "4001"),
                ("ldap-sync", "ldap.update", "4002"), ("admin", "ldap.passwords_collected", "4000,4001,4002")} <= actions
        assert web.server.lines_with('"event":"ldap_sync_done"')
        assert not web.server.lines_with(ADMIN_PASSWORD)


def test_the_api_shows_the_diff_then_applies_it_and_hands_out_the_passwords_once(
        slapd: Slapd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The extension number in pager, the name in cn (the mapping in the
    # dialplan), the bind password in the server's environment.
    slapd.ldif(user_ldif("9100", "Đặng Văn Bốn", "Sales", pager="4100")
               + user_ldif("9101", "Hồ Thị Năm", "Support", pager="4101"))
    monkeypatch.setenv("PBX_TEST_LDAP_BIND", ADMIN_PASSWORD)
    plan = sync_plan(tmp_path / "plan", slapd.ldap_url, password_env="PBX_TEST_LDAP_BIND",
                     attributes="{extension: pager, name: cn}")
    assert ADMIN_PASSWORD not in plan.read_text()
    with start_web(tmp_path / "pbx", dialplan=plan) as web:
        admin = web.login("admin", web.admin_password)
        dry = admin.post("/api/dialplan/ldap-sync")
        assert dry.status_code == 200, dry.text
        assert [line.split(":")[0] for line in dry.json()["changes"]] == ["create 4100", "create 4101"]
        assert dry.json()["passwords"] == [] and "4100" not in _extensions(admin)

        done = admin.post("/api/dialplan/ldap-sync", params={"dry_run": "false"})
        assert done.status_code == 200, done.text
        passwords = {p["number"]: p["sip_password"] for p in done.json()["passwords"]}
        assert sorted(passwords) == ["4100", "4101"]
        assert _extensions(admin)["4101"]["department"] == "support"  # the running server reloaded
        assert _registers(web, "4100", passwords["4100"]) == 200
        assert _extensions(admin)["4100"]["name"] == "Đặng Văn Bốn" and "9100" not in _extensions(admin)

        again = admin.post("/api/dialplan/ldap-sync", params={"dry_run": "false"}).json()
        assert (again["changes"], again["passwords"]) == ([], [])
        entries = admin.get("/api/audit").json()
        assert {(e["actor"], e["action"], e["target"]) for e in entries} >= {
            ("ldap-sync (admin)", "ldap.create", "4100"), ("ldap-sync (admin)", "ldap.create", "4101")}
        assert passwords["4100"] not in str(entries)
        assert not web.server.lines_with(passwords["4100"]) and not web.server.lines_with(ADMIN_PASSWORD)


def test_a_reload_that_adds_the_ldap_section_starts_the_periodic_sync(slapd: Slapd, tmp_path: Path) -> None:
    slapd.ldif(user_ldif("4200", "Trịnh Văn Sáu", "Sales"))
    plan = _plan(tmp_path / "plan", slapd, interval=1)
    with_ldap = plan.read_text()
    plan.write_text(with_ldap[:with_ldap.index("ldap:")])  # started without the section
    with start_web(tmp_path / "pbx", dialplan=plan) as web:
        admin = web.login("admin", web.admin_password)
        assert "4200" not in _extensions(admin)
        plan.write_text(with_ldap)
        assert admin.post("/api/dialplan/reload").json()["applied"] is True
        assert _until(lambda: "4200" in _extensions(admin)), sorted(_extensions(admin))
