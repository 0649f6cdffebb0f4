"""insight: tag definitions (versioned), serving member traits, trait changes, insight runs

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import memberops.db.base

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('insight_run',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('as_of', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('summary', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_insight_run_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_insight_run'))
    )
    op.create_table('member_trait',
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('computed_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('traits', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_member_trait_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('workspace_id', 'member_id', name=op.f('pk_member_trait'))
    )
    op.create_table('tag_version',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=False),
    sa.Column('rule', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('created_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_tag_version_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tag_version')),
    sa.UniqueConstraint('workspace_id', 'name', 'version', name=op.f('uq_tag_version_workspace_id_name_version'))
    )
    op.create_table('trait_change',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('from_value', sa.String(length=100), nullable=True),
    sa.Column('to_value', sa.String(length=100), nullable=True),
    sa.Column('changed_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_trait_change_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trait_change'))
    )
    with op.batch_alter_table('trait_change', schema=None) as batch_op:
        batch_op.create_index('ix_trait_change_member_id', ['member_id'], unique=False)
        batch_op.create_index('ix_trait_change_workspace_id_changed_at', ['workspace_id', 'changed_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('trait_change', schema=None) as batch_op:
        batch_op.drop_index('ix_trait_change_workspace_id_changed_at')
        batch_op.drop_index('ix_trait_change_member_id')

    op.drop_table('trait_change')
    op.drop_table('tag_version')
    op.drop_table('member_trait')
    op.drop_table('insight_run')
