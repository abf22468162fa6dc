"""The dialplan's ``ldap:`` section as a model (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True, kw_only=True)
class LdapAttributes:
    """Which directory attribute holds each field of an extension.

    The defaults fit Active Directory and OpenLDAP's inetOrgPerson alike;
    ``disabled`` is AD's userAccountControl, whose bit 2 (0x2) marks an
    account disabled; on OpenLDAP it is simply absent.
    """

    extension: str = "telephoneNumber"
    name: str = "displayName"
    department: str = "departmentNumber"
    email: str = "mail"
    mobile: str = "mobile"
    disabled: str = "userAccountControl"


@dataclass(frozen=True, slots=True, kw_only=True)
class LdapSettings:
    url: str
    """``ldap://host[:port]`` or ``ldaps://host[:port]``."""
    base_dn: str
    bind_dn: str | None = None
    password_file: str | None = None
    """A file holding the bind password (its first line); read at each sync."""
    password_env: str | None = None
    """Or an environment variable holding it."""
    filter: str = "(objectClass=person)"
    ca_file: str | None = None
    """CA certificates to check an ldaps:// server's certificate against;
    None: the system's."""
    interval: int = 0
    """Seconds between syncs in the running server; 0: only ``pbx ldap sync``."""
    timeout: int = 10
    attributes: LdapAttributes = field(default_factory=LdapAttributes)
    departments: Mapping[str, str] = field(default_factory=dict)
    """Directory department value -> department key."""
    default_department: str | None = None
    """Department of users whose directory value maps to none; None: such
    users are skipped (and reported)."""
    groups: Mapping[str, str] = field(default_factory=dict)
    """Short-number group key -> the attribute holding a user's short
    number in that group (``pager``, AD's ``ipPhone``); the sync adds and
    updates those members in the group's members file."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "departments", MappingProxyType(dict(self.departments)))
        object.__setattr__(self, "groups", MappingProxyType(dict(self.groups)))
