"""The workspace's insight at a glance: the last computation's summary as the console's Insight page shows it.

Read from the run's stored summary (``insight_run.summary``), so the page costs one query however many
members there are. Every lifecycle and AIPL stage is listed in chain order and every RFM segment in the
usual order, zeros included — also for runs recorded before the summary listed them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from memberops.insight.config import RFM_SEGMENTS
from memberops.insight.lifecycle import AIPL_STAGES, STAGES
from memberops.insight.models import TraitChange
from memberops.insight.service import latest_run, trait_changes


@dataclass(frozen=True)
class InsightOverview:
    """The last computation: the moment its traits describe (``as_of``), when it finished, and its counts."""

    as_of: datetime
    computed_at: datetime | None
    members: int
    buyers: int
    lifecycle: dict[str, int]
    aipl: dict[str, int]
    segments: dict[str, int]
    rfm_unscored: int | None  # None: a run recorded before it was counted
    tags: dict[str, int]
    changes: dict[str, int]
    clv: dict[str, Any]
    recent_changes: Sequence[TraitChange] = field(default_factory=list)


def _in_order(counts: dict[str, Any] | None, names: Sequence[str]) -> dict[str, int]:
    counts = {str(k): int(v) for k, v in (counts or {}).items()}
    return {name: counts.get(name, 0) for name in names} | counts


def insight_overview(session: Session, workspace_id: str, *, recent: int = 20) -> InsightOverview | None:
    """The last finished computation of the workspace with its ``recent`` newest trait changes, or None
    before the first ``memberops insight compute``."""
    run = latest_run(session, workspace_id)
    if run is None:
        return None
    summary = run.summary or {}
    segments = {str(k): int(v) for k, v in (summary.get("segments") or {}).items()}
    ordered = [name for name in RFM_SEGMENTS if name in segments] + [name for name in segments if name not in RFM_SEGMENTS]
    unscored = summary.get("rfm_unscored")
    return InsightOverview(
        as_of=run.as_of, computed_at=run.finished_at, members=int(summary.get("members") or 0),
        buyers=int(summary.get("buyers") or 0), lifecycle=_in_order(summary.get("lifecycle"), STAGES),
        aipl=_in_order(summary.get("aipl"), AIPL_STAGES), segments={name: segments[name] for name in ordered},
        rfm_unscored=int(unscored) if unscored is not None else None, tags=_in_order(summary.get("tags"), ()),
        changes=_in_order(summary.get("changes"), ()), clv=dict(summary.get("clv") or {}),
        recent_changes=trait_changes(session, workspace_id, limit=recent) if recent else [],
    )
