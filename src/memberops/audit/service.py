"""Recording what operators change. Every service that changes configuration or state on an operator's
behalf calls :func:`record` in the same transaction, so an audited change and its entry commit together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from memberops.audit.models import AuditEntry


@dataclass(frozen=True)
class Actor:
    """Who is acting: a console ``user``, an ``api_key``, the ``cli`` or the ``system`` (jobs)."""

    type: str
    id: str

    @classmethod
    def system(cls) -> Actor:
        return cls("system", "memberops")

    @classmethod
    def cli(cls) -> Actor:
        import getpass

        return cls("cli", getpass.getuser())


def record(
    session: Session, actor: Actor, action: str, *, workspace_id: str | None,
    target_type: str = "", target_id: str = "", detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an audit entry. ``detail`` must not contain PII (phones, emails, names, addresses)."""
    entry = AuditEntry(
        workspace_id=workspace_id, actor_type=actor.type, actor_id=actor.id, action=action,
        target_type=target_type, target_id=target_id, detail=detail or {},
    )
    session.add(entry)
    session.flush()
    return entry


def recent(session: Session, workspace_id: str, limit: int = 100) -> Sequence[AuditEntry]:
    return session.scalars(
        select(AuditEntry)
        .where(AuditEntry.workspace_id == workspace_id)
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    ).all()
