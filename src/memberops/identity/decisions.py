"""Operator decisions about identities: merge two records, split one off, pin two apart.

A decision is kept and applied by every later resolution run (until revoked), so a re-run never undoes
what an operator decided. Each decision is audited.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor, record
from memberops.errors import Invalid, NotFound
from memberops.identity.models import IdentityDecision, IdentityLink

KINDS = ("merge", "split", "pin_apart")


class UnknownRecord(NotFound):
    code = "unknown_record"

    def __init__(self, channel: str, source_id: str) -> None:
        super().__init__(f"no identity record {channel}/{source_id} is known yet; run `memberops identity resolve`",
                         channel=channel)


class InvalidDecision(Invalid):
    code = "invalid_decision"


def _require_known(session: Session, workspace_id: str, channel: str, source_id: str) -> None:
    known = session.scalar(select(IdentityLink.id).where(
        IdentityLink.workspace_id == workspace_id, IdentityLink.channel == channel, IdentityLink.source_id == source_id))
    if known is None:
        raise UnknownRecord(channel, source_id)


def decide(
    session: Session, workspace: Workspace, *, kind: str, record_a: tuple[str, str],
    record_b: tuple[str, str] | None, reason: str, actor: Actor,
) -> IdentityDecision:
    """Record an operator's decision; it takes effect at the next resolution run.

    ``merge`` and ``pin_apart`` need two records; ``split`` one. A later decision about the same pair
    replaces an earlier one (a pin revokes a merge of the same two records and the other way round).
    """
    if kind not in KINDS:
        raise InvalidDecision(f"unknown decision {kind!r}; accepted: {', '.join(KINDS)}")
    if kind != "split" and record_b is None:
        raise InvalidDecision(f"a {kind} needs two records")
    if record_b is not None and record_a == record_b:
        raise InvalidDecision("a decision needs two different records")
    for channel, source_id in filter(None, (record_a, record_b)):
        _require_known(session, workspace.id, channel, source_id)
    if record_b is not None:
        _revoke_pair(session, workspace.id, record_a, record_b)
    decision = IdentityDecision(
        workspace_id=workspace.id, kind=kind, channel_a=record_a[0], source_id_a=record_a[1],
        channel_b=record_b[0] if record_b else None, source_id_b=record_b[1] if record_b else None,
        reason=reason, actor=f"{actor.type}:{actor.id}",
    )
    session.add(decision)
    session.flush()
    record(session, actor, f"identity.{kind}", workspace_id=workspace.id, target_type="identity_decision",
           target_id=str(decision.id), detail={"channels": [record_a[0], record_b[0] if record_b else None]})
    return decision


def _revoke_pair(session: Session, workspace_id: str, a: tuple[str, str], b: tuple[str, str]) -> None:
    from memberops.db.base import utcnow

    for decision in active(session, workspace_id):
        ends = {(decision.channel_a, decision.source_id_a), (decision.channel_b, decision.source_id_b)}
        if ends == {a, b}:
            decision.revoked_at = utcnow()


def active(session: Session, workspace_id: str) -> Sequence[IdentityDecision]:
    return session.scalars(select(IdentityDecision).where(
        IdentityDecision.workspace_id == workspace_id, IdentityDecision.revoked_at.is_(None),
    ).order_by(IdentityDecision.id)).all()
