"""The events the programme rewarded: one row per event of a rewarded type from an enrolled member.

A row is kept even when the event earned nothing (a cap reached, a second sign-in the same day): the row is
what makes an event id earn at most once, what the per-day and per-month caps and the once-per-member
rule count, and where a sign-in streak is read from (the streak length of the member's row of the day
before, plus one). The points themselves are a movement of the points ledger (``movement_id``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from memberops.db.base import Base, BigIntKey, utcnow


class EventEarning(Base):
    """One rewarded-type event of a member; ``event_key`` (``{channel}:{event_id}`` on the live path) is
    unique per workspace. ``local_day`` is the event's ISO date in the workspace's time zone; ``streak`` the
    consecutive local days with this event type up to it (0 for types without a streak rule)."""

    __tablename__ = "loyalty_event_earning"
    __table_args__ = (UniqueConstraint("workspace_id", "event_key"),
                      Index("ix_loyalty_event_earning_member_id_event_type_local_day",
                            "member_id", "event_type", "local_day"))

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(64))
    event_key: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime]
    local_day: Mapped[str] = mapped_column(String(10))
    points: Mapped[int] = mapped_column(default=0)
    streak: Mapped[int] = mapped_column(default=0)
    movement_id: Mapped[int | None] = mapped_column(BigIntKey, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = ["EventEarning"]
