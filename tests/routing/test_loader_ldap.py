"""Loading ``ldap:`` and the extensions' directory fields: each problem at
its place (``pbx check``), the model from a good file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.ldap.settings import LdapAttributes
from pbx.routing.loader import check_dialplan, load_dialplan

BASE = """\
domain: pbx.example.com
departments:
  sales: {name: Sales}
extensions:
  1001: {name: An, department: sales, password: 'correct horse', email: an@example.com, mobile: "+84912345678"}
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return [str(problem).split(":", 1)[1] for problem in check_dialplan(path)]


def test_a_full_ldap_section_loads(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(BASE + """\
ldap:
  url: ldaps://dc1.example.com:636
  bind_dn: "CN=pbx,OU=Service,DC=example,DC=com"
  password_env: PBX_LDAP_PASSWORD
  base_dn: "OU=Staff,DC=example,DC=com"
  filter: "(&(objectClass=user)(ipPhone=*))"
  interval: 900
  attributes: {extension: ipPhone, department: department}
  departments: {"Kinh doanh": sales}
  default_department: sales
""")
    plan = load_dialplan(path)
    assert plan.extensions["1001"].email == "an@example.com" and plan.extensions["1001"].mobile == "+84912345678"
    ldap = plan.ldap
    assert ldap is not None and ldap.url == "ldaps://dc1.example.com:636" and ldap.interval == 900
    assert ldap.attributes == LdapAttributes(extension="ipPhone", department="department")
    assert dict(ldap.departments) == {"Kinh doanh": "sales"} and ldap.password_file is None
    assert load_dialplan(_write(tmp_path, BASE)).ldap is None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "other.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("section", "expected"), [
    ("  url: http://dc\n  base_dn: dc=x\n", "7:8: url 'http://dc' must be ldap://HOST[:PORT] or ldaps://HOST[:PORT]"),
    ("  url: ldap://dc\n  base_dn: dc=x\n  bind_dn: cn=pbx\n",
     "9:3: ldap: bind_dn needs password_file or password_env (the password is never written in the dialplan)"),
    ("  url: ldap://dc\n  base_dn: dc=x\n  bind_dn: cn=pbx\n  password_file: a\n  password_env: B\n",
     "11:3: ldap: give the bind password in password_file or password_env, not both"),
    ("  url: ldap://dc\n  base_dn: dc=x\n  password: hunter2\n", "9:3: unknown key 'password' in 'ldap'; did you mean 'password_env'?"),
    ("  url: ldap://dc\n  base_dn: dc=x\n  default_department: sale\n",
     "9:23: ldap names unknown department 'sale'; did you mean 'sales'?"),
    ("  url: ldap://dc\n  base_dn: dc=x\n  departments: {Bán hàng: nowhere}\n",
     "9:27: ldap department 'Bán hàng' names unknown department 'nowhere'"),
    ("  url: ldap://dc\n  base_dn: dc=x\n  filter: objectClass=person\n",
     "9:11: filter 'objectClass=person' must be an LDAP filter in parentheses, e.g. (objectClass=person)"),
])
def test_each_problem_at_its_place(tmp_path: Path, section: str, expected: str) -> None:
    found = problems(tmp_path, BASE + "ldap:\n" + section)
    assert found == [expected], found


def test_ldap_groups_name_groups_that_keep_a_members_file(tmp_path: Path) -> None:
    groups = """\
groups:
  office:
    members: {601: {name: An, extension: "1001"}}
  field:
    members_file: field.yaml
"""
    (tmp_path / "field.yaml").write_text("")
    found = problems(tmp_path, BASE + groups + """\
ldap:
  url: ldap://dc
  base_dn: dc=x
  groups: {field: pager, office: pager, nowhere: ipPhone}
""")
    assert found == [
        "14:26: ldap groups: group 'office' lists its members in the dialplan; give it a members_file for the "
        "sync to keep",
        "14:41: ldap groups: no short-number group 'nowhere' (groups: field, office)"]
    path = tmp_path / "plan.yaml"
    path.write_text(BASE + groups + "ldap:\n  url: ldap://dc\n  base_dn: dc=x\n  groups: {field: pager}\n")
    ldap = load_dialplan(path).ldap
    assert ldap is not None and dict(ldap.groups) == {"field": "pager"}
