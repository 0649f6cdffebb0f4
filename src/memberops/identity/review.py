"""The review queue: likely-but-uncertain pairs from probabilistic matching, decided by an operator.

Accepting a pair records a ``merge`` decision, rejecting it a ``pin_apart``; both are applied by every
later resolution run, and a decided pair is never queued again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ibis
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.db.base import utcnow
from memberops.db.dialect import insert_ignoring_conflicts
from memberops.errors import Conflict, NotFound
from memberops.identity import decisions
from memberops.identity.models import ReviewPair

if TYPE_CHECKING:
    from memberops.lake.engine import Warehouse

DETAIL_FIELDS = ("full_name", "first_name", "last_name", "gender", "birthday", "phone", "email", "city",
                 "province", "address_line", "postcode", "joined_at")


class ReviewPairNotFound(NotFound):
    code = "review_pair_not_found"


class ReviewPairDecided(Conflict):
    code = "review_pair_decided"


def queue_pairs(session: Session, workspace_id: str, run_id: str, pairs: Sequence[dict[str, Any]]) -> int:
    """Add pairs (``channel_a, source_id_a, channel_b, source_id_b, match_probability``) not queued before."""
    if not pairs:
        return 0
    rows = [{"workspace_id": workspace_id, "run_id": run_id, "status": "open", "created_at": utcnow(), **p}
            for p in pairs]
    statement = insert_ignoring_conflicts(session, ReviewPair.__table__,  # type: ignore[arg-type]
                                          ("workspace_id", "channel_a", "source_id_a", "channel_b", "source_id_b"))
    result = session.execute(statement, rows)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def open_pairs(session: Session, workspace_id: str, *, limit: int = 50) -> Sequence[ReviewPair]:
    """Open pairs, the most likely first."""
    return session.scalars(select(ReviewPair).where(
        ReviewPair.workspace_id == workspace_id, ReviewPair.status == "open",
    ).order_by(ReviewPair.match_probability.desc(), ReviewPair.id).limit(limit)).all()


def count_open(session: Session, workspace_id: str) -> int:
    from sqlalchemy import func

    return int(session.scalar(select(func.count(ReviewPair.id)).where(
        ReviewPair.workspace_id == workspace_id, ReviewPair.status == "open")) or 0)


def decide_pair(session: Session, workspace: Workspace, pair_id: int, *, accept: bool, actor: Actor) -> ReviewPair:
    """Accept (one person) or reject (never one person) a queued pair."""
    pair = session.scalar(select(ReviewPair).where(ReviewPair.id == pair_id, ReviewPair.workspace_id == workspace.id))
    if pair is None:
        raise ReviewPairNotFound(f"no review pair {pair_id}", pair_id=pair_id)
    if pair.status != "open":
        raise ReviewPairDecided(f"review pair {pair_id} was already {pair.status}", pair_id=pair_id)
    decisions.decide(session, workspace, kind="merge" if accept else "pin_apart",
                     record_a=(pair.channel_a, pair.source_id_a), record_b=(pair.channel_b, pair.source_id_b),
                     reason=f"review pair {pair_id} (p={pair.match_probability:.3f})", actor=actor)
    pair.status = "accepted" if accept else "rejected"
    pair.decided_by = f"{actor.type}:{actor.id}"
    pair.decided_at = utcnow()
    return pair


def record_details(warehouse: Warehouse, workspace_id: str, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The newest version of each record in ``refs``, for showing a pair side by side."""
    if not refs:
        return {}
    wanted = ibis.memtable(pa.table({"channel": [c for c, _ in refs], "source_id": [s for _, s in refs]}))
    records = warehouse.table("identity_records").filter(ibis._.workspace_id == workspace_id)
    newest = records.semi_join(wanted, ["channel", "source_id"]).mutate(_v=ibis.row_number().over(
        group_by=["channel", "source_id"], order_by=ibis._.ingested_at.desc())).filter(ibis._._v == 0)
    rows = warehouse.to_pyarrow(newest.select("channel", "source_id", *DETAIL_FIELDS)).to_pylist()
    return {(r["channel"], r["source_id"]): r for r in rows}
