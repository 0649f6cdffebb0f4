"""qualifying orders: imported orders as spend and order-count tiers count them (paid, refunded, buyer);
members by the member that absorbed them (a tier counts the orders of members merged into it)

Revision ID: 0019
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import memberops.db.base

revision = '0019'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('loyalty_qualifying_order',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('ordered_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('paid_amount', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('refunded_amount', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('updated_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_loyalty_qualifying_order_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_loyalty_qualifying_order_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loyalty_qualifying_order')),
    sa.UniqueConstraint('workspace_id', 'channel', 'order_id', name=op.f('uq_loyalty_qualifying_order_workspace_id_channel_order_id'))
    )
    with op.batch_alter_table('loyalty_qualifying_order', schema=None) as batch_op:
        batch_op.create_index('ix_loyalty_qualifying_order_member_id_ordered_at', ['member_id', 'ordered_at'], unique=False)
    with op.batch_alter_table('member', schema=None) as batch_op:
        batch_op.create_index('ix_member_merged_into_id', ['merged_into_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('member', schema=None) as batch_op:
        batch_op.drop_index('ix_member_merged_into_id')
    with op.batch_alter_table('loyalty_qualifying_order', schema=None) as batch_op:
        batch_op.drop_index('ix_loyalty_qualifying_order_member_id_ordered_at')
    op.drop_table('loyalty_qualifying_order')
