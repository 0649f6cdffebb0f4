"""The Insight overview read from the last run's stored summary, and ``GET /api/v1/insight/summary``, on every
state store."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.service import Actor
from memberops.insight.models import InsightRun
from memberops.insight.overview import insight_overview
from memberops.insight.snapshot import compute_insight
from memberops.runtime import Context
from tests.factories import make_key
from tests.insight.lake import AS_OF as LAKE_AS_OF
from tests.insight.lake import Brand

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


class TestSummaryEndpoint:
    def test_the_last_run_every_stage_listed(self, context: Context, workspace: Workspace) -> None:
        b = Brand(workspace_id=workspace.id)
        b.order(b.person("m1"), "o1", 20, "50.00")
        b.person("m2")
        b.write(context.settings.lake_path)
        with context.store.transaction() as session:
            read, ingest = make_key(session, workspace, "read"), make_key(session, workspace, "ingest", name="pos")
        with TestClient(create_app(context)) as client:
            before = client.get("/api/v1/insight/summary", headers={"Authorization": f"Bearer {read}"})
            compute_insight(context, workspace, actor=Actor.cli(), as_of=LAKE_AS_OF)
            after = client.get("/api/v1/insight/summary", headers={"Authorization": f"Bearer {read}"})
            forbidden = client.get("/api/v1/insight/summary", headers={"Authorization": f"Bearer {ingest}"})
            anonymous = client.get("/api/v1/insight/summary")

        assert before.status_code == 404 and before.json()["code"] == "insight_not_computed"
        assert before.headers["content-type"] == "application/problem+json"
        body = after.json()
        assert after.status_code == 200 and datetime.fromisoformat(body["as_of"]) == LAKE_AS_OF
        assert (body["members"], body["buyers"], body["rfm_unscored"]) == (2, 1, 1)
        assert body["lifecycle"] == {"prospect": 1, "new": 1, "active": 0, "loyal": 0, "at_risk": 0, "churned": 0}
        assert list(body["aipl"]) == ["aware", "interested", "purchased", "loyal"]
        assert len(body["segments"]) == 11 and sum(body["segments"].values()) == 1
        assert forbidden.status_code == 403 and forbidden.json()["code"] == "missing_scope"
        assert anonymous.status_code == 401 and anonymous.json()["code"] == "authentication_failed"
