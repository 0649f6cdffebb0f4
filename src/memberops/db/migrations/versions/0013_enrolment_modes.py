"""enrolment modes: paid membership terms (join, renewal, cancellation rows), a membership's term and
renewal state, and the lot a merge moved points from

Revision ID: 0013
Revises: 0012 (assigned 0012 on 0011; main's 0012 is event earning, so it follows that)
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import memberops.db.base

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('loyalty_membership', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ends_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('auto_renew', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('cancelled_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('renewal_requested_for', memberops.db.base.UTCDateTime(timezone=True),
                                      nullable=True))

    op.create_table('loyalty_membership_term',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('membership_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('starts_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('fee', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('refund', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('payment_reference', sa.String(length=200), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('created_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_loyalty_membership_term_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['membership_id'], ['loyalty_membership.id'], name=op.f('fk_loyalty_membership_term_membership_id_loyalty_membership'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_loyalty_membership_term_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loyalty_membership_term')),
    sa.UniqueConstraint('workspace_id', 'idempotency_key', name=op.f('uq_loyalty_membership_term_workspace_id_idempotency_key'))
    )
    with op.batch_alter_table('loyalty_membership_term', schema=None) as batch_op:
        batch_op.create_index('ix_loyalty_membership_term_membership_id', ['membership_id'], unique=False)

    with op.batch_alter_table('points_lot', schema=None) as batch_op:
        batch_op.add_column(sa.Column('origin_lot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_points_lot_origin_lot_id_points_lot'), 'points_lot', ['origin_lot_id'], ['id'])
        batch_op.create_index('ix_points_lot_origin_lot_id', ['origin_lot_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('points_lot', schema=None) as batch_op:
        batch_op.drop_index('ix_points_lot_origin_lot_id')
        batch_op.drop_constraint(batch_op.f('fk_points_lot_origin_lot_id_points_lot'), type_='foreignkey')
        batch_op.drop_column('origin_lot_id')
    with op.batch_alter_table('loyalty_membership_term', schema=None) as batch_op:
        batch_op.drop_index('ix_loyalty_membership_term_membership_id')
    op.drop_table('loyalty_membership_term')
    with op.batch_alter_table('loyalty_membership', schema=None) as batch_op:
        batch_op.drop_column('renewal_requested_for')
        batch_op.drop_column('cancelled_at')
        batch_op.drop_column('auto_renew')
        batch_op.drop_column('ends_at')
