"""A real ``pbx serve --http`` for the web tests, and an HTTP client that
logs in as a browser does (session cookie + CSRF token) or uses a token."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.server import REPO_ROOT, RunningServer, run_server

_WEB = re.compile(r"web console (https?://\S+)/")
_PASSWORD = re.compile(r"one-time password (\S+) ")


@dataclass
class Web:
    server: RunningServer
    base: str
    admin_password: str
    dialplan: Path
    db_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=20.0)

    def login(self, username: str, password: str) -> Session:
        client = self.client()
        answer = client.post("/api/login", json={"username": username, "password": password})
        assert answer.status_code == 200, answer.text
        # httpx, like a browser, keeps a Secure cookie off plain http to
        # 127.0.0.1; send it by hand as the browser would over https.
        cookie = answer.headers["set-cookie"].split(";")[0]
        return Session(client, {"Cookie": cookie}, answer.json()["csrf_token"])

    def bearer(self, token: str) -> Session:
        return Session(self.client(), {"Authorization": f"Bearer {token}"}, None)


@dataclass
class Session:
    http: httpx.Client
    headers: dict[str, str]
    csrf: str | None

    def request(self, method: str, path: str, *, csrf: bool = True, headers: dict[str, str] | None = None,
                **kwargs: Any) -> httpx.Response:
        sent = dict(self.headers)
        if csrf and self.csrf is not None:
            sent["X-CSRF-Token"] = self.csrf
        sent.update(headers or {})
        return self.http.request(method, path, headers=sent, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def copy_example(directory: Path) -> Path:
    """The example dialplan (and its members files) in ``directory``."""
    shutil.copytree(REPO_ROOT / "dialplans", directory, dirs_exist_ok=True)
    return directory / "example.yaml"


@contextmanager
def start_web(directory: Path, dialplan: Path | None = None,
              listens: tuple[str, ...] = ("udp:127.0.0.1:0",), extra_args: tuple[str, ...] = ()) -> Iterator[Web]:
    directory.mkdir(parents=True, exist_ok=True)
    plan = dialplan or copy_example(directory / "dialplan")
    db_url = f"sqlite:///{directory / 'pbx.sqlite3'}"
    with run_server(plan, db_url, list(listens), ("--http", "127.0.0.1:0", *extra_args)) as server:
        line = server.wait_lines("web console http", timeout=30)[0]
        password_line = server.wait_lines("one-time password", timeout=5)[0]
        base = _WEB.search(line)
        password = _PASSWORD.search(password_line)
        assert base is not None and password is not None
        yield Web(server, base.group(1), password.group(1), plan, db_url)


ROLE_PASSWORD = "correct horse battery"


def sessions_per_role(web: Web) -> dict[str, Session]:
    """A logged-in session for each role: the admin, a branch admin and a
    manager of ``sales``, and an employee at 1003 (sales); each user's
    password is :data:`ROLE_PASSWORD`."""
    admin = web.login("admin", web.admin_password)
    for body in ({"username": "sales-admin", "role": "branch_admin", "departments": ["sales"]},
                 {"username": "sales-manager", "role": "manager", "departments": ["sales"]},
                 {"username": "chau", "role": "employee", "extension": "1003"}):
        answer = admin.post("/api/users", json={**body, "password": ROLE_PASSWORD})
        assert answer.status_code == 201, answer.text
    return {"admin": admin, "branch_admin": web.login("sales-admin", ROLE_PASSWORD),
            "manager": web.login("sales-manager", ROLE_PASSWORD), "employee": web.login("chau", ROLE_PASSWORD)}
