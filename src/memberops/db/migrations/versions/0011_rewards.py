"""rewards: the rewards catalogue (points mall), reward versions, members' reward redemptions

Revision ID: 0011
Revises: 0010 (written by another engineer; until it is on main this tree has a gap — chain onto 0009 to test alone)
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import memberops.db.base

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reward',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('cash_amount', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('stock', sa.Integer(), nullable=True),
    sa.Column('redeemed_count', sa.Integer(), nullable=False),
    sa.Column('per_member_limit', sa.Integer(), nullable=True),
    sa.Column('period_limit', sa.Integer(), nullable=True),
    sa.Column('limit_period', sa.String(length=8), nullable=True),
    sa.Column('valid_from', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('valid_until', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('tiers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('coupon_template_id', sa.String(length=36), nullable=True),
    sa.Column('benefit_id', sa.String(length=36), nullable=True),
    sa.Column('benefit_quantity', sa.Integer(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['benefit_id'], ['benefit_definition.id'], name=op.f('fk_reward_benefit_id_benefit_definition')),
    sa.ForeignKeyConstraint(['coupon_template_id'], ['coupon_template.id'], name=op.f('fk_reward_coupon_template_id_coupon_template')),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_reward_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reward')),
    sa.UniqueConstraint('workspace_id', 'code', name=op.f('uq_reward_workspace_id_code'))
    )
    op.create_table('reward_redemption',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('reward_id', sa.String(length=36), nullable=False),
    sa.Column('reward_version', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('cash_amount', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('fulfilment_status', sa.String(length=16), nullable=True),
    sa.Column('fulfilment_note', sa.String(length=200), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('points_movement_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reversal_movement_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('coupon_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('benefit_grant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('redeemed_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('fulfilment_updated_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['benefit_grant_id'], ['benefit_grant.id'], name=op.f('fk_reward_redemption_benefit_grant_id_benefit_grant')),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_reward_redemption_member_id_member')),
    sa.ForeignKeyConstraint(['points_movement_id'], ['points_movement.id'], name=op.f('fk_reward_redemption_points_movement_id_points_movement')),
    sa.ForeignKeyConstraint(['reversal_movement_id'], ['points_movement.id'], name=op.f('fk_reward_redemption_reversal_movement_id_points_movement')),
    sa.ForeignKeyConstraint(['reward_id'], ['reward.id'], name=op.f('fk_reward_redemption_reward_id_reward')),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_reward_redemption_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reward_redemption')),
    sa.UniqueConstraint('workspace_id', 'idempotency_key', name=op.f('uq_reward_redemption_workspace_id_idempotency_key'))
    )
    with op.batch_alter_table('reward_redemption', schema=None) as batch_op:
        batch_op.create_index('ix_reward_redemption_member_id_redeemed_at', ['member_id', 'redeemed_at'], unique=False)
        batch_op.create_index('ix_reward_redemption_reward_id_member_id', ['reward_id', 'member_id'], unique=False)

    op.create_table('reward_version',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('reward_id', sa.String(length=36), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('definition', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['reward_id'], ['reward.id'], name=op.f('fk_reward_version_reward_id_reward'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reward_version')),
    sa.UniqueConstraint('reward_id', 'version', name=op.f('uq_reward_version_reward_id_version'))
    )


def downgrade() -> None:
    op.drop_table('reward_version')
    with op.batch_alter_table('reward_redemption', schema=None) as batch_op:
        batch_op.drop_index('ix_reward_redemption_reward_id_member_id')
        batch_op.drop_index('ix_reward_redemption_member_id_redeemed_at')

    op.drop_table('reward_redemption')
    op.drop_table('reward')
