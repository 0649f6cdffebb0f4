from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from memberops.db.base import Base, BigIntKey, utcnow
from memberops.ids import new_id


class Member(Base):
    """One real person after identity resolution (OneID), prospects included.

    ``member_id`` is stable: a merge keeps the surviving id and points the absorbed one at it through
    ``merged_into_id``, so an id once handed out always leads somewhere.
    """

    __tablename__ = "member"
    __table_args__ = (Index("ix_member_workspace_id_created_at", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    is_enrolled: Mapped[bool] = mapped_column(default=False)
    enrolled_at: Mapped[datetime | None] = mapped_column(default=None)
    merged_into_id: Mapped[str | None] = mapped_column(ForeignKey("member.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Identifier(Base):
    """A normalised key (phone, email, unionid, …) seen for a member, and where it was seen."""

    __tablename__ = "identifier"
    __table_args__ = (
        UniqueConstraint("workspace_id", "type", "value", "member_id"),
        Index("ix_identifier_member_id", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdentityLink(Base):
    """The serving identity map: which member a channel's customer record belongs to.

    The live API resolves ``(channel, source_id)`` here at once; batch resolution (OneID) rewrites it.
    """

    __tablename__ = "identity_link"
    __table_args__ = (
        UniqueConstraint("workspace_id", "channel", "source_id"),
        Index("ix_identity_link_member_id", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(200))
    member_id: Mapped[str] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
