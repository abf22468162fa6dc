"""The loader's part for ``ldap:`` (the directory employees are read from):
checks with positions, then the model (:mod:`pbx.ldap.settings`).

Checks: the bind password comes from a file or an environment variable,
not both, and never from the dialplan itself (a dialplan is shown to
people and kept in version control); a bind DN without a password source
(or the reverse) is refused; the departments the directory's values map to
exist; the short-number groups whose members it keeps exist and keep
their members in a ``members_file`` (the only members the sync may write).
"""

from __future__ import annotations

from typing import Any, Final

from pbx.ldap.settings import LdapAttributes, LdapSettings
from pbx.routing.loader_common import DataPath, Merged, Place, Report, check_reference, section_of


def check_ldap(plan: Merged, root: Place, report: Report) -> None:
    data = section_of(plan, "ldap")
    if not data:
        return
    path: DataPath = ("ldap",)
    if "password_file" in data and "password_env" in data:
        report(plan.key_place((*path, "password_env"), root),
               "ldap: give the bind password in password_file or password_env, not both")
    has_password = "password_file" in data or "password_env" in data
    if "bind_dn" in data and not has_password:
        report(plan.key_place((*path, "bind_dn"), root),
               "ldap: bind_dn needs password_file or password_env (the password is never written in the dialplan)")
    if has_password and "bind_dn" not in data:
        given = "password_file" if "password_file" in data else "password_env"
        report(plan.key_place((*path, given), root), "ldap: a bind password without bind_dn")
    departments = section_of(plan, "departments")
    check_reference(plan, (*path, "default_department"), departments, "department", "ldap", root, report)
    mapping = data.get("departments")
    if isinstance(mapping, dict):
        for value in mapping:
            check_reference(plan, (*path, "departments", value), departments, "department",
                            f"ldap department {value!r}", root, report)
    groups = data.get("groups")
    if isinstance(groups, dict):
        known = section_of(plan, "groups")
        for key in groups:
            if key not in known:
                report(plan.key_place((*path, "groups", key), root),
                       f"ldap groups: no short-number group {key!r} (groups: {', '.join(sorted(known)) or 'none'})")
            elif not isinstance(known[key], dict) or "members_file" not in known[key]:
                report(plan.key_place((*path, "groups", key), root),
                       f"ldap groups: group {key!r} lists its members in the dialplan; give it a members_file "
                       "for the sync to keep")


CHECKS: Final = (check_ldap,)


def build_ldap(plan: Merged) -> LdapSettings | None:
    data = section_of(plan, "ldap")
    if not data:
        return None
    fields: dict[str, Any] = {key: str(data[key]) for key in (
        "url", "base_dn", "bind_dn", "password_file", "password_env", "filter", "ca_file", "default_department")
        if key in data}
    for key in ("interval", "timeout"):
        if key in data:
            fields[key] = int(data[key])
    attributes = data.get("attributes") or {}
    return LdapSettings(
        attributes=LdapAttributes(**{k: str(v) for k, v in attributes.items()}),
        departments={str(k): str(v) for k, v in (data.get("departments") or {}).items()},
        groups={str(k): str(v) for k, v in (data.get("groups") or {}).items()},
        **fields,
    )
