"""Loyalty's tables: programme versions, memberships, the points ledger with its lots and allocations,
the balance row redemptions lock, and domain events for journeys.

Points are integers everywhere (no float column in this domain).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from memberops.db.base import Base, BigIntKey, JSONDocument, utcnow

Money = Numeric(18, 2)


class ProgrammeVersion(Base):
    """One version of a workspace's programme. A change adds a version; the newest is the active one."""

    __tablename__ = "loyalty_programme_version"
    __table_args__ = (UniqueConstraint("workspace_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    version: Mapped[int]
    definition: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    """A member's enrolment in the workspace's programme (one per member)."""

    __tablename__ = "loyalty_membership"
    __table_args__ = (UniqueConstraint("workspace_id", "member_id"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    programme_version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="active")
    channel: Mapped[str] = mapped_column(String(32))
    birth_month: Mapped[int | None] = mapped_column(default=None)  # for birthday-month earning; no full date
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    # a paid membership's term (see memberships.py); open-ended (null) for free and spend-threshold joins
    ends_at: Mapped[datetime | None] = mapped_column(default=None)
    auto_renew: Mapped[bool] = mapped_column(default=False)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    renewal_requested_for: Mapped[datetime | None] = mapped_column(default=None)  # the term end last announced


class MembershipTerm(Base):
    """One paid term or cancellation of a membership, never changed: ``kind`` is ``join`` | ``renewal``
    (``fee`` paid for ``starts_at`` – ``ends_at``) or ``cancellation`` (``refund`` given back for the
    unused span). ``idempotency_key`` (the payment reference for payments) is unique per workspace."""

    __tablename__ = "loyalty_membership_term"
    __table_args__ = (UniqueConstraint("workspace_id", "idempotency_key"),
                      Index("ix_loyalty_membership_term_membership_id", "membership_id"))

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    membership_id: Mapped[int] = mapped_column(ForeignKey("loyalty_membership.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    fee: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    refund: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3))
    payment_reference: Mapped[str] = mapped_column(String(200), default="")
    idempotency_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PointsAccount(Base):
    """A member's balance, cached from the ledger and locked by every movement of the member's points.

    ``available``, ``pending`` and ``debt`` always equal the sums of the ledger's deltas (a test checks
    it); the row exists so that concurrent redemptions queue on one lock instead of both spending it.
    """

    __tablename__ = "points_account"
    __table_args__ = (UniqueConstraint("workspace_id", "member_id"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    available: Mapped[int] = mapped_column(default=0)
    pending: Mapped[int] = mapped_column(default=0)
    debt: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PointsMovement(Base):
    """One ledger entry, never changed once written.

    ``kind``: ``earn`` | ``release`` (pending → available) | ``redeem`` | ``expire`` | ``adjust`` |
    ``reverse`` (undoes the movement ``reverses_id`` names: a refund takes back part of an earn, a cancelled
    reward redemption gives back a redeem) | ``settle`` (later points paying a debt). The three deltas say
    what it did to the member's available, pending and debt balances. ``idempotency_key`` is unique per workspace: a
    replay finds the movement and its ``outcome`` (the balance it left) instead of moving points again.
    """

    __tablename__ = "points_movement"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key"),
        Index("ix_points_movement_member_id_id", "member_id", "id"),
        Index("ix_points_movement_reverses_id", "reverses_id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int]  # the movement's size, always positive; the deltas carry the direction
    available_delta: Mapped[int] = mapped_column(default=0)
    pending_delta: Mapped[int] = mapped_column(default=0)
    debt_delta: Mapped[int] = mapped_column(default=0)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    source_type: Mapped[str] = mapped_column(String(16), default="")  # order | refund | api | job | enrolment
    source_id: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(String(500), default="")
    actor: Mapped[str] = mapped_column(String(100), default="")
    programme_version: Mapped[int | None] = mapped_column(default=None)
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("points_movement.id"), default=None)  # the earn or redeem undone
    outcome: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PointsLot(Base):
    """Points earned together (one earn or positive adjustment), with their own expiry.

    ``remaining`` is what no allocation has taken yet: ``points - sum(allocations)`` (a test checks it).
    A lot is ``pending`` until ``available_at``, then ``available``.
    """

    __tablename__ = "points_lot"
    __table_args__ = (
        Index("ix_points_lot_member_id_state", "member_id", "state"),
        Index("ix_points_lot_workspace_id_expires_at", "workspace_id", "expires_at"),
        Index("ix_points_lot_workspace_id_available_at", "workspace_id", "state", "available_at"),
        Index("ix_points_lot_origin_lot_id", "origin_lot_id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    movement_id: Mapped[int] = mapped_column(ForeignKey("points_movement.id"))
    points: Mapped[int]
    remaining: Mapped[int]
    state: Mapped[str] = mapped_column(String(16))  # pending | available
    earned_at: Mapped[datetime]
    available_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    warned_at: Mapped[datetime | None] = mapped_column(default=None)
    origin_lot_id: Mapped[int | None] = mapped_column(ForeignKey("points_lot.id"), default=None)  # moved by a merge


class PointsAllocation(Base):
    """Points a movement (redeem, expire, reverse, settle, negative adjust) took from one lot."""

    __tablename__ = "points_allocation"
    __table_args__ = (Index("ix_points_allocation_lot_id", "lot_id"),
                      Index("ix_points_allocation_movement_id", "movement_id"))

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    movement_id: Mapped[int] = mapped_column(ForeignKey("points_movement.id"))
    lot_id: Mapped[int] = mapped_column(ForeignKey("points_lot.id"))
    points: Mapped[int]


class LoyaltyEvent(Base):
    """A domain event for journeys to react to later: ``points_expiring``, ``points_expired``,
    ``member_enrolled``."""

    __tablename__ = "loyalty_event"
    __table_args__ = (Index("ix_loyalty_event_workspace_id_id", "workspace_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = ["LoyaltyEvent", "Membership", "MembershipTerm", "PointsAccount", "PointsAllocation", "PointsLot", "PointsMovement",
           "ProgrammeVersion"]
