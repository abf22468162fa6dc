"""``pbx ldap sync`` against a real OpenLDAP server with 50 users, over
ldap:// and ldaps://: the first sync creates them, a department change and
a disabled account show after the next one, and the dry run lists exactly
those changes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.routing.loader import read_dialplan
from tests.ldap.slapd import ADMIN_PASSWORD, PEOPLE, Slapd, available, run_slapd, sync_plan, user_ldif
from tests.server import REPO_ROOT

pytestmark = pytest.mark.skipif(not available(), reason="needs Debian's slapd and ldap-utils (make deps)")

DEPARTMENTS = ("Sales", "Support")


def _dialplan(directory: Path, url: str, ca_file: Path) -> Path:
    return sync_plan(directory, url, ca_file=ca_file)


def _sync(plan: Path, db: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pbx", "ldap", "sync", "--dialplan", str(plan), "--db",
                           f"sqlite:///{db}", "--pid-file", str(db.parent / "none.pid"), *extra],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))


@pytest.fixture
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        server.ldif("".join(user_ldif(f"{2000 + i}", f"Nhân Viên {i:02d}", DEPARTMENTS[i % 2],
                                      account_control=512 if i % 5 == 0 else None) for i in range(50)))
        yield server


@pytest.mark.parametrize("secure", [False, True], ids=["ldap", "ldaps"])
def test_fifty_users_then_a_move_and_a_disabled_account(slapd: Slapd, tmp_path: Path, secure: bool) -> None:
    plan = _dialplan(tmp_path, slapd.ldaps_url if secure else slapd.ldap_url, slapd.ca_file)
    db = tmp_path / "pbx.sqlite3"
    first = _sync(plan, db)
    assert first.returncode == 0, first.stderr
    passwords = dict(re.findall(r"new extension (\d+): SIP password (\S+) \(shown once\)", first.stdout))
    assert len(passwords) == 50
    loaded = read_dialplan(plan).dialplan
    assert loaded is not None
    made = {n: e for n, e in loaded.extensions.items() if e.ldap_dn is not None}
    assert sorted(made) == [str(2000 + i) for i in range(50)]
    assert made["2003"].department == "support" and made["2003"].name == "Nhân Viên 03"
    assert made["2003"].email == "u2003@example.com" and made["2003"].mobile == "+84902003"
    assert made["2003"].password is None and made["2003"].ha1_md5 is not None  # no password in the files
    assert passwords["2003"] not in plan.read_text()
    assert ADMIN_PASSWORD not in first.stdout + first.stderr
    assert loaded.extensions["1000"].ldap_dn is None  # made by hand: never the sync's

    assert "nothing to change" in _sync(plan, db).stdout  # a second sync finds nothing to do

    moved, disabled = "2010", "2020"
    slapd.ldif(f"dn: uid=u{moved},{PEOPLE}\nchangetype: modify\nreplace: departmentNumber\n"
               f"departmentNumber: Support\n\n"
               f"dn: uid=u{disabled},{PEOPLE}\nchangetype: modify\nreplace: userAccountControl\n"
               "userAccountControl: 514\n", modify=True)
    dry = _sync(plan, db, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    changes = [line for line in dry.stdout.splitlines() if not line.startswith(("dry run", "skip"))]
    assert changes == [f"update {moved}: department 'sales' -> 'support'",
                       f"suspend {disabled}: disabled in the directory"]
    assert read_dialplan(plan).dialplan.extensions[moved].department == "sales"  # type: ignore[union-attr]

    done = _sync(plan, db)
    assert done.returncode == 0, done.stderr
    after = read_dialplan(plan).dialplan
    assert after is not None and after.extensions[moved].department == "support"
    # A disabled account is suspended, never deleted.
    assert after.extensions[disabled].status == "suspended"


def test_a_server_certificate_from_an_unknown_ca_is_refused(slapd: Slapd, tmp_path: Path) -> None:
    stranger = tmp_path / "other-ca.crt"
    import trustme

    trustme.CA().cert_pem.write_to_path(str(stranger))
    plan = _dialplan(tmp_path, slapd.ldaps_url, stranger)
    result = _sync(plan, tmp_path / "pbx.sqlite3", "--dry-run")
    assert result.returncode == 1
    assert "pbx ldap sync: LDAP ldaps://" in result.stderr and ADMIN_PASSWORD not in result.stderr


def test_short_numbers_in_the_directory_keep_a_groups_members(tmp_path: Path) -> None:
    with run_slapd(tmp_path / "slapd") as server:
        server.ldif("".join(user_ldif(f"{3000 + i}", f"Tài xế {i}", "Sales", pager=f"70{i}") for i in range(5)))
        plan = _dialplan(tmp_path, server.ldap_url, server.ca_file)
        (tmp_path / "field.yaml").write_text("# kept by hand too\n799: {name: Dispatcher, mobile: \"0909000799\"}\n")
        with plan.open("a") as out:
            out.write("  groups: {field: pager}\ngroups:\n  field:\n    name: Field\n    members_file: field.yaml\n")
        db = tmp_path / "pbx.sqlite3"
        first = _sync(plan, db)
        assert first.returncode == 0, first.stderr
        field = read_dialplan(plan).dialplan.groups["field"]  # type: ignore[union-attr]
        assert {s: (m.name, m.extension) for s, m in field.members.items()} == {
            **{f"70{i}": (f"Tài xế {i}", f"{3000 + i}") for i in range(5)}, "799": ("Dispatcher", None)}
        assert "# kept by hand too" in (tmp_path / "field.yaml").read_text()

        server.ldif(f"dn: uid=u3001,{PEOPLE}\nchangetype: modify\nreplace: pager\npager: 711\n\n"
                    f"dn: uid=u3002,{PEOPLE}\nchangetype: modify\nreplace: displayName\ndisplayName: Tài xế Hai\n\n"
                    f"dn: uid=u3003,{PEOPLE}\nchangetype: modify\nreplace: pager\npager: 799\n", modify=True)
        dry = _sync(plan, db, "--dry-run")
        changes = [line for line in dry.stdout.splitlines() if not line.startswith(("dry run", "skip"))]
        assert changes == ["update 3002: name 'Tài xế 2' -> 'Tài xế Hai'",
                           "member field/711: Tài xế 1 (extension 3001), moved from 701",
                           "member field/702: name 'Tài xế 2' -> 'Tài xế Hai'"]
        assert "skip uid=u3003" in dry.stdout and "799 is Dispatcher's" in dry.stdout
        assert _sync(plan, db).returncode == 0
        field = read_dialplan(plan).dialplan.groups["field"]  # type: ignore[union-attr]
        assert sorted(field.members) == ["700", "702", "703", "704", "711", "799"]
        assert field.members["702"].name == "Tài xế Hai" and field.members["799"].name == "Dispatcher"
