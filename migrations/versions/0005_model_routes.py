"""model routes (weighted routing of a model's latest, sticky per account) and model reloads

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('model_routes',
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('weights', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('model', name=op.f('pk_model_routes'))
    )
    op.create_table('model_reloads',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('instance', sa.String(length=128), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('requested_by', sa.String(length=128), nullable=False),
    sa.Column('workers', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_reloads'))
    )
    with op.batch_alter_table('model_reloads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_reloads_instance'), ['instance'], unique=False)
    op.create_table('model_reload_results',
    sa.Column('reload_id', sa.String(length=36), nullable=False),
    sa.Column('worker', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('error', sa.String(length=2000), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['reload_id'], ['model_reloads.id'], name=op.f('fk_model_reload_results_reload_id_model_reloads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('reload_id', 'worker', name=op.f('pk_model_reload_results'))
    )


def downgrade() -> None:
    op.drop_table('model_reload_results')
    with op.batch_alter_table('model_reloads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_reloads_instance'))
    op.drop_table('model_reloads')
    op.drop_table('model_routes')
