"""Reading and writing member insight in the state store: the serving traits, tags and trait changes.

The profile (API, console) reads :func:`get_traits` and :func:`get_tags`; ``insight compute`` writes
them with :func:`save_serving_traits` in bulk, one JSON row per member.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.dialect import copy_rows, locked_parent
from memberops.identity.models import Member
from memberops.insight.documents import json_documents, json_tokens
from memberops.insight.models import InsightRun, MemberTrait, TraitChange

CHUNK = 100_000  # rows a batch of documents holds (a JSON column under Arrow's 2 GiB per array)

# The traits the 360° profile shows (the serving subset); the lake's member_traits has them all.
SERVING_TRAITS = (
    "as_of", "orders", "units", "gross_spend", "refunded", "net_spend", "aov", "items_per_order",
    "first_purchase_at", "last_purchase_at", "days_since_last_purchase", "mean_interpurchase_days",
    "median_interpurchase_days", "discount_share", "refund_rate", "online_share", "preferred_channel",
    "preferred_category", "preferred_store", "associate_id", "rfm_r", "rfm_f", "rfm_m", "rfm_score",
    "rfm_segment", "lifecycle_stage", "aipl_stage", "next_purchase_from", "next_purchase_expected",
    "next_purchase_to", "expected_purchases_90d", "expected_purchases_365d", "p_alive", "churn_risk",
    "expected_spend", "clv", "referrals", "referrals_converted", "referred_value", "shares", "koc_score",
)


def save_serving_traits(session: Session, workspace_id: str, traits: pa.Table, computed_at: datetime) -> int:
    """Replace the workspace's ``member_trait`` rows by one per member of ``traits`` (the lake snapshot): a
    member no longer in it (absorbed by a merge) loses its row. Money as decimal strings, dates as ISO strings
    (:mod:`memberops.insight.documents`).

    It all happens in the caller's transaction: until it commits, a reader sees the previous set whole, and a
    failure leaves it in place. The workspace's row is locked first (without blocking writes that refer to
    it), so two computations of one workspace replace the set one after the other rather than colliding on
    the rows each inserts."""
    session.execute(locked_parent(select(Workspace.id).where(Workspace.id == workspace_id))).all()
    session.execute(delete(MemberTrait).where(MemberTrait.workspace_id == workspace_id))
    table = cast(Table, MemberTrait.__table__)
    written = 0
    for batch in traits.select(["member_id", *SERVING_TRAITS, "tags"]).to_batches(CHUNK):
        if not batch.num_rows:
            continue
        tags = batch.column("tags")
        copy_rows(session, table, {
            "member_id": batch.column("member_id"), "traits": json_documents(batch, SERVING_TRAITS),
            "tags": pc.if_else(tags.is_null(), "[]", json_tokens(tags)),
        }, {"workspace_id": workspace_id, "computed_at": computed_at})
        written += batch.num_rows
    return written


def _survivor(session: Session, workspace_id: str, member_id: str) -> str:
    """An absorbed member id leads to the member that absorbed it (as the profile does)."""
    for _ in range(16):
        merged_into = session.scalar(select(Member.merged_into_id).where(
            Member.workspace_id == workspace_id, Member.id == member_id))
        if merged_into is None:
            return member_id
        member_id = merged_into
    return member_id


def get_traits(session: Session, workspace_id: str, member_id: str) -> dict[str, Any] | None:
    """The member's serving traits with ``computed_at`` (JSON-ready), or None before the first computation."""
    row = session.get(MemberTrait, (workspace_id, _survivor(session, workspace_id, member_id)))
    if row is None:
        return None
    return {**row.traits, "computed_at": row.computed_at.isoformat()}


def get_tags(session: Session, workspace_id: str, member_id: str) -> list[str]:
    """The member's tags from the latest computation (empty before the first)."""
    row = session.get(MemberTrait, (workspace_id, _survivor(session, workspace_id, member_id)))
    return list(row.tags) if row is not None else []


def trait_changes(session: Session, workspace_id: str, *, member_id: str | None = None,
                  limit: int = 100) -> Sequence[TraitChange]:
    """The newest trait changes of the workspace (or of one member)."""
    query = select(TraitChange).where(TraitChange.workspace_id == workspace_id)
    if member_id is not None:
        query = query.where(TraitChange.member_id == member_id)
    return session.scalars(query.order_by(TraitChange.id.desc()).limit(limit)).all()


def latest_run(session: Session, workspace_id: str) -> InsightRun | None:
    return session.scalars(select(InsightRun).where(InsightRun.workspace_id == workspace_id, InsightRun.status == "done")
                           .order_by(InsightRun.finished_at.desc()).limit(1)).first()
