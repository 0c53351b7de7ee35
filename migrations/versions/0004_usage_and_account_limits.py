"""usage rollups, per-account monthly quota and rate limit overrides, usage:read in the default scopes

Revision ID: 0004
Revises: 0003

Keys that exist before this revision keep their scopes: a key gains no right it was not created
with, so reading usage needs a new key (whose default scopes include usage:read) or a password login.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# Frozen here: what "the default scopes" mean from this revision on, and meant before it.
_DEFAULT_SCOPES = '["inference", "models:read", "usage:read"]'
_PREVIOUS_DEFAULT_SCOPES = '["inference", "models:read"]'


def upgrade() -> None:
    op.create_table('usage_rollups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('credential', sa.String(length=48), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('family', sa.String(length=16), nullable=False),
    sa.Column('requests', sa.BigInteger(), nullable=False),
    sa.Column('items', sa.BigInteger(), nullable=False),
    sa.Column('cached_items', sa.BigInteger(), nullable=False),
    sa.Column('tokens', sa.BigInteger(), nullable=False),
    sa.Column('model_ms', sa.Double(), nullable=False),
    sa.CheckConstraint("family IN ('predict', 'batch', 'embeddings', 'v2')", name=op.f('ck_usage_rollups_family')),
    sa.ForeignKeyConstraint(['account_id'], ['users.id'], name=op.f('fk_usage_rollups_account_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_rollups')),
    sa.UniqueConstraint('account_id', 'day', 'credential', 'model', 'model_version', 'family', name=op.f('uq_usage_rollups_cell'))
    )
    with op.batch_alter_table('usage_rollups', schema=None) as batch_op:
        batch_op.create_index('ix_usage_rollups_day', ['day'], unique=False)

    op.create_table('usage_flushes',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('flushed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_flushes'))
    )
    with op.batch_alter_table('usage_flushes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_usage_flushes_flushed_at'), ['flushed_at'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('monthly_quota', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('rate_limit', sa.String(length=64), nullable=True))

    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.alter_column('scopes', existing_type=sa.JSON(), existing_nullable=False,
                              server_default=sa.text(f"'{_DEFAULT_SCOPES}'"))


def downgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.alter_column('scopes', existing_type=sa.JSON(), existing_nullable=False,
                              server_default=sa.text(f"'{_PREVIOUS_DEFAULT_SCOPES}'"))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('rate_limit')
        batch_op.drop_column('monthly_quota')

    with op.batch_alter_table('usage_flushes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_usage_flushes_flushed_at'))
    op.drop_table('usage_flushes')

    with op.batch_alter_table('usage_rollups', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_rollups_day')
    op.drop_table('usage_rollups')
