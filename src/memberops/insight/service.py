"""Reading and writing member insight in the state store: the serving traits, tags and trait changes.

The profile (API, console) reads :func:`get_traits` and :func:`get_tags`; ``insight compute`` writes
them with :func:`save_serving_traits` in bulk, one JSON row per member.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from memberops.db.dialect import upsert
from memberops.identity.models import Member
from memberops.insight.models import InsightRun, MemberTrait, TraitChange

CHUNK = 5_000

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


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


def _json_column(column: pa.Array) -> list[Any]:
    """``column``'s values as :func:`_json_value` gives them."""
    values = column.to_pylist()
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_boolean(kind):
        return values
    if pa.types.is_floating(kind):
        return [None if v is None or math.isnan(v) else round(v, 6) for v in values]
    if pa.types.is_decimal(kind):
        return [None if v is None else str(v) for v in values]
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return [None if v is None else v.isoformat() for v in values]
    return [_json_value(v) for v in values]


def save_serving_traits(session: Session, workspace_id: str, traits: pa.Table, computed_at: datetime) -> int:
    """Upsert one ``member_trait`` row per member of ``traits`` (the lake snapshot) and drop rows of members
    no longer in it (absorbed by a merge). Money as decimal strings, dates as ISO strings."""
    columns = traits.select(["member_id", *SERVING_TRAITS, "tags"])
    statement = upsert(session, MemberTrait.__table__, ["workspace_id", "member_id"],  # type: ignore[arg-type]
                       ["computed_at", "traits", "tags"])
    written = 0
    for batch in columns.to_batches(CHUNK):
        if not batch.num_rows:
            continue
        # column by column: one conversion per column type instead of a type test per value
        values = [_json_column(batch.column(name)) for name in SERVING_TRAITS]
        rows = [{
            "workspace_id": workspace_id, "member_id": member_id, "computed_at": computed_at,
            "traits": dict(zip(SERVING_TRAITS, row, strict=True)), "tags": tags or [],
        } for member_id, tags, *row in zip(batch.column("member_id").to_pylist(), batch.column("tags").to_pylist(),
                                           *values, strict=True)]
        session.execute(statement, rows)
        written += len(rows)
    session.execute(delete(MemberTrait).where(MemberTrait.workspace_id == workspace_id,
                                              MemberTrait.computed_at < computed_at))
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
