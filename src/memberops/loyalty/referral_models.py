"""Referral tables: each member's personal code and each friend's binding to a referrer.

A friend has at most one binding (unique per workspace): the first binding wins, whatever races it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from memberops.db.base import Base, BigIntKey, utcnow


class ReferralCode(Base):
    """A member's personal referral code (shared as is, or as ``…?ref=CODE`` in a link)."""

    __tablename__ = "referral_code"
    __table_args__ = (UniqueConstraint("workspace_id", "code"), UniqueConstraint("workspace_id", "member_id"))

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReferralBinding(Base):
    """A friend bound to the referrer whose code they used.

    ``status``: ``awaiting_purchase`` (rewards due on the first qualifying purchase) | ``rewarded`` (rewards
    granted for ``reward_order``, pending until ``reward_available_at``) | ``over_cap`` (the referrer had
    reached the programme's cap for the period when it was bound: recorded, never rewarded) |
    ``ineligible`` (the friend had bought before binding). A full refund of the rewarded order within its
    return window claws the rewards back and returns the binding to ``awaiting_purchase`` (``clawbacks``
    counts it), so the friend's next qualifying purchase is the one rewarded.
    """

    __tablename__ = "referral_binding"
    __table_args__ = (
        UniqueConstraint("workspace_id", "friend_member_id"),
        Index("ix_referral_binding_referrer_member_id_bound_at", "referrer_member_id", "bound_at"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    friend_member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    referrer_member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))  # as the friend gave it (a referral code or a member card no.)
    source: Mapped[str] = mapped_column(String(16))  # api | enrolment | import
    status: Mapped[str] = mapped_column(String(24))
    bound_at: Mapped[datetime] = mapped_column(default=utcnow)
    reward_order: Mapped[str | None] = mapped_column(String(200), default=None)  # channel:order_id
    rewarded_at: Mapped[datetime | None] = mapped_column(default=None)
    reward_available_at: Mapped[datetime | None] = mapped_column(default=None)
    referrer_points: Mapped[int] = mapped_column(default=0)
    friend_points: Mapped[int] = mapped_column(default=0)
    clawbacks: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
