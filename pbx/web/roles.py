"""Who may do what in the console and the API. Pure: no HTTP, no database.

Four roles, from the issue:

- ``admin``: everything.
- ``branch_admin``: the extensions, calls, reports and live state of their
  departments; creates, changes, suspends and forwards extensions there;
  manages the account codes of their departments; sees hunt groups and
  sets agents' state; no users, tokens, webhooks, budgets' limits,
  metrics, dialplan reloads or security blocks.
- ``manager``: reads the calls, reports, budgets and extensions of their
  departments; changes nothing.
- ``employee``: their own extension, calls and usage; sets their own
  extension's forwarding (as the phone's ``*72`` does).

Every route names one :class:`Permission`; :func:`allowed` is the one place
that answers it, and :class:`Scope` narrows what a permitted reader sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal, get_args

Role = Literal["admin", "branch_admin", "manager", "employee"]
ROLE_NAMES: tuple[str, ...] = get_args(Role)


class Permission(Enum):
    EXTENSIONS_READ = "extensions.read"
    EXTENSIONS_WRITE = "extensions.write"
    DEPARTMENTS_READ = "departments.read"
    GROUPS_READ = "groups.read"
    GROUPS_WRITE = "groups.write"
    HUNT_READ = "hunt.read"
    HUNT_WRITE = "hunt.write"
    CDR_READ = "cdr.read"
    LIVE_READ = "live.read"
    SECURITY_READ = "security.read"
    DIALPLAN_ADMIN = "dialplan.admin"
    USERS_ADMIN = "users.admin"
    """Console users, API tokens, webhooks and the audit log."""
    CODES_ADMIN = "codes.admin"
    """Account codes: create (shown once), list owners, disable, rotate, remove."""
    REPORTS_READ = "reports.read"
    FORWARDING_WRITE = "forwarding.write"
    BUDGETS_READ = "budgets.read"
    BUDGETS_WRITE = "budgets.write"
    METRICS_READ = "metrics.read"


_GRANTS: Mapping[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "branch_admin": frozenset({
        Permission.EXTENSIONS_READ, Permission.EXTENSIONS_WRITE, Permission.DEPARTMENTS_READ,
        Permission.GROUPS_READ, Permission.HUNT_READ, Permission.HUNT_WRITE, Permission.CDR_READ,
        Permission.LIVE_READ, Permission.CODES_ADMIN, Permission.REPORTS_READ, Permission.FORWARDING_WRITE,
        Permission.BUDGETS_READ,
    }),
    "manager": frozenset({
        Permission.EXTENSIONS_READ, Permission.DEPARTMENTS_READ, Permission.HUNT_READ, Permission.CDR_READ,
        Permission.LIVE_READ, Permission.REPORTS_READ, Permission.BUDGETS_READ,
    }),
    "employee": frozenset({Permission.EXTENSIONS_READ, Permission.CDR_READ, Permission.LIVE_READ,
                           Permission.REPORTS_READ, Permission.FORWARDING_WRITE}),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Whoever makes a request: a logged-in user, or a token acting as one."""

    user_id: int
    username: str
    role: Role
    departments: frozenset[str] = frozenset()
    extension: str | None = None
    token: str | None = None
    """The API token's name when the request came with one."""
    language: str | None = None
    """The user's own UI language (en, vi, zh); None: the browser's."""

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return f"token:{self.token} ({self.username})" if self.token else self.username


def allowed(principal: Principal, permission: Permission) -> bool:
    return permission in _GRANTS[principal.role]


@dataclass(frozen=True, slots=True)
class Scope:
    """What a reader sees: everything, some departments, or one extension.

    Departments and extensions are both given so a call between two
    departments shows to the managers of both: a call belongs to a scope if
    its caller is in it, or the number it reached is.
    """

    everything: bool
    departments: frozenset[str] = frozenset()
    extensions: frozenset[str] = frozenset()

    def covers_extension(self, number: str | None, department: str | None) -> bool:
        if self.everything:
            return True
        return (number is not None and number in self.extensions) or (
            department is not None and department in self.departments)


def scope_of(principal: Principal, extension_departments: Mapping[str, str]) -> Scope:
    """The scope of ``principal``, given each extension's department."""
    if principal.role == "admin":
        return Scope(True)
    if principal.role == "employee":
        own = frozenset({principal.extension}) if principal.extension else frozenset()
        return Scope(False, frozenset(), own)
    numbers = frozenset(n for n, d in extension_departments.items() if d in principal.departments)
    return Scope(False, principal.departments, numbers)


def may_write_department(principal: Principal, department: str) -> bool:
    """Whether ``principal`` may create or change extensions of ``department``."""
    if not allowed(principal, Permission.EXTENSIONS_WRITE):
        return False
    return principal.role == "admin" or department in principal.departments


def may_manage_code(principal: Principal, department: str | None) -> bool:
    """Whether ``principal`` may see and change a code of ``department``
    (a code of no department is the admin's alone)."""
    if not allowed(principal, Permission.CODES_ADMIN):
        return False
    return principal.role == "admin" or (department is not None and department in principal.departments)


def may_forward(principal: Principal, number: str, department: str) -> bool:
    """Whether ``principal`` may set extension ``number``'s forwarding: an
    employee their own, a branch admin their departments', an admin any."""
    if not allowed(principal, Permission.FORWARDING_WRITE):
        return False
    if principal.role == "employee":
        return principal.extension == number
    return principal.role == "admin" or department in principal.departments


def parse_departments(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def join_departments(keys: Iterable[str]) -> str:
    return ",".join(sorted(set(keys)))
