"""The Insight overview read from the last run's stored summary, on every state store."""

from __future__ import annotations

from datetime import UTC, datetime

from memberops.accounts.models import Workspace
from memberops.insight.models import InsightRun
from memberops.insight.overview import insight_overview
from memberops.runtime import Context

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)


class TestInsightOverview:
    def test_none_before_the_first_computation(self, context: Context, workspace: Workspace) -> None:
        with context.store.read() as session:
            assert insight_overview(session, workspace.id) is None

    def test_a_run_recorded_before_zeros_were_kept_lists_every_stage_in_order(self, context: Context,
                                                                              workspace: Workspace) -> None:
        summary = {"members": 5, "buyers": 3, "lifecycle": {"churned": 2, "prospect": 2, "active": 1},
                   "aipl": {"purchased": 3, "aware": 2}, "segments": {"Lost": 1, "VIP": 1, "Champions": 1},
                   "tags": {"vip": 1}, "changes": {}, "clv": {"skipped": "too few buyers"}}
        with context.store.transaction() as session:
            session.add(InsightRun(workspace_id=workspace.id, as_of=AS_OF, finished_at=datetime(2026, 3, 1, tzinfo=UTC),
                                   status="done", summary=summary))
            session.add(InsightRun(workspace_id=workspace.id, as_of=datetime(2026, 4, 1, tzinfo=UTC),
                                   status="running", summary={}))  # unfinished: not the last computation

        with context.store.read() as session:
            overview = insight_overview(session, workspace.id)

        assert overview is not None and overview.as_of == AS_OF
        assert overview.lifecycle == {"prospect": 2, "new": 0, "active": 1, "loyal": 0, "at_risk": 0, "churned": 2}
        assert list(overview.aipl) == ["aware", "interested", "purchased", "loyal"]
        assert list(overview.segments) == ["Champions", "Lost", "VIP"]  # the usual order, the brand's own after
        assert overview.rfm_unscored is None and overview.clv["skipped"] == "too few buyers"
