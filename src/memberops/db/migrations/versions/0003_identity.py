"""identity: operator decisions, identity events, resolution runs, flagged identifiers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import memberops.db.base

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('flagged_identifier',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=320), nullable=False),
    sa.Column('records', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_flagged_identifier_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flagged_identifier')),
    sa.UniqueConstraint('workspace_id', 'type', 'value', name=op.f('uq_flagged_identifier_workspace_id_type_value'))
    )
    op.create_table('identity_decision',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('channel_a', sa.String(length=32), nullable=False),
    sa.Column('source_id_a', sa.String(length=200), nullable=False),
    sa.Column('channel_b', sa.String(length=32), nullable=True),
    sa.Column('source_id_b', sa.String(length=200), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('created_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_identity_decision_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_decision'))
    )
    with op.batch_alter_table('identity_decision', schema=None) as batch_op:
        batch_op.create_index('ix_identity_decision_workspace_id', ['workspace_id'], unique=False)

    op.create_table('identity_event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('other_member_id', sa.String(length=36), nullable=True),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=True),
    sa.Column('at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_identity_event_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_event'))
    )
    with op.batch_alter_table('identity_event', schema=None) as batch_op:
        batch_op.create_index('ix_identity_event_member_id', ['member_id'], unique=False)
        batch_op.create_index('ix_identity_event_workspace_id_at', ['workspace_id', 'at'], unique=False)

    op.create_table('resolution_run',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('started_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('summary', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_resolution_run_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_resolution_run'))
    )


def downgrade() -> None:
    op.drop_table('resolution_run')
    with op.batch_alter_table('identity_event', schema=None) as batch_op:
        batch_op.drop_index('ix_identity_event_workspace_id_at')
        batch_op.drop_index('ix_identity_event_member_id')

    op.drop_table('identity_event')
    with op.batch_alter_table('identity_decision', schema=None) as batch_op:
        batch_op.drop_index('ix_identity_decision_workspace_id')

    op.drop_table('identity_decision')
    op.drop_table('flagged_identifier')
