"""Tier tables: a member's current tier, the history of every change, and the growth-value ledger.

Growth value has its own small append-only table rather than a column on ``points_movement``: it is
never spent, has no lots, expiry or balance lock, and keeping it out of the points ledger leaves that
ledger's invariants (balance = sum of deltas = sum of lots) untouched. Tiers count what was earned in a
window, so the table only needs sums by member and time.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from memberops.db.base import Base, BigIntKey, utcnow
from memberops.loyalty.models import Money


class MemberTier(Base):
    """The tier a member holds now (no row: no tier)."""

    __tablename__ = "loyalty_member_tier"
    __table_args__ = (UniqueConstraint("workspace_id", "member_id"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    tier: Mapped[str] = mapped_column(String(32))
    since: Mapped[datetime]
    programme_version: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TierChange(Base):
    """One entry of a member's tier history, never changed: ``reason`` is ``upgrade`` | ``downgrade`` |
    ``keep`` (retained by the lower bar) | ``manual`` | ``merge`` (the higher tier of a member merged into
    this one); ``period`` names the window it was decided on, ``note`` what brought it about."""

    __tablename__ = "loyalty_tier_history"
    __table_args__ = (Index("ix_loyalty_tier_history_member_id_id", "member_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    from_tier: Mapped[str | None] = mapped_column(String(32), default=None)
    to_tier: Mapped[str | None] = mapped_column(String(32), default=None)
    reason: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(32), default="")
    metric_value: Mapped[str] = mapped_column(String(32), default="")
    note: Mapped[str] = mapped_column(String(500), default="")
    actor: Mapped[str] = mapped_column(String(100), default="")
    programme_version: Mapped[int]
    at: Mapped[datetime] = mapped_column(default=utcnow)


class GrowthMovement(Base):
    """Growth value earned (an order, an event), append-only; ``idempotency_key`` is unique per workspace
    so a replayed order or event earns nothing more. A refund takes growth back as a negative ``value``
    (``source_type`` ``refund``, ``source_id`` the order's ``channel:order_id``), dated at the order's time."""

    __tablename__ = "loyalty_growth_movement"
    __table_args__ = (UniqueConstraint("workspace_id", "idempotency_key"),
                      Index("ix_loyalty_growth_movement_member_id_occurred_at", "member_id", "occurred_at"))

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    value: Mapped[int]
    source_type: Mapped[str] = mapped_column(String(16))  # order | event | refund
    source_id: Mapped[str] = mapped_column(String(200), default="")
    idempotency_key: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class QualifyingOrder(Base):
    """An imported order as spend and order-count tiers count it: the order the points backfill read from
    the lake, its buyer (the member the identity map named), when it was placed, what was paid and what its
    refunds in the lake add up to (``refunded_amount``, set anew by every backfill, so a rerun counts each
    refund once). One row per order (``channel``, ``order_id``): the tier metric takes an order posted live
    (``live_order``) and its imported twin as one order. A merge moves the rows to the survivor, as it
    moves growth value."""

    __tablename__ = "loyalty_qualifying_order"
    __table_args__ = (UniqueConstraint("workspace_id", "channel", "order_id"),
                      Index("ix_loyalty_qualifying_order_member_id_ordered_at", "member_id", "ordered_at"))

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str] = mapped_column(String(128))
    ordered_at: Mapped[datetime]
    paid_amount: Mapped[Decimal] = mapped_column(Money)
    refunded_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = ["GrowthMovement", "MemberTier", "QualifyingOrder", "TierChange"]
