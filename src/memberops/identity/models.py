from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from memberops.db.base import Base, BigIntKey, JSONDocument, utcnow
from memberops.ids import new_id


class Member(Base):
    """One real person after identity resolution (OneID), prospects included.

    ``member_id`` is stable: a merge keeps the surviving id and points the absorbed one at it through
    ``merged_into_id``, so an id once handed out always leads somewhere.
    """

    __tablename__ = "member"
    __table_args__ = (Index("ix_member_workspace_id_created_at", "workspace_id", "created_at"),
                      Index("ix_member_merged_into_id", "merged_into_id"))

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


class IdentityDecision(Base):
    """An operator's decision about identities, applied by every resolution run until revoked.

    ``merge``: records a and b are one person. ``pin_apart``: a and b are never one person.
    ``split``: record a stands alone (b is empty).
    """

    __tablename__ = "identity_decision"
    __table_args__ = (Index("ix_identity_decision_workspace_id", "workspace_id"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    channel_a: Mapped[str] = mapped_column(String(32))
    source_id_a: Mapped[str] = mapped_column(String(200))
    channel_b: Mapped[str | None] = mapped_column(String(32), default=None)
    source_id_b: Mapped[str | None] = mapped_column(String(200), default=None)
    reason: Mapped[str] = mapped_column(String(500), default="")
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class IdentityEvent(Base):
    """A change of who is who: a member absorbed into another, records split off, a decision applied."""

    __tablename__ = "identity_event"
    __table_args__ = (
        Index("ix_identity_event_member_id", "member_id"),
        Index("ix_identity_event_workspace_id_at", "workspace_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # merge | unmerge | split
    member_id: Mapped[str] = mapped_column(String(36))
    other_member_id: Mapped[str | None] = mapped_column(String(36), default=None)
    rule: Mapped[str] = mapped_column(String(64), default="")
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(500), default="")
    run_id: Mapped[str | None] = mapped_column(String(36), default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ResolutionRun(Base):
    """One identity resolution over the whole workspace, and its summary."""

    __tablename__ = "resolution_run"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="running")
    summary: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)


class FlaggedIdentifier(Base):
    """An identifier value not used to merge: carried by implausibly many records. No value is logged."""

    __tablename__ = "flagged_identifier"
    __table_args__ = (UniqueConstraint("workspace_id", "type", "value"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(320))
    records: Mapped[int]
    run_id: Mapped[str] = mapped_column(String(36))


class ReviewPair(Base):
    """Two records the probabilistic matcher finds likely but not certain to be one person.

    An operator accepts (they become one member: a merge decision) or rejects (a pin apart); either
    way the decision is kept for every later run.
    """

    __tablename__ = "review_pair"
    __table_args__ = (
        UniqueConstraint("workspace_id", "channel_a", "source_id_a", "channel_b", "source_id_b"),
        Index("ix_review_pair_workspace_id_status", "workspace_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    channel_a: Mapped[str] = mapped_column(String(32))
    source_id_a: Mapped[str] = mapped_column(String(200))
    channel_b: Mapped[str] = mapped_column(String(32))
    source_id_b: Mapped[str] = mapped_column(String(200))
    match_probability: Mapped[float]
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | accepted | rejected
    run_id: Mapped[str] = mapped_column(String(36))
    decided_by: Mapped[str | None] = mapped_column(String(100), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdentityConfigVersion(Base):
    """One version of a workspace's OneID settings (``identity/config.py``); the highest is in force."""

    __tablename__ = "identity_config_version"
    __table_args__ = (UniqueConstraint("workspace_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    version: Mapped[int]
    document: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
