"""The transactional outbox: facts with a state effect are written here in the state change's transaction.

The exporter (``memberops.lake.export``) later moves them to the lake, so a process lost between the
commit and the export loses nothing; see that module for how a crash mid-export duplicates nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from memberops.db.base import Base, BigIntKey, JSONDocument, utcnow


class OutboxRow(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_exported_at_id", "exported_at", "id"),
        Index("ix_outbox_batch_id", "batch_id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String(36))
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    batch_id: Mapped[str | None] = mapped_column(String(36), default=None)
    exported_at: Mapped[datetime | None] = mapped_column(default=None)


def emit(session: Session, *, workspace_id: str, topic: str, payload: dict[str, Any]) -> OutboxRow:
    """Queue ``payload`` for the lake table ``topic`` in the caller's transaction.

    Commits or rolls back with the state change it accompanies: there is never a fact in the lake
    without its state, nor a state change whose fact is lost.
    """
    from memberops.lake.registry import table_spec

    table_spec(topic)  # an unknown topic is a programming error: fail before anything is queued
    row = OutboxRow(workspace_id=workspace_id, topic=topic, payload=payload)
    session.add(row)
    return row
