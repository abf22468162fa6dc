"""Web console and HTTP API: ``web_users``, ``web_sessions``, ``api_tokens``,
``webhooks`` and ``audit_log``.

Revision ID: 0010_web
Revises: 0007
Create Date: 2026-12-20

Written as a frozen snapshot (no imports from pbx). The revision number
leaves room for the account-code, cost and feature migrations being written
beside it; whoever merges them chains this one after the last.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_web"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False, comment='Surrogate key.'),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False, comment='UTC instant of the change.'),
    sa.Column('actor', sa.String(length=128), nullable=False, comment='username, token:<name>, or ldap-sync.'),
    sa.Column('action', sa.String(length=64), nullable=False, comment='What was done, e.g. extension.create.'),
    sa.Column('target', sa.String(length=255), nullable=False, comment='What it was done to, e.g. 1042.'),
    sa.Column('detail', sa.Text(), nullable=False, comment='JSON of the change; never a secret.'),
    sa.Column('source', sa.String(length=64), nullable=True, comment='Client address, if over HTTP.'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    comment='Who changed what, when.'
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_at', ['at'], unique=False)

    op.create_table('web_users',
    sa.Column('id', sa.Integer(), nullable=False, comment='Surrogate key.'),
    sa.Column('username', sa.String(length=64), nullable=False, comment='Log-in name.'),
    sa.Column('password_hash', sa.String(length=255), nullable=False, comment='argon2id hash (PHC string).'),
    sa.Column('role', sa.String(length=16), nullable=False, comment='admin, branch_admin, manager or employee.'),
    sa.Column('departments', sa.String(length=1024), nullable=False, comment='Comma-separated department keys a branch_admin or manager covers.'),
    sa.Column('extension', sa.String(length=16), nullable=True, comment="An employee's own extension."),
    sa.Column('language', sa.String(length=8), nullable=True, comment="UI language (vi, zh, en); NULL: the browser's."),
    sa.Column('disabled', sa.Boolean(), nullable=False, comment='A disabled user cannot log in.'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False, comment='UTC instant the user was created.'),
    sa.CheckConstraint("role IN ('admin', 'branch_admin', 'manager', 'employee')", name=op.f('ck_web_users_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_users')),
    sa.UniqueConstraint('username', name=op.f('uq_web_users_username')),
    comment='Console users and their roles.'
    )
    op.create_table('webhooks',
    sa.Column('id', sa.Integer(), nullable=False, comment='Surrogate key.'),
    sa.Column('url', sa.String(length=2048), nullable=False, comment='http(s) URL POSTed to.'),
    sa.Column('secret', sa.String(length=128), nullable=False, comment='HMAC-SHA256 key of the X-PBX-Signature header.'),
    sa.Column('active', sa.Boolean(), nullable=False, comment='False: not called.'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False, comment='UTC instant it was added.'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhooks')),
    comment="Webhooks called with each call's end."
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False, comment='Surrogate key.'),
    sa.Column('name', sa.String(length=64), nullable=False, comment='What the token is for, e.g. crm.'),
    sa.Column('token_hash', sa.String(length=64), nullable=False, comment='SHA-256 hex of the token.'),
    sa.Column('user_id', sa.Integer(), nullable=False, comment='Acts as.'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False, comment='UTC instant it was made.'),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True, comment='UTC instant it was last used.'),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True, comment='UTC instant it was revoked; NULL: valid.'),
    sa.ForeignKeyConstraint(['user_id'], ['web_users.id'], name=op.f('fk_api_tokens_user_id_web_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash')),
    comment='API tokens for integrations (HR, CRM).'
    )
    op.create_table('web_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False, comment='SHA-256 hex of the cookie.'),
    sa.Column('user_id', sa.Integer(), nullable=False, comment='Who.'),
    sa.Column('csrf_token', sa.String(length=64), nullable=False, comment='Token every form and htmx request must echo.'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False, comment='UTC instant of the log-in.'),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False, comment='UTC instant the session ends.'),
    sa.CheckConstraint('expires_at > created_at', name=op.f('ck_web_sessions_expires_after_created')),
    sa.ForeignKeyConstraint(['user_id'], ['web_users.id'], name=op.f('fk_web_sessions_user_id_web_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_web_sessions')),
    comment='Console log-in sessions.'
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_web_sessions_expires_at', ['expires_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_web_sessions_expires_at')

    op.drop_table('web_sessions')
    op.drop_table('api_tokens')
    op.drop_table('webhooks')
    op.drop_table('web_users')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_at')

    op.drop_table('audit_log')
