"""State-store tables of member insight: tag definitions, the serving traits, trait changes, runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, PrimaryKeyConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from memberops.db.base import Base, BigIntKey, JSONDocument, utcnow
from memberops.ids import new_id


class TagVersion(Base):
    """One version of a tag definition. Each change adds a version; a deletion is a version with
    ``deleted = True``. The current definition is the newest version, if it is not a deletion."""

    __tablename__ = "tag_version"
    __table_args__ = (UniqueConstraint("workspace_id", "name", "version"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    description: Mapped[str] = mapped_column(String(500), default="")
    rule: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    deleted: Mapped[bool] = mapped_column(default=False)
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MemberTrait(Base):
    """The serving subset of a member's traits (what the profile shows), from the latest computation."""

    __tablename__ = "member_trait"
    __table_args__ = (PrimaryKeyConstraint("workspace_id", "member_id"),)

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(String(36))
    computed_at: Mapped[datetime]
    traits: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSONDocument, default=list)


class TraitChange(Base):
    """A member moved: lifecycle stage or RFM segment changed, or a tag was added or removed."""

    __tablename__ = "trait_change"
    __table_args__ = (
        Index("ix_trait_change_workspace_id_changed_at", "workspace_id", "changed_at"),
        Index("ix_trait_change_member_id", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(String(36))
    member_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(32))  # lifecycle_stage | rfm_segment | tag_added | tag_removed
    from_value: Mapped[str | None] = mapped_column(String(100), default=None)
    to_value: Mapped[str | None] = mapped_column(String(100), default=None)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class InsightRun(Base):
    """One ``insight compute`` of a workspace and its summary."""

    __tablename__ = "insight_run"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    as_of: Mapped[datetime]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="running")
    summary: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)


class InsightConfigVersion(Base):
    """One version of a workspace's insight settings (``insight/config_store.py``); the highest is in force."""

    __tablename__ = "insight_config_version"
    __table_args__ = (UniqueConstraint("workspace_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    version: Mapped[int]
    document: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
