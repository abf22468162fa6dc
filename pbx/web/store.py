"""Reading and writing the console's tables (synchronous: the HTTP routes
call it from worker threads, never on the SIP event loop)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pbx.web.credentials import hash_password, new_password, new_token, token_hash, verify_password
from pbx.web.models import ApiToken, AuditEntry, WebSession, WebUser, Webhook
from pbx.web.roles import ROLE_NAMES, Principal, Role, join_departments, parse_departments

SESSION_LIFETIME = timedelta(hours=12)
TOKEN_PREFIX = "pbx_"


class StoreError(ValueError):
    """The change was refused; the message says why (shown to the user)."""


class NoSuchUser(StoreError):
    """No console user of that name."""


USER_FIELDS = frozenset({"role", "departments", "extension", "language", "disabled"})
"""What :meth:`WebStore.update_user` may change (never the name or the hash)."""


def _check_role(role: str, departments: str, extension: str | None) -> None:
    if role not in ROLE_NAMES:
        raise StoreError(f"role must be one of {', '.join(ROLE_NAMES)}")
    if role in ("branch_admin", "manager") and not parse_departments(departments):
        raise StoreError(f"a {role} needs at least one department")
    if role == "employee" and not extension:
        raise StoreError("an employee needs their extension")


@dataclass(frozen=True, slots=True, kw_only=True)
class UserView:
    id: int
    username: str
    role: str
    departments: tuple[str, ...]
    extension: str | None
    language: str | None
    disabled: bool


def _principal(user: WebUser, token: str | None = None) -> Principal:
    return Principal(user_id=user.id, username=user.username, role=cast(Role, user.role),
                     departments=parse_departments(user.departments), extension=user.extension, token=token,
                     language=user.language)


def _view(user: WebUser) -> UserView:
    return UserView(id=user.id, username=user.username, role=user.role,
                    departments=tuple(sorted(parse_departments(user.departments))), extension=user.extension,
                    language=user.language, disabled=user.disabled)


class WebStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- users -------------------------------------------------------------

    def ensure_admin(self, now: datetime) -> str | None:
        """Create the ``admin`` user with a random password when there is no
        user at all; that password (to be shown once), else None."""
        with Session(self.engine) as session, session.begin():
            if session.scalar(select(WebUser.id).limit(1)) is not None:
                return None
            password = new_password()
            session.add(WebUser(username="admin", password_hash=hash_password(password), role="admin",
                                departments="", created_at=now, disabled=False))
            return password

    def create_user(self, *, username: str, password: str, role: str, now: datetime,
                    departments: tuple[str, ...] = (), extension: str | None = None,
                    language: str | None = None) -> UserView:
        _check_role(role, join_departments(departments), extension)
        user = WebUser(username=username, password_hash=hash_password(password), role=role,
                       departments=join_departments(departments), extension=extension, language=language,
                       disabled=False, created_at=now)
        try:
            with Session(self.engine) as session, session.begin():
                session.add(user)
                session.flush()
                return _view(user)
        except IntegrityError:
            raise StoreError(f"there is already a user {username!r}") from None

    def users(self) -> list[UserView]:
        with Session(self.engine) as session:
            return [_view(u) for u in session.scalars(select(WebUser).order_by(WebUser.username))]

    def find_user(self, username: str) -> UserView | None:
        with Session(self.engine) as session:
            user = session.scalar(select(WebUser).where(WebUser.username == username))
            return _view(user) if user is not None else None

    def update_user(self, username: str, changes: Mapping[str, Any]) -> UserView:
        """Change a user's role, departments, extension, language or
        ``disabled``; the result must still make sense for its role.
        Disabling ends the user's sessions (their tokens stop working too:
        every request checks the owner)."""
        unknown = set(changes) - USER_FIELDS
        if unknown:
            raise StoreError(f"cannot change {', '.join(sorted(unknown))}")
        with Session(self.engine) as session, session.begin():
            user = session.scalar(select(WebUser).where(WebUser.username == username))
            if user is None:
                raise NoSuchUser(f"no user {username!r}")
            for key, value in changes.items():
                setattr(user, key, join_departments(value) if key == "departments" else value)
            _check_role(user.role, user.departments, user.extension)
            if user.disabled:
                session.execute(delete(WebSession).where(WebSession.user_id == user.id))
            return _view(user)

    def check_password(self, username: str, password: str) -> Principal | None:
        with Session(self.engine) as session:
            user = session.scalar(select(WebUser).where(WebUser.username == username))
            ok = verify_password(user.password_hash if user is not None else None, password)
            if user is None or not ok or user.disabled:
                return None
            return _principal(user)

    def set_password(self, user_id: int, password: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(WebUser).where(WebUser.id == user_id)
                            .values(password_hash=hash_password(password)))
            # Everyone logged in as that user must log in again.
            session.execute(delete(WebSession).where(WebSession.user_id == user_id))

    def language_of(self, user_id: int) -> str | None:
        with Session(self.engine) as session:
            return session.scalar(select(WebUser.language).where(WebUser.id == user_id))

    # -- sessions ----------------------------------------------------------

    def open_session(self, principal: Principal, now: datetime) -> tuple[str, str]:
        """A new session for ``principal``: (cookie token, CSRF token)."""
        token, csrf = new_token(), new_token()
        with Session(self.engine) as session, session.begin():
            session.execute(delete(WebSession).where(WebSession.expires_at <= now))
            session.add(WebSession(token_hash=token_hash(token), user_id=principal.user_id, csrf_token=csrf,
                                   created_at=now, expires_at=now + SESSION_LIFETIME))
        return token, csrf

    def session_principal(self, token: str, now: datetime) -> tuple[Principal, str] | None:
        """The principal and CSRF token of a live session."""
        with Session(self.engine) as session:
            row = session.execute(
                select(WebUser, WebSession.csrf_token).join(WebSession, WebSession.user_id == WebUser.id)
                .where(WebSession.token_hash == token_hash(token), WebSession.expires_at > now)
            ).first()
            if row is None or row[0].disabled:
                return None
            return _principal(row[0]), row[1]

    def close_session(self, token: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))

    # -- API tokens --------------------------------------------------------

    def create_token(self, user_id: int, name: str, now: datetime) -> tuple[int, str]:
        """A new token acting as ``user_id``: (id, the token, shown once)."""
        token = new_token(TOKEN_PREFIX)
        row = ApiToken(name=name, token_hash=token_hash(token), user_id=user_id, created_at=now)
        with Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            return row.id, token

    def token_principal(self, token: str, now: datetime) -> Principal | None:
        with Session(self.engine) as session, session.begin():
            row = session.execute(
                select(WebUser, ApiToken).join(ApiToken, ApiToken.user_id == WebUser.id)
                .where(ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None))
            ).first()
            if row is None or row[0].disabled:
                return None
            row[1].last_used_at = now
            return _principal(row[0], token=row[1].name)

    def tokens(self) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            rows = session.execute(select(ApiToken, WebUser.username).join(WebUser)
                                   .order_by(ApiToken.id)).all()
            return [{"id": t.id, "name": t.name, "user": name, "created_at": t.created_at,
                     "last_used_at": t.last_used_at, "revoked": t.revoked_at is not None} for t, name in rows]

    def revoke_token(self, token_id: int, now: datetime) -> bool:
        with Session(self.engine) as session, session.begin():
            done = session.execute(update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
                                   .values(revoked_at=now))
            return bool(getattr(done, "rowcount", 0))

    # -- webhooks ----------------------------------------------------------

    def add_webhook(self, url: str, now: datetime) -> tuple[int, str]:
        """A new webhook: (id, its signing secret, shown once)."""
        secret = new_token()
        row = Webhook(url=url, secret=secret, active=True, created_at=now)
        with Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            return row.id, secret

    def webhooks(self) -> list[tuple[int, str, str, bool]]:
        """(id, url, secret, active) of every webhook."""
        with Session(self.engine) as session:
            return [(w.id, w.url, w.secret, w.active) for w in session.scalars(select(Webhook).order_by(Webhook.id))]

    def remove_webhook(self, webhook_id: int) -> bool:
        with Session(self.engine) as session, session.begin():
            done = session.execute(delete(Webhook).where(Webhook.id == webhook_id))
            return bool(getattr(done, "rowcount", 0))

    # -- audit log ---------------------------------------------------------

    def audit(self, *, actor: str, action: str, target: str, now: datetime, detail: dict[str, Any] | None = None,
              source: str | None = None) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(AuditEntry(at=now, actor=actor[:128], action=action, target=target[:255],
                                   detail=json.dumps(detail or {}, ensure_ascii=False, default=str),
                                   source=source))

    def audit_entries(self, limit: int = 200) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))
            return [{"at": e.at, "actor": e.actor, "action": e.action, "target": e.target,
                     "detail": json.loads(e.detail or "{}"), "source": e.source} for e in rows]
