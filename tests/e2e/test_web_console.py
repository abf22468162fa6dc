"""The web console in a real browser (Playwright driving Debian's chromium)
against a real ``pbx serve --http``, with pjsua2 phones.

An admin logs in, creates an extension and reads its SIP password off the
page; a phone registers with it and calls another; the dashboard shows the
call live, then the call-record search shows it, the CSV download has
its row, and the reports page counts it and draws the hours' chart. A manager of another department sees neither, on the page or
through the API. Each page's screenshot is kept as an artefact of the run:
in ``$PBX_TEST_ARTEFACTS/web-console/`` (default ``var/test-artefacts/``,
outside git), the last run's replacing the one before.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.phone import PhoneFactory
from tests.server import REPO_ROOT
from tests.web.harness import Web, start_web
from tests.web.test_webhook import Receiver


CHROMIUM = Path("/usr/bin/chromium")
DOMAIN = "pbx.example.com"
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make deps)")]


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    with start_web(tmp_path / "pbx", listens=("udp:127.0.0.1:0",)) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where chromium's sandbox cannot start.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def _log_in(browser: Browser, web: Web, username: str, password: str, login_shot: Path | None = None) -> Page:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(f"{web.base}/login")
    if login_shot is not None:
        page.screenshot(path=str(login_shot))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("#login-button")
    page.wait_for_url(f"{web.base}/")
    return page


def _metrics(text: str) -> dict[str, float]:
    """Prometheus text as {name with labels: value}."""
    return {name: float(value) for name, value in re.findall(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.MULTILINE)}


def _artefacts(name: str) -> Path:
    """An empty folder for this run's artefacts, kept after the run (a
    pytest tmp dir is removed a few runs later)."""
    root = Path(os.environ.get("PBX_TEST_ARTEFACTS") or REPO_ROOT / "var" / "test-artefacts")
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def test_admin_creates_an_extension_that_calls_and_shows_up_live_and_in_the_records(
        web: Web, browser: Browser, phones: PhoneFactory, tmp_path: Path) -> None:
    shots = _artefacts("web-console")
    page = _log_in(browser, web, "admin", web.admin_password)
    page.screenshot(path=str(shots / "dashboard.png"))

    page.goto(f"{web.base}/extensions")
    page.fill("#create-extension input[name=number]", "1050")
    page.fill("#create-extension input[name=name]", "Nguyễn Thị Mới")
    page.select_option("#create-extension select[name=department]", "sales")
    page.click("#create-extension button")
    password = page.text_content("#sip-password")
    page.screenshot(path=str(shots / "extension-created.png"))
    assert password and len(password) >= 12

    # A CRM's webhook hears of the call's end.
    crm = Receiver(failures=0)
    admin_api = web.login("admin", web.admin_password)
    assert admin_api.post("/api/webhooks", json={"url": crm.url}).status_code == 201

    registrar = f"127.0.0.1:{web.server.udp_port}"
    caller = phones("ext1050")
    assert caller.register("1050", password, DOMAIN, registrar)["code"] == 200
    callee = phones("ext1004")
    assert callee.register("1004", "demo-Dung-1004", DOMAIN, registrar, auto_answer=200)["code"] == 200
    call = caller.call(f"sip:1004@{registrar};transport=udp", transport="udp")
    caller.wait_for("media_state", 10.0, call=call, status="active")

    page.goto(f"{web.base}/")
    live = page.locator("#live-calls tr.live-call", has_text="1050")
    live.wait_for(timeout=10_000)
    assert "answered" in live.inner_text()
    assert page.text_content("#calls-now") == "1"
    page.screenshot(path=str(shots / "dashboard-live-call.png"))
    page.goto(f"{web.base}/live")
    assert "1050" in page.inner_text("#registrations")
    # The API's live state: the call with its answered leg, the phones with
    # the user agent pjsua2 sent.
    now = [c for c in admin_api.get("/api/live/calls").json() if c["caller"] == "1050"]
    assert [(c["dialled"], c["state"]) for c in now] == [("1004", "answered")]
    assert [(leg["target"], leg["state"]) for leg in now[0]["legs"] if leg["state"] == "answered"] == [
        ("1004", "answered")]
    agents = {r["extension"]: r["user_agent"] for r in admin_api.get("/api/live/registrations").json()}
    assert agents.keys() >= {"1050", "1004"} and all(agents[n] for n in ("1050", "1004"))
    during = _metrics(admin_api.get("/metrics").text)
    assert (during["pbx_calls_in_progress"], during["pbx_registrations"], during["pbx_calls_total"]) == (1, 2, 1)
    page.screenshot(path=str(shots / "live.png"))

    caller.hangup(call)
    callee.wait_call_state("DISCONNECTED", timeout=10.0)
    assert crm.done.wait(10.0)
    ended = json.loads(crm.received[0][1])
    crm.server.shutdown()
    assert (ended["event"], ended["caller"], ended["callee"], ended["disposition"]) == (
        "call.ended", "1050", "1004", "ANSWERED")
    page.goto(f"{web.base}/")
    page.locator("#live-calls tr.live-call").wait_for(state="detached", timeout=10_000)
    page.reload()
    assert (page.text_content("#calls-today"), page.text_content("#answer-rate")) == ("1", "100 %")
    after = _metrics(admin_api.get("/metrics").text)
    assert after["pbx_calls_in_progress"] == 0 and after["pbx_cdr_commit_seconds_count"] >= 1
    assert after['pbx_sip_responses_total{code="200"}'] >= 3  # the two REGISTERs and the INVITE at least
    page.screenshot(path=str(shots / "dashboard-after-call.png"))

    page.goto(f"{web.base}/cdr?extension=1050")
    row = page.locator("#cdr-rows tr.cdr-row").first
    for _ in range(20):  # the CDR's last write may lag the BYE by a moment
        if "ANSWERED" in row.inner_text():
            break
        page.wait_for_timeout(250)
        page.reload()
    assert "1050" in row.inner_text() and "1004" in row.inner_text() and "ANSWERED" in row.inner_text()
    page.screenshot(path=str(shots / "cdr.png"))

    with page.expect_download() as download_info:
        page.click("#csv-download")
    saved = tmp_path / "calls.csv"
    download_info.value.save_as(str(saved))
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    assert [(r["caller_number"], r["dialed_number"], r["disposition"]) for r in rows] == [
        ("1050", "1004", "ANSWERED")]

    # The reports page: the call counted for its caller, the hours' chart drawn.
    page.goto(f"{web.base}/reports?by=extension")
    assert "1050" in page.inner_text("#usage-rows")
    assert page.locator("#traffic-chart svg rect").count() == 48  # calls and answered, 24 hours each
    page.screenshot(path=str(shots / "reports.png"), full_page=True)

    for name in ("groups", "extensions"):
        page.goto(f"{web.base}/{name}")
        page.screenshot(path=str(shots / f"{name}.png"))

    # A manager of accounting: not the sales call, on the page or by the API.
    admin = admin_api
    made = admin.post("/api/users", json={"username": "kt-manager", "password": "accounting-manager-1",
                                          "role": "manager", "departments": ["accounting"]})
    assert made.status_code == 201, made.text
    manager_page = _log_in(browser, web, "kt-manager", "accounting-manager-1", login_shot=shots / "login.png")
    # The manager replaces the given password on the account page.
    manager_page.click("#account-link")
    manager_page.fill("#change-password input[name=current]", "accounting-manager-1")
    manager_page.fill("#change-password input[name=new]", "kt-manager-own-42")
    manager_page.fill("#change-password input[name=repeat]", "kt-manager-own-42")
    manager_page.click("#change-password button")
    manager_page.locator("#password-changed").wait_for(timeout=10_000)
    manager_page.screenshot(path=str(shots / "account.png"))
    manager_page.goto(f"{web.base}/cdr")
    assert "1050" not in manager_page.inner_text("#cdr-rows")
    manager_page.goto(f"{web.base}/cdr?extension=1050")
    assert "1050" not in manager_page.inner_text("main")
    manager_page.screenshot(path=str(shots / "manager-cdr.png"))
    manager = web.login("kt-manager", "kt-manager-own-42")
    assert manager.get("/api/cdr").json()["rows"] == []
    assert manager.get("/api/cdr?department=sales").status_code == 403
    assert manager.get("/api/cdr?extension=1050").status_code == 403
    assert admin.get("/api/cdr?department=sales").json()["rows"][0]["caller_number"] == "1050"
    assert sorted(p.name for p in shots.iterdir()) == sorted(
        ["dashboard.png", "extension-created.png", "dashboard-live-call.png", "dashboard-after-call.png", "live.png", "cdr.png", "reports.png",
         "groups.png", "extensions.png", "manager-cdr.png", "login.png", "account.png"])
