"""ingest: live orders and refunds, received keys, import runs, quarantined rows

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import memberops.db.base

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('import_run',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('file_name', sa.String(length=500), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('mapping', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('mapping_sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('counts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('started_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_import_run_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_run'))
    )
    with op.batch_alter_table('import_run', schema=None) as batch_op:
        batch_op.create_index('ix_import_run_workspace_id_started_at', ['workspace_id', 'started_at'], unique=False)

    op.create_table('live_refund',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('refund_id', sa.String(length=128), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('refunded_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('amount', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('sku', sa.String(length=128), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=True),
    sa.Column('received_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_live_refund_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_live_refund')),
    sa.UniqueConstraint('workspace_id', 'channel', 'refund_id', name=op.f('uq_live_refund_workspace_id_channel_refund_id'))
    )
    op.create_table('received_key',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('received_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_received_key_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_received_key')),
    sa.UniqueConstraint('workspace_id', 'kind', 'channel', 'key', name=op.f('uq_received_key_workspace_id_kind_channel_key'))
    )
    op.create_table('live_order',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('customer_key', sa.String(length=200), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=True),
    sa.Column('store_id', sa.String(length=64), nullable=True),
    sa.Column('ordered_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('gross_amount', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('discount_amount', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('shipping_amount', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('paid_amount', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('coupon_codes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('refunded_amount', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('received_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_live_order_member_id_member')),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_live_order_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_live_order')),
    sa.UniqueConstraint('workspace_id', 'channel', 'order_id', name=op.f('uq_live_order_workspace_id_channel_order_id'))
    )
    with op.batch_alter_table('live_order', schema=None) as batch_op:
        batch_op.create_index('ix_live_order_member_id', ['member_id'], unique=False)

    op.create_table('quarantined_row',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('import_id', sa.String(length=36), nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['import_run.id'], name=op.f('fk_quarantined_row_import_id_import_run'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_quarantined_row_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantined_row'))
    )
    with op.batch_alter_table('quarantined_row', schema=None) as batch_op:
        batch_op.create_index('ix_quarantined_row_import_id_status', ['import_id', 'status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('quarantined_row', schema=None) as batch_op:
        batch_op.drop_index('ix_quarantined_row_import_id_status')

    op.drop_table('quarantined_row')
    with op.batch_alter_table('live_order', schema=None) as batch_op:
        batch_op.drop_index('ix_live_order_member_id')

    op.drop_table('live_order')
    op.drop_table('received_key')
    op.drop_table('live_refund')
    with op.batch_alter_table('import_run', schema=None) as batch_op:
        batch_op.drop_index('ix_import_run_workspace_id_started_at')

    op.drop_table('import_run')
