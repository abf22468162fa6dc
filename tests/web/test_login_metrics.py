"""Log-in lock-out, pages, health and metrics on a real ``pbx serve --http``."""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.sipclient import SipClient
from tests.web.harness import Web, start_web


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    with start_web(tmp_path_factory.mktemp("web")) as running:
        yield running


@pytest.fixture(scope="module")
def metrics_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """A server of its own: the lock-out test above blocks the admin's log-in on ``web``."""
    with start_web(tmp_path_factory.mktemp("metrics")) as running:
        yield running


def test_guessing_a_password_is_locked_out_and_the_real_password_then_waits(web: Web) -> None:
    with web.client() as client:
        codes = [client.post("/api/login", json={"username": "admin", "password": f"guess-{i}"}).status_code
                 for i in range(7)]
        assert codes[:4] == [401] * 4
        assert codes[4:] == [429] * 3  # the fifth failure blocks the pair
        # Blocked: even the right password is not checked again for a while.
        right = client.post("/api/login", json={"username": "admin", "password": web.admin_password})
        assert right.status_code == 429
    lines = web.server.lines_with(web.admin_password)
    assert len(lines) == 1, "the one-time password is printed once, and never logged"


def test_login_page_sets_a_secure_http_only_cookie(tmp_path_factory: pytest.TempPathFactory) -> None:
    with start_web(tmp_path_factory.mktemp("fresh")) as web, web.client() as client:
        page = client.get("/login")
        assert page.status_code == 200 and 'name="password"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        wrong = client.post("/login", data={"username": "admin", "password": "nope"})
        assert wrong.status_code == 401 and 'id="login-error"' in wrong.text
        done = client.post("/login", data={"username": "admin", "password": web.admin_password},
                           follow_redirects=False)
        assert done.status_code == 303
        cookie = done.headers["set-cookie"]
        assert cookie.startswith("__Host-pbx_session=")
        for flag in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
            assert flag in cookie
        session = {"Cookie": cookie.split(";")[0]}
        for path in ("/", "/extensions", "/groups", "/cdr", "/live"):
            assert client.get(path, headers=session).status_code == 200, path
        assert client.get("/cdr", follow_redirects=False).status_code == 303  # no session: to the log-in
        vietnamese = client.get("/", headers={**session, "Accept-Language": "vi-VN,vi;q=0.9"})
        assert "Cuộc gọi hôm nay" in vietnamese.text
        chinese = client.get("/", headers={**session, "Cookie": session["Cookie"] + "; lang=zh"})
        assert "今日通话" in chinese.text


def _options(port: int) -> bytes:
    branch = "z9hG4bK" + uuid.uuid4().hex[:12]
    return (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;rport;branch={branch}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def test_metrics_count_sip_responses_and_health_says_ready(metrics_web: Web) -> None:
    web = metrics_web
    admin = web.login("admin", web.admin_password)
    with web.client() as client:
        assert client.get("/healthz").text == "ok\n"
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"ready": True, "database": True, "sip_sockets": True}

        def responses_200() -> float:
            text = admin.get("/metrics").text
            found = re.search(r'^pbx_sip_responses_total\{code="200"\} (\S+)$', text, re.MULTILINE)
            return float(found.group(1)) if found else 0.0

        before = responses_200()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(5)
            for _ in range(3):
                udp.sendto(_options(web.server.udp_port), ("127.0.0.1", web.server.udp_port))
                assert udp.recv(4096).startswith(b"SIP/2.0 200")
        assert responses_200() == before + 3
        text = admin.get("/metrics").text
        for name in ("pbx_registrations", "pbx_calls_in_progress", "pbx_calls_total", "pbx_sip_retransmissions_total",
                     "pbx_cdr_writer_queue", "pbx_cdr_commit_seconds_bucket", "pbx_lockout_blocks",
                     "pbx_lockouts_total"):
            assert re.search(rf"^{name}(\{{[^}}]*\}})? ", text, re.MULTILINE), name


def test_metrics_need_an_admin_unless_opened_to_this_machine(metrics_web: Web,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    web = metrics_web
    with web.client() as client:
        assert client.get("/metrics").status_code == 401
    admin = web.login("admin", web.admin_password)
    made = admin.post("/api/users", json={"username": "metrics-manager", "password": "metrics-manager-1",
                                          "role": "manager", "departments": ["sales"]})
    assert made.status_code == 201, made.text
    assert web.login("metrics-manager", "metrics-manager-1").get("/metrics").status_code == 403
    token = admin.post("/api/tokens", json={"name": "prometheus"}).json()["token"]
    scraped = web.bearer(token).get("/metrics")
    assert scraped.status_code == 200 and "pbx_registrations" in scraped.text
    # Started to let a local scraper in: no token needed from 127.0.0.1.
    with start_web(tmp_path_factory.mktemp("open"), extra_args=("--metrics-open-on-loopback",)) as opened, \
            opened.client() as client:
        answer = client.get("/metrics")
        assert answer.status_code == 200 and "pbx_registrations" in answer.text
        assert client.get("/api/extensions").status_code == 401  # only /metrics is opened


def test_live_state_shows_phones_with_their_user_agent_and_the_lockouts_blocks(metrics_web: Web) -> None:
    web = metrics_web
    admin = web.login("admin", web.admin_password)
    made = admin.post("/api/users", json={"username": "live-employee", "password": "live-employee-1",
                                          "role": "employee", "extension": "1003"})
    assert made.status_code == 201, made.text
    employee = web.login("live-employee", "live-employee-1")
    server = ("127.0.0.1", web.server.udp_port)
    with SipClient("udp", server) as desk, SipClient("udp", server) as guesser:
        answer = desk.register("1004", "demo-Dung-1004", "pbx.example.com", user_agent="Yealink SIP-T46S 66.86")
        assert answer is not None and answer.status == 200
        shown = [r for r in admin.get("/api/live/registrations").json() if r["extension"] == "1004"]
        assert [(r["user_agent"], r["source"]) for r in shown] == [
            ("Yealink SIP-T46S 66.86", f"127.0.0.1:{desk.local[1]}")]
        assert all(r["extension"] == "1003" for r in employee.get("/api/live/registrations").json())

        # Guessing 1005's password from one address: the SIP lock-out
        # blocks that pair, and the admin sees the block.
        for attempt in range(12):
            guesser.register("1005", f"guess-{attempt}", "pbx.example.com")
        blocks = admin.get("/api/live/blocks").json()
        assert [(b["source"], b["username"]) for b in blocks] == [("127.0.0.1", "1005")]
        assert blocks[0]["failures"] >= 10 and blocks[0]["until"] > time.time()
        assert re.search(r"^pbx_lockout_blocks 1\.0$", admin.get("/metrics").text, re.MULTILINE)
        assert employee.get("/api/live/blocks").status_code == 403


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_a_user_changes_their_password_on_the_account_page(metrics_web: Web) -> None:
    web = metrics_web
    admin = web.login("admin", web.admin_password)
    assert admin.post("/api/users", json={"username": "page-user", "password": "page-user-old-1", "role": "employee",
                                          "extension": "1003"}).status_code == 201
    with web.client() as client:
        done = client.post("/login", data={"username": "page-user", "password": "page-user-old-1"},
                           follow_redirects=False)
        old = {"Cookie": done.headers["set-cookie"].split(";")[0]}
        page = client.get("/account", headers=old)
        assert page.status_code == 200 and 'id="change-password"' in page.text and 'id="account-link"' in page.text
        form = {"csrf_token": _csrf(page.text), "current": "page-user-old-1", "new": "page-user-new-2",
                "repeat": "page-user-new-2"}
        assert client.post("/account/password", headers=old, data={**form, "csrf_token": "forged"}).status_code == 403
        differ = client.post("/account/password", headers=old, data={**form, "repeat": "something-else"})
        assert differ.status_code == 422 and 'id="password-error"' in differ.text
        wrong = client.post("/account/password", headers=old, data={**form, "current": "not-my-password"})
        assert wrong.status_code == 403 and 'id="password-error"' in wrong.text
        changed = client.post("/account/password", headers=old, data=form)
        assert changed.status_code == 200 and 'id="password-changed"' in changed.text
        new = {"Cookie": changed.headers["set-cookie"].split(";")[0]}
        assert client.get("/account", headers=old, follow_redirects=False).status_code == 303  # old session gone
        assert client.get("/account", headers=new).status_code == 200
        assert _csrf(changed.text) != form["csrf_token"]  # the page's forms carry the new session's token
        vietnamese = client.get("/account", headers={**new, "Accept-Language": "vi"})
        assert "Đổi mật khẩu" in vietnamese.text
    assert web.login("page-user", "page-user-new-2").get("/api/me").json()["username"] == "page-user"


def test_the_api_reference_page_lists_every_operation_without_scripts(metrics_web: Web) -> None:
    with metrics_web.client() as client:
        document = client.get("/api/openapi.json").json()
        page = client.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # Nothing the page's own policy would block, nothing from the Internet.
    assert "<script" not in page.text and "https://" not in page.text
    listed = set(re.findall(r'<tr class="operation"><td><code>(\w+)</code></td><td><code>([^<]+)</code>', page.text))
    expected = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert listed == expected and ("GET", "/api/cdr") in listed
    assert "code_owner" in page.text  # parameters shown with the operation


def test_the_users_own_language_and_the_switcher(metrics_web: Web) -> None:
    web = metrics_web
    admin = web.login("admin", web.admin_password)
    assert admin.post("/api/users", json={"username": "lang-user", "password": "lang-user-pass-1", "role": "employee",
                                          "extension": "1003", "language": "zh"}).status_code == 201
    user = web.login("lang-user", "lang-user-pass-1")
    assert "今日通话" in user.get("/", headers={"Accept-Language": "en"}).text  # the account's own language
    switched = user.get("/", headers={"Accept-Language": "en", "Cookie": user.headers["Cookie"] + "; lang=vi"})
    assert "Cuộc gọi hôm nay" in switched.text  # what was picked in this browser wins
    assert admin.request("PATCH", "/api/users/lang-user", json={"language": "en"}).status_code == 200
    assert "Calls today" in user.get("/", headers={"Accept-Language": "vi"}).text  # the change holds at once

    with web.client() as client:
        def switch(referer: str) -> str:
            answer = client.get("/lang/vi", headers={"Referer": referer}, follow_redirects=False)
            assert answer.status_code == 303 and "lang=vi" in answer.headers["set-cookie"]
            return answer.headers["location"]

        assert switch(f"{web.base}/cdr?extension=1003") == "/cdr?extension=1003"  # back where it was clicked
        assert switch("http://evil.example/phish") == "/"
        assert switch(f"{web.base}//evil.example/phish") == "/"
        # A log-in is not a way to make the server hash a megabyte.
        assert client.post("/api/login", json={"username": "admin", "password": "x" * 1_000_000}).status_code == 422
