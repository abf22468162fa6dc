"""The ldap3 edge: bind and search, with the password from a file or the
environment. Blocking; the server runs it in a thread.

The bind password is read at each sync (so a rotated secret is picked up)
and never logged: errors are reported with ldap3's result text, which does
not hold it.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

from ldap3 import NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException

from pbx.ldap.settings import LdapSettings
from pbx.ldap.sync import DirectoryUser

PAGE_SIZE = 500


class DirectoryError(Exception):
    """The directory could not be read; the message says why (no secrets)."""


def bind_password(settings: LdapSettings) -> str | None:
    if settings.password_file is not None:
        try:
            text = Path(settings.password_file).read_text(encoding="utf-8")
        except OSError as err:
            raise DirectoryError(f"cannot read the LDAP password file {settings.password_file}: {err.strerror}") \
                from None
        return text.splitlines()[0] if text else ""
    if settings.password_env is not None:
        value = os.environ.get(settings.password_env)
        if value is None:
            raise DirectoryError(f"environment variable {settings.password_env} (the LDAP password) is not set")
        return value
    return None


def _first(entry: dict[str, Any], name: str) -> str | None:
    value = entry.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_users(settings: LdapSettings) -> list[DirectoryUser]:
    """Every entry under ``base_dn`` matching ``filter``."""
    tls = None
    if settings.url.startswith("ldaps://"):
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.ca_file,
                  version=ssl.PROTOCOL_TLS_CLIENT)
    # No schema read: AD and OpenLDAP differ, and a missing attribute (no
    # userAccountControl on OpenLDAP) is just absent from the entries.
    server = Server(settings.url, use_ssl=tls is not None, tls=tls, connect_timeout=settings.timeout, get_info=NONE)
    a = settings.attributes
    wanted = [a.extension, a.name, a.department, a.email, a.mobile, a.disabled, *settings.groups.values()]
    try:
        connection = Connection(server, user=settings.bind_dn, password=bind_password(settings),
                                receive_timeout=settings.timeout, raise_exceptions=True, read_only=True)
        with connection:
            entries = connection.extend.standard.paged_search(
                settings.base_dn, settings.filter, search_scope=SUBTREE, attributes=wanted,
                paged_size=PAGE_SIZE, generator=False)
            users = []
            for entry in entries:
                if entry.get("type") != "searchResEntry":
                    continue  # referrals
                attributes = entry.get("attributes", {})
                users.append(DirectoryUser(
                    dn=str(entry["dn"]), extension=_first(attributes, a.extension), name=_first(attributes, a.name),
                    department=_first(attributes, a.department), email=_first(attributes, a.email),
                    mobile=_first(attributes, a.mobile), account_control=_first(attributes, a.disabled),
                    short_numbers={group: value for group, attribute in settings.groups.items()
                                   if (value := _first(attributes, attribute)) is not None}))
            return users
    except LDAPException as err:
        raise DirectoryError(f"LDAP {settings.url}: {type(err).__name__}: {err}") from None
