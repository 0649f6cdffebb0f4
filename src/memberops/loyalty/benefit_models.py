"""Benefit tables: definitions, grants of a quota to a member, and what was consumed of them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from memberops.db.base import Base, BigIntKey, utcnow
from memberops.ids import new_id


class BenefitDefinition(Base):
    """A non-discount privilege a brand grants (priority purchase, queue-skip pass, free alteration,
    exclusive event…)."""

    __tablename__ = "benefit_definition"
    __table_args__ = (UniqueConstraint("workspace_id", "code"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(2000), default="")
    valid_days: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BenefitGrant(Base):
    """``quantity`` uses of a benefit given to a member for a window, from a ``source`` (api, tier…).

    ``consumed`` is a cache of the grant's :class:`BenefitConsumption` rows, moved only by a conditional
    ``UPDATE … WHERE consumed + n <= quantity`` so it never passes the quantity under concurrency; a test
    checks it against the rows.
    """

    __tablename__ = "benefit_grant"
    __table_args__ = (
        UniqueConstraint("workspace_id", "grant_key"),
        Index("ix_benefit_grant_member_id_benefit_id", "member_id", "benefit_id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id"))
    benefit_id: Mapped[str] = mapped_column(ForeignKey("benefit_definition.id"))
    quantity: Mapped[int]
    consumed: Mapped[int] = mapped_column(default=0)
    source: Mapped[str] = mapped_column(String(64))
    grant_key: Mapped[str] = mapped_column(String(200))
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime | None] = mapped_column(default=None)
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


class BenefitConsumption(Base):
    """Uses taken from one grant by one consume request (a request may draw on several grants)."""

    __tablename__ = "benefit_consumption"
    __table_args__ = (
        UniqueConstraint("workspace_id", "consume_key", "grant_id"),
        Index("ix_benefit_consumption_grant_id", "grant_id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    grant_id: Mapped[int] = mapped_column(ForeignKey("benefit_grant.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id"))
    benefit_id: Mapped[str] = mapped_column(ForeignKey("benefit_definition.id"))
    quantity: Mapped[int]
    consume_key: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(200), default="")
    consumed_at: Mapped[datetime] = mapped_column(default=utcnow)
