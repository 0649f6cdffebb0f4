"""tiers: member tiers, tier history, growth-value ledger

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import memberops.db.base

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('loyalty_growth_movement',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.Column('source_type', sa.String(length=16), nullable=False),
    sa.Column('source_id', sa.String(length=200), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('occurred_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_loyalty_growth_movement_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_loyalty_growth_movement_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loyalty_growth_movement')),
    sa.UniqueConstraint('workspace_id', 'idempotency_key', name=op.f('uq_loyalty_growth_movement_workspace_id_idempotency_key'))
    )
    with op.batch_alter_table('loyalty_growth_movement', schema=None) as batch_op:
        batch_op.create_index('ix_loyalty_growth_movement_member_id_occurred_at', ['member_id', 'occurred_at'], unique=False)

    op.create_table('loyalty_member_tier',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('tier', sa.String(length=32), nullable=False),
    sa.Column('since', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('programme_version', sa.Integer(), nullable=False),
    sa.Column('updated_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_loyalty_member_tier_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_loyalty_member_tier_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loyalty_member_tier')),
    sa.UniqueConstraint('workspace_id', 'member_id', name=op.f('uq_loyalty_member_tier_workspace_id_member_id'))
    )
    op.create_table('loyalty_tier_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('from_tier', sa.String(length=32), nullable=True),
    sa.Column('to_tier', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('metric_value', sa.String(length=32), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('programme_version', sa.Integer(), nullable=False),
    sa.Column('at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_loyalty_tier_history_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_loyalty_tier_history_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loyalty_tier_history'))
    )
    with op.batch_alter_table('loyalty_tier_history', schema=None) as batch_op:
        batch_op.create_index('ix_loyalty_tier_history_member_id_id', ['member_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('loyalty_tier_history', schema=None) as batch_op:
        batch_op.drop_index('ix_loyalty_tier_history_member_id_id')

    op.drop_table('loyalty_tier_history')
    op.drop_table('loyalty_member_tier')
    with op.batch_alter_table('loyalty_growth_movement', schema=None) as batch_op:
        batch_op.drop_index('ix_loyalty_growth_movement_member_id_occurred_at')

    op.drop_table('loyalty_growth_movement')
