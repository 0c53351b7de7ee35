"""scoped keys, key lineage, login sessions, the acting key in the audit log

Revision ID: 0003
Revises: 0002

Keys that exist before this revision get the default scopes, inference and models:read, and every
model: they keep serving predictions, but lose what any key could do before (create and revoke
keys, and, for an admin's key, the admin endpoints), since a key leaked before the upgrade must not
keep those rights. Tokens issued before it carry no login session and are refused: users log in again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# Frozen here: what "the default scopes" meant when this revision was written.
_EXISTING_KEYS_SCOPES = '["inference", "models:read"]'
_EXISTING_KEYS_MODELS = '["*"]'


def upgrade() -> None:
    op.create_table('login_sessions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('refresh_jti', sa.String(length=64), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_login_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_sessions'))
    )
    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_sessions_user_id'), ['user_id'], unique=False)

    # The server defaults fill the existing rows, and serve the workers of the previous release that
    # still insert keys during a rolling upgrade.
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scopes', sa.JSON(), server_default=sa.text(f"'{_EXISTING_KEYS_SCOPES}'"), nullable=False))
        batch_op.add_column(sa.Column('models', sa.JSON(), server_default=sa.text(f"'{_EXISTING_KEYS_MODELS}'"), nullable=False))
        batch_op.add_column(sa.Column('parent_key_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('login_session_id', sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f('ix_api_keys_parent_key_id'), ['parent_key_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_api_keys_login_session_id'), ['login_session_id'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_api_keys_parent_key_id_api_keys'), 'api_keys', ['parent_key_id'], ['id'], ondelete='SET NULL'
        )
        batch_op.create_foreign_key(
            batch_op.f('fk_api_keys_login_session_id_login_sessions'), 'login_sessions', ['login_session_id'], ['id'],
            ondelete='SET NULL',
        )

    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actor_key_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_column('actor_key_id')

    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_api_keys_login_session_id_login_sessions'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_api_keys_parent_key_id_api_keys'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_api_keys_login_session_id'))
        batch_op.drop_index(batch_op.f('ix_api_keys_parent_key_id'))
        batch_op.drop_column('login_session_id')
        batch_op.drop_column('parent_key_id')
        batch_op.drop_column('models')
        batch_op.drop_column('scopes')

    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_sessions_user_id'))
        batch_op.drop_index(batch_op.f('ix_login_sessions_expires_at'))

    op.drop_table('login_sessions')
