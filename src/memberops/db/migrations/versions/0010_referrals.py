"""referrals: personal referral codes, friends bound to referrers

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Members enrolled before this revision get their personal referral code here.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import memberops.db.base

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('referral_binding',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('friend_member_id', sa.String(length=36), nullable=False),
    sa.Column('referrer_member_id', sa.String(length=36), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('bound_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reward_order', sa.String(length=200), nullable=True),
    sa.Column('rewarded_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reward_available_at', memberops.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('referrer_points', sa.Integer(), nullable=False),
    sa.Column('friend_points', sa.Integer(), nullable=False),
    sa.Column('clawbacks', sa.Integer(), nullable=False),
    sa.Column('updated_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['friend_member_id'], ['member.id'], name=op.f('fk_referral_binding_friend_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['referrer_member_id'], ['member.id'], name=op.f('fk_referral_binding_referrer_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_referral_binding_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral_binding')),
    sa.UniqueConstraint('workspace_id', 'friend_member_id', name=op.f('uq_referral_binding_workspace_id_friend_member_id'))
    )
    with op.batch_alter_table('referral_binding', schema=None) as batch_op:
        batch_op.create_index('ix_referral_binding_referrer_member_id_bound_at', ['referrer_member_id', 'bound_at'], unique=False)

    op.create_table('referral_code',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('created_at', memberops.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_referral_code_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], name=op.f('fk_referral_code_workspace_id_workspace'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral_code')),
    sa.UniqueConstraint('workspace_id', 'code', name=op.f('uq_referral_code_workspace_id_code')),
    sa.UniqueConstraint('workspace_id', 'member_id', name=op.f('uq_referral_code_workspace_id_member_id'))
    )
    _codes_for_enrolled_members()


# the alphabet of memberops.loyalty.referrals.new_referral_code (no 0/O, 1/I/L)
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def _codes_for_enrolled_members() -> None:
    bind = op.get_bind()
    memberships = bind.execute(sa.text("SELECT workspace_id, member_id FROM loyalty_membership")).all()
    codes = sa.table("referral_code", sa.column("workspace_id"), sa.column("member_id"), sa.column("code"),
                     sa.column("created_at", memberops.db.base.UTCDateTime(timezone=True)))
    now = datetime.now(UTC)
    taken: set[str] = set()
    rows = []
    for workspace_id, member_id in memberships:
        code = ""
        while not code or code in taken:  # unique across workspaces too: simpler, and as unguessable
            code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        taken.add(code)
        rows.append({"workspace_id": workspace_id, "member_id": member_id, "created_at": now, "code": code})
    for start in range(0, len(rows), 5_000):
        bind.execute(sa.insert(codes), rows[start:start + 5_000])


def downgrade() -> None:
    op.drop_table('referral_code')
    with op.batch_alter_table('referral_binding', schema=None) as batch_op:
        batch_op.drop_index('ix_referral_binding_referrer_member_id_bound_at')

    op.drop_table('referral_binding')
