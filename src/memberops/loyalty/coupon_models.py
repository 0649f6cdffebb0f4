"""Coupon tables: templates and their versions, coupons, and redemptions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from memberops.db.base import Base, BigIntKey, JSONDocument, utcnow
from memberops.ids import new_id

Money = Numeric(18, 2)


class CouponTemplate(Base):
    """What coupons of one kind give (its current :class:`CouponTemplateVersion`) and how they are issued.

    ``issued_count`` is moved only by a conditional ``UPDATE`` (``issued_count < stock``), which is also
    the row lock that serialises issues of one template, so the stock and the per-member limit hold under
    concurrency.
    """

    __tablename__ = "coupon_template"
    __table_args__ = (UniqueConstraint("workspace_id", "code"), UniqueConstraint("workspace_id", "shared_code"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    shared_code: Mapped[str | None] = mapped_column(String(64), default=None)
    stock: Mapped[int | None] = mapped_column(default=None)
    per_member_limit: Mapped[int | None] = mapped_column(default=None)
    issued_count: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | archived
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CouponTemplateVersion(Base):
    """One version of a template's terms (``CouponTerms`` as JSON); never changed once written."""

    __tablename__ = "coupon_template_version"
    __table_args__ = (UniqueConstraint("template_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    template_id: Mapped[str] = mapped_column(ForeignKey("coupon_template.id", ondelete="CASCADE"))
    version: Mapped[int]
    terms: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Coupon(Base):
    """A coupon held by a member, under the terms of the template version it was issued with.

    ``code`` is what the member shows; ``unique_code`` repeats it for unique codes and is empty for a
    shared code (many members' coupons carry the same shared code), so the database keeps unique codes
    unique. ``status`` changes only by the transitions of ``coupon_rules.TRANSITIONS``.
    """

    __tablename__ = "coupon"
    __table_args__ = (
        UniqueConstraint("workspace_id", "unique_code"),
        UniqueConstraint("workspace_id", "issue_key"),
        Index("ix_coupon_workspace_id_code", "workspace_id", "code"),
        Index("ix_coupon_member_id_template_id", "member_id", "template_id"),
        Index("ix_coupon_status_valid_until", "status", "valid_until"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    template_id: Mapped[str] = mapped_column(ForeignKey("coupon_template.id"))
    template_version: Mapped[int]
    code: Mapped[str] = mapped_column(String(64))
    unique_code: Mapped[str | None] = mapped_column(String(64), default=None)
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id"))
    status: Mapped[str] = mapped_column(String(16), default="issued")  # issued | redeemed | expired | voided
    issue_key: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    redeemed_at: Mapped[datetime | None] = mapped_column(default=None)
    restored_count: Mapped[int] = mapped_column(default=0)
    voided_at: Mapped[datetime | None] = mapped_column(default=None)
    void_reason: Mapped[str | None] = mapped_column(String(200), default=None)


class CouponRedemption(Base):
    """One use of a coupon on an order; ``order_key`` (``order:<channel>:<order_id>`` or ``key:<idempotency
    key>``) recognises a replay. ``restored_at`` is set when the order's full refund gave the coupon back."""

    __tablename__ = "coupon_redemption"
    __table_args__ = (
        UniqueConstraint("coupon_id", "order_key"),
        Index("ix_coupon_redemption_workspace_id_order_key", "workspace_id", "order_key"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    coupon_id: Mapped[str] = mapped_column(ForeignKey("coupon.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id"))
    order_key: Mapped[str] = mapped_column(String(300))
    channel: Mapped[str] = mapped_column(String(32))
    store_id: Mapped[str | None] = mapped_column(String(64), default=None)
    amount: Mapped[Decimal] = mapped_column(Money)
    discount: Mapped[Decimal] = mapped_column(Money)
    gift_sku: Mapped[str | None] = mapped_column(String(64), default=None)
    redeemed_at: Mapped[datetime] = mapped_column(default=utcnow)
    restored_at: Mapped[datetime | None] = mapped_column(default=None)
