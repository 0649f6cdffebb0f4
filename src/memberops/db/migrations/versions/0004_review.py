"""review: pairs of identity records waiting for an operator's decision

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import memberops.db.base

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('review_pair',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('channel_a', sa.String(length=32), nullable=False),
    sa.Column('source_id_a', sa.String(length=200), nullable=False),
    sa.Column('channel_b', sa.String(length=32), nullable=False),
    sa.Column('source_id_b', sa.String(length=200), nullable=False),
    sa.Column('match_probability', sa.Double(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('decided_by', sa.String(length=100), nullable=True),
    sa.Column('decided_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_review_pair_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_pair')),
    sa.UniqueConstraint('workspace_id', 'channel_a', 'source_id_a', 'channel_b', 'source_id_b', name=op.f('uq_review_pair_workspace_id_channel_a_source_id_a_channel_b_source_id_b'))
    )
    with op.batch_alter_table('review_pair', schema=None) as batch_op:
        batch_op.create_index('ix_review_pair_workspace_id_status', ['workspace_id', 'status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('review_pair', schema=None) as batch_op:
        batch_op.drop_index('ix_review_pair_workspace_id_status')

    op.drop_table('review_pair')
