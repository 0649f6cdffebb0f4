"""loyalty: programme versions, memberships, points ledger, lots, allocations, balance rows, loyalty events

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import memberops.db.base

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('loyalty_programme_version',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('definition', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_loyalty_programme_version_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loyalty_programme_version')),
    sa.UniqueConstraint('workspace_id', 'version', name=op.f('uq_loyalty_programme_version_workspace_id_version'))
    )
    op.create_table('loyalty_event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('occurred_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_loyalty_event_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_loyalty_event_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loyalty_event'))
    )
    with op.batch_alter_table('loyalty_event', schema=None) as batch_op:
        batch_op.create_index('ix_loyalty_event_workspace_id_id', ['workspace_id', 'id'], unique=False)

    op.create_table('loyalty_membership',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('programme_version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('birth_month', sa.Integer(), nullable=True),
    sa.Column('enrolled_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_loyalty_membership_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_loyalty_membership_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loyalty_membership')),
    sa.UniqueConstraint('workspace_id', 'member_id', name=op.f('uq_loyalty_membership_workspace_id_member_id'))
    )
    op.create_table('points_account',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('available', sa.Integer(), nullable=False),
    sa.Column('pending', sa.Integer(), nullable=False),
    sa.Column('debt', sa.Integer(), nullable=False),
    sa.Column('updated_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_points_account_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_points_account_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_account')),
    sa.UniqueConstraint('workspace_id', 'member_id', name=op.f('uq_points_account_workspace_id_member_id'))
    )
    op.create_table('points_movement',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('available_delta', sa.Integer(), nullable=False),
    sa.Column('pending_delta', sa.Integer(), nullable=False),
    sa.Column('debt_delta', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('source_type', sa.String(length=16), nullable=False),
    sa.Column('source_id', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('programme_version', sa.Integer(), nullable=True),
    sa.Column('reverses_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('outcome', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('occurred_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_points_movement_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reverses_id'], ['points_movement.id'], name=op.f('fk_points_movement_reverses_id_points_movement')),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_points_movement_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_movement')),
    sa.UniqueConstraint('workspace_id', 'idempotency_key', name=op.f('uq_points_movement_workspace_id_idempotency_key'))
    )
    with op.batch_alter_table('points_movement', schema=None) as batch_op:
        batch_op.create_index('ix_points_movement_member_id_id', ['member_id', 'id'], unique=False)
        batch_op.create_index('ix_points_movement_reverses_id', ['reverses_id'], unique=False)

    op.create_table('points_lot',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('movement_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('remaining', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('earned_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('available_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('warned_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_points_lot_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['movement_id'], ['points_movement.id'], name=op.f('fk_points_lot_movement_id_points_movement')),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_points_lot_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_lot'))
    )
    with op.batch_alter_table('points_lot', schema=None) as batch_op:
        batch_op.create_index('ix_points_lot_member_id_state', ['member_id', 'state'], unique=False)
        batch_op.create_index('ix_points_lot_workspace_id_available_at', ['workspace_id', 'state', 'available_at'], unique=False)
        batch_op.create_index('ix_points_lot_workspace_id_expires_at', ['workspace_id', 'expires_at'], unique=False)

    op.create_table('points_allocation',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('movement_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['points_lot.id'], name=op.f('fk_points_allocation_lot_id_points_lot')),
    sa.ForeignKeyConstraint(['movement_id'], ['points_movement.id'], name=op.f('fk_points_allocation_movement_id_points_movement')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_allocation'))
    )
    with op.batch_alter_table('points_allocation', schema=None) as batch_op:
        batch_op.create_index('ix_points_allocation_lot_id', ['lot_id'], unique=False)
        batch_op.create_index('ix_points_allocation_movement_id', ['movement_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('points_allocation', schema=None) as batch_op:
        batch_op.drop_index('ix_points_allocation_movement_id')
        batch_op.drop_index('ix_points_allocation_lot_id')

    op.drop_table('points_allocation')
    with op.batch_alter_table('points_lot', schema=None) as batch_op:
        batch_op.drop_index('ix_points_lot_workspace_id_expires_at')
        batch_op.drop_index('ix_points_lot_workspace_id_available_at')
        batch_op.drop_index('ix_points_lot_member_id_state')

    op.drop_table('points_lot')
    with op.batch_alter_table('points_movement', schema=None) as batch_op:
        batch_op.drop_index('ix_points_movement_reverses_id')
        batch_op.drop_index('ix_points_movement_member_id_id')

    op.drop_table('points_movement')
    op.drop_table('points_account')
    op.drop_table('loyalty_membership')
    with op.batch_alter_table('loyalty_event', schema=None) as batch_op:
        batch_op.drop_index('ix_loyalty_event_workspace_id_id')

    op.drop_table('loyalty_event')
    op.drop_table('loyalty_programme_version')
