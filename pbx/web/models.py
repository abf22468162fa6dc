"""Tables of the web console and HTTP API: who may log in, their sessions,
integration tokens, webhooks and the audit log.

Secrets are never stored as given: passwords as argon2 hashes, session and
API tokens as their SHA-256 (a token is 256 random bits, so a plain hash is
enough; the hash is what the database is searched by). Only a webhook's
signing secret is kept as is, because the PBX must sign with it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pbx.store.models import Base, BigId

ROLES: tuple[str, ...] = ("admin", "branch_admin", "manager", "employee")


class WebUser(Base):
    """A person who logs in to the console (or owns API tokens)."""

    __tablename__ = "web_users"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'branch_admin', 'manager', 'employee')", name="role"),
        {"comment": "Console users and their roles."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Surrogate key.")
    username: Mapped[str] = mapped_column(String(64), unique=True, comment="Log-in name.")
    password_hash: Mapped[str] = mapped_column(String(255), comment="argon2id hash (PHC string).")
    role: Mapped[str] = mapped_column(String(16), comment="admin, branch_admin, manager or employee.")
    departments: Mapped[str] = mapped_column(
        String(1024), default="", comment="Comma-separated department keys a branch_admin or manager covers.")
    extension: Mapped[str | None] = mapped_column(String(16), comment="An employee's own extension.")
    language: Mapped[str | None] = mapped_column(String(8), comment="UI language (vi, zh, en); NULL: the browser's.")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, comment="A disabled user cannot log in.")
    created_at: Mapped[datetime] = mapped_column(comment="UTC instant the user was created.")


class WebSession(Base):
    """A logged-in browser: the cookie holds the token, the table its hash."""

    __tablename__ = "web_sessions"
    __table_args__ = (
        Index("ix_web_sessions_expires_at", "expires_at"),
        CheckConstraint("expires_at > created_at", name="expires_after_created"),
        {"comment": "Console log-in sessions."},
    )

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True, comment="SHA-256 hex of the cookie.")
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), comment="Who.")
    csrf_token: Mapped[str] = mapped_column(String(64), comment="Token every form and htmx request must echo.")
    created_at: Mapped[datetime] = mapped_column(comment="UTC instant of the log-in.")
    expires_at: Mapped[datetime] = mapped_column(comment="UTC instant the session ends.")


class ApiToken(Base):
    """A bearer token for an integration; it acts with its owner's role."""

    __tablename__ = "api_tokens"
    __table_args__ = ({"comment": "API tokens for integrations (HR, CRM)."},)

    id: Mapped[int] = mapped_column(primary_key=True, comment="Surrogate key.")
    name: Mapped[str] = mapped_column(String(64), comment="What the token is for, e.g. crm.")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, comment="SHA-256 hex of the token.")
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), comment="Acts as.")
    created_at: Mapped[datetime] = mapped_column(comment="UTC instant it was made.")
    last_used_at: Mapped[datetime | None] = mapped_column(comment="UTC instant it was last used.")
    revoked_at: Mapped[datetime | None] = mapped_column(comment="UTC instant it was revoked; NULL: valid.")


class Webhook(Base):
    """An address told about every call's end (CRM screen-pop, missed-call follow-up)."""

    __tablename__ = "webhooks"
    __table_args__ = ({"comment": "Webhooks called with each call's end."},)

    id: Mapped[int] = mapped_column(primary_key=True, comment="Surrogate key.")
    url: Mapped[str] = mapped_column(String(2048), comment="http(s) URL POSTed to.")
    secret: Mapped[str] = mapped_column(String(128), comment="HMAC-SHA256 key of the X-PBX-Signature header.")
    active: Mapped[bool] = mapped_column(Boolean, default=True, comment="False: not called.")
    created_at: Mapped[datetime] = mapped_column(comment="UTC instant it was added.")


class AuditEntry(Base):
    """One change made through the console, the API or the LDAP sync."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        {"comment": "Who changed what, when."},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, comment="Surrogate key.")
    at: Mapped[datetime] = mapped_column(comment="UTC instant of the change.")
    actor: Mapped[str] = mapped_column(String(128), comment="username, token:<name>, or ldap-sync.")
    action: Mapped[str] = mapped_column(String(64), comment="What was done, e.g. extension.create.")
    target: Mapped[str] = mapped_column(String(255), comment="What it was done to, e.g. 1042.")
    detail: Mapped[str] = mapped_column(Text, default="", comment="JSON of the change; never a secret.")
    source: Mapped[str | None] = mapped_column(String(64), comment="Client address, if over HTTP.")
