"""A real OpenLDAP server (Debian's slapd) for the sync tests: started in a
temporary directory on free unprivileged ports, over ldap:// and ldaps://
(a certificate from a test CA made by trustme), with a tiny test schema
that adds Active Directory's userAccountControl, loaded with ldapadd."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.server import free_port

SLAPD = Path("/usr/sbin/slapd")
BASE = "dc=example,dc=com"
PEOPLE = f"ou=people,{BASE}"
ADMIN = f"cn=admin,{BASE}"
ADMIN_PASSWORD = "ldap-admin-secret-4711"

# The AD attribute, as an auxiliary class an inetOrgPerson can carry.
TEST_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'testAdAccount' SUP top AUXILIARY MAY ( userAccountControl ) )
"""


def available() -> bool:
    return SLAPD.exists() and shutil.which("ldapadd") is not None


@dataclass
class Slapd:
    directory: Path
    ldap_url: str
    ldaps_url: str
    ca_file: Path

    def ldif(self, text: str, *, modify: bool = False) -> None:
        tool = "ldapmodify" if modify else "ldapadd"
        subprocess.run([tool, "-x", "-H", self.ldap_url, "-D", ADMIN, "-w", ADMIN_PASSWORD],
                       input=text, text=True, check=True, capture_output=True, timeout=30)


def user_ldif(number: str, name: str, department: str, *, account_control: int | None = None,
              pager: str | None = None) -> str:
    lines = [f"dn: uid=u{number},{PEOPLE}", "objectClass: inetOrgPerson"]
    if account_control is not None:
        lines += ["objectClass: testAdAccount", f"userAccountControl: {account_control}"]
    lines += [f"uid: u{number}", f"cn: {name}", f"sn: {name.split()[-1]}", f"displayName: {name}",
              f"telephoneNumber: {number}", f"departmentNumber: {department}", f"mail: u{number}@example.com",
              f"mobile: +8490{number}"]
    if pager is not None:
        lines.append(f"pager: {pager}")  # the user's short number in a group (ldap.groups)
    return "\n".join(lines) + "\n\n"


@contextmanager
def run_slapd(directory: Path) -> Iterator[Slapd]:
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    data.mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(directory / "server.crt"))
    cert.private_key_pem.write_to_path(str(directory / "server.key"))
    ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    (directory / "test.schema").write_text(TEST_SCHEMA)
    config = directory / "slapd.conf"
    config.write_text(f"""\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {directory / 'test.schema'}
pidfile {directory / 'slapd.pid'}
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile {directory / 'server.crt'}
TLSCertificateKeyFile {directory / 'server.key'}
database mdb
maxsize 104857600
suffix "{BASE}"
rootdn "{ADMIN}"
rootpw {ADMIN_PASSWORD}
directory {data}
access to * by * read
""")
    plain, secure = free_port(), free_port()
    urls = f"ldap://127.0.0.1:{plain}/ ldaps://127.0.0.1:{secure}/"
    log = (directory / "slapd.log").open("w")
    process = subprocess.Popen([str(SLAPD), "-f", str(config), "-h", urls, "-d", "0"], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        server = Slapd(directory, f"ldap://127.0.0.1:{plain}", f"ldaps://127.0.0.1:{secure}",
                       directory / "ca.crt")
        deadline = time.monotonic() + 20
        while True:
            try:
                server.ldif(f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\n"
                            f"o: Example\n\ndn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n")
                break
            except subprocess.CalledProcessError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("slapd did not start: " + (directory / "slapd.log").read_text()) from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def sync_plan(directory: Path, url: str, *, ca_file: Path | None = None, interval: int = 0,
              password_env: str | None = None, attributes: str | None = None) -> Path:
    """A small dialplan (domain ldap.example.com, departments sales and
    support, a hand-made 1000) whose ``ldap:`` section reads this server
    as its admin: the bind password in a file beside it, or in the
    environment variable ``password_env``; ``attributes`` is the section's
    attribute mapping as YAML (default: none, the built-in one)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ldap.secret").write_text(ADMIN_PASSWORD + "\n")
    secret = f"password_env: {password_env}" if password_env else f"password_file: {directory / 'ldap.secret'}"
    extra = (f"  ca_file: {ca_file}\n" if ca_file is not None else "") + (
        f"  attributes: {attributes}\n" if attributes is not None else "")
    plan = directory / "plan.yaml"
    plan.write_text(f"""\
domain: ldap.example.com
departments:
  sales: {{name: Sales}}
  support: {{name: Support}}
extensions:
  1000: {{name: Reception, department: sales, password: "reception-1000"}}
ldap:
  url: {url}
  bind_dn: "{ADMIN}"
  {secret}
  base_dn: "{PEOPLE}"
  filter: "(objectClass=inetOrgPerson)"
""" + extra + f"""\
  interval: {interval}
  departments: {{Sales: sales, Support: support}}
""")
    return plan
