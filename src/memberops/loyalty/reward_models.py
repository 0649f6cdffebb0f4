"""Rewards catalogue tables: rewards (the points mall's items, coupons and benefits), their versions, and
members' redemptions of them.

Points are integers, cash is ``Numeric(18, 2)`` (no float column in this domain).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from memberops.db.base import Base, BigIntKey, JSONDocument, utcnow
from memberops.ids import new_id

Money = Numeric(18, 2)


class Reward(Base):
    """One entry of the catalogue, as it stands now (its current :class:`RewardVersion`).

    ``kind``: ``item`` (a physical gift, fulfilled by the brand), ``coupon`` (issues a coupon of
    ``coupon_template_id`` per unit) or ``benefit`` (grants ``benefit_quantity`` of ``benefit_id`` per unit).
    ``redeemed_count`` is the units taken and not given back; it moves only by a conditional ``UPDATE``
    (``redeemed_count + n <= stock``), which is also the row lock that makes members racing for the last
    units queue, so the stock never goes below zero.
    """

    __tablename__ = "reward"
    __table_args__ = (UniqueConstraint("workspace_id", "code"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    kind: Mapped[str] = mapped_column(String(16))  # item | coupon | benefit
    points: Mapped[int]  # the price of one unit in points
    cash_amount: Mapped[Decimal | None] = mapped_column(Money, default=None)  # and the cash part, if any
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    stock: Mapped[int | None] = mapped_column(default=None)  # None: unlimited
    redeemed_count: Mapped[int] = mapped_column(default=0)
    per_member_limit: Mapped[int | None] = mapped_column(default=None)  # units per member, ever
    period_limit: Mapped[int | None] = mapped_column(default=None)  # units per member per period
    limit_period: Mapped[str | None] = mapped_column(String(8), default=None)  # day | week | month | year
    valid_from: Mapped[datetime | None] = mapped_column(default=None)
    valid_until: Mapped[datetime | None] = mapped_column(default=None)
    tiers: Mapped[list[str]] = mapped_column(JSONDocument, default=list)  # empty: every member
    coupon_template_id: Mapped[str | None] = mapped_column(ForeignKey("coupon_template.id"), default=None)
    benefit_id: Mapped[str | None] = mapped_column(ForeignKey("benefit_definition.id"), default=None)
    benefit_quantity: Mapped[int] = mapped_column(default=1)
    is_active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RewardVersion(Base):
    """The whole definition of a reward as one version had it (``RewardIn`` as JSON); never changed once
    written. A redemption names the version it was made under."""

    __tablename__ = "reward_version"
    __table_args__ = (UniqueConstraint("reward_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    reward_id: Mapped[str] = mapped_column(ForeignKey("reward.id", ondelete="CASCADE"))
    version: Mapped[int]
    definition: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RewardRedemption(Base):
    """A member's redemption of ``quantity`` units of a reward: the points it took (``points_movement_id``),
    the cash part it priced, what it issued (``coupon_ids`` or ``benefit_grant_id``).

    ``idempotency_key`` is unique per workspace: a replay answers this row. ``status`` is ``completed`` or
    ``cancelled`` (points given back by ``reversal_movement_id``, stock returned, unused coupon voided);
    an item's ``fulfilment_status`` goes ``pending`` → ``shipped`` → ``collected`` (or straight to
    ``collected``), other kinds have none.
    """

    __tablename__ = "reward_redemption"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key"),
        Index("ix_reward_redemption_member_id_redeemed_at", "member_id", "redeemed_at"),
        Index("ix_reward_redemption_reward_id_member_id", "reward_id", "member_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    reward_id: Mapped[str] = mapped_column(ForeignKey("reward.id"))
    reward_version: Mapped[int]
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id"))
    quantity: Mapped[int]
    points: Mapped[int]  # in all, for every unit
    cash_amount: Mapped[Decimal | None] = mapped_column(Money, default=None)  # in all
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    status: Mapped[str] = mapped_column(String(16), default="completed")  # completed | cancelled
    fulfilment_status: Mapped[str | None] = mapped_column(String(16), default=None)  # items: pending | shipped | collected
    fulfilment_note: Mapped[str] = mapped_column(String(200), default="")
    idempotency_key: Mapped[str] = mapped_column(String(200))
    points_movement_id: Mapped[int] = mapped_column(ForeignKey("points_movement.id"))
    reversal_movement_id: Mapped[int | None] = mapped_column(ForeignKey("points_movement.id"), default=None)
    coupon_ids: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    benefit_grant_id: Mapped[int | None] = mapped_column(ForeignKey("benefit_grant.id"), default=None)
    redeemed_at: Mapped[datetime] = mapped_column(default=utcnow)
    fulfilment_updated_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_reason: Mapped[str] = mapped_column(String(200), default="")


__all__ = ["Reward", "RewardRedemption", "RewardVersion"]
