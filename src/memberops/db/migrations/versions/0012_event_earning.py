"""event earning: the events a loyalty programme rewarded (event id once, caps, streaks)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import memberops.db.base

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('loyalty_event_earning',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('event_key', sa.String(length=200), nullable=False),
    sa.Column('occurred_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('local_day', sa.String(length=10), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('streak', sa.Integer(), nullable=False),
    sa.Column('movement_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_loyalty_event_earning_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_loyalty_event_earning_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loyalty_event_earning')),
    sa.UniqueConstraint('workspace_id', 'event_key', name=op.f('uq_loyalty_event_earning_workspace_id_event_key'))
    )
    with op.batch_alter_table('loyalty_event_earning', schema=None) as batch_op:
        batch_op.create_index('ix_loyalty_event_earning_member_id_event_type_local_day', ['member_id', 'event_type', 'local_day'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('loyalty_event_earning', schema=None) as batch_op:
        batch_op.drop_index('ix_loyalty_event_earning_member_id_event_type_local_day')

    op.drop_table('loyalty_event_earning')
