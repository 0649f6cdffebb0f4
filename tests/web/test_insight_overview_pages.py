"""Console Insight → Overview through the real app, on every store: the last computation's members per
lifecycle stage, AIPL stage, RFM segment and tag — every stage listed, empty ones too — its as-of moment,
the CLV fit and the changes since the run before."""

from __future__ import annotations

from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.insight import tagging
from memberops.insight.lifecycle import STAGES
from memberops.insight.snapshot import compute_insight
from memberops.insight.tags import TagDefinition
from memberops.runtime import Context
from tests.console import signed_in, texts_by_testid
from tests.insight.lake import AS_OF, Brand


def brand(context: Context, workspace: Workspace) -> Brand:
    """Alice bought 100 and 20 days before AS_OF, Bob 200 days before, Carol never."""
    b = Brand(workspace_id=workspace.id)
    alice, bob = b.person("m1"), b.person("m2")
    b.person("m3")
    b.order(alice, "o1", 100, "100.00")
    b.order(alice, "o2", 20, "50.00")
    b.order(bob, "o3", 200, "70.00")
    b.write(context.settings.lake_path)
    return b


class TestOverviewPage:
    def test_before_any_computation_says_how_to_compute(self, console: TestClient, context: Context,
                                                        workspace: Workspace) -> None:
        page = signed_in(console, context, workspace, "analyst").get("/insight")

        assert page.status_code == 200 and 'data-testid="insight-missing"' in page.text
        assert 'data-testid="nav-insight"' in page.text

    def test_every_stage_with_its_members_and_the_as_of_moment(self, console: TestClient, context: Context,
                                                               workspace: Workspace) -> None:
        brand(context, workspace)
        with context.store.transaction() as session:
            tagging.put_tag(session, workspace.id, TagDefinition.model_validate(
                {"name": "repeat_buyer", "rule": {"trait": "orders", "op": "gte", "value": 2}}), actor=Actor.cli())
        compute_insight(context, workspace, actor=Actor.cli(), as_of=AS_OF)

        page = signed_in(console, context, workspace, "associate").get("/insight")

        assert page.status_code == 200
        assert texts_by_testid(page.text, "insight-as-of") == [f"Traits as of {AS_OF:%Y-%m-%d %H:%M}"]
        assert texts_by_testid(page.text, "insight-members") == ["3"]
        assert texts_by_testid(page.text, "insight-buyers") == ["2"]
        # prospect → new → active → loyal → at risk → churned, the empty stages too
        assert texts_by_testid(page.text, "lifecycle-count") == ["1", "0", "1", "0", "1", "0"]
        assert page.text.count('data-testid="lifecycle-row"') == len(STAGES)
        assert texts_by_testid(page.text, "aipl-count") == ["1", "0", "2", "0"]  # aware, interested, purchased, loyal
        assert len(texts_by_testid(page.text, "rfm-count")) == 11
        assert 'data-testid="rfm-unscored"' in page.text
        assert texts_by_testid(page.text, "tags-count") == ["1"]
        assert 'href="/insight/tags/repeat_buyer"' in page.text
        assert 'data-testid="changes-none"' in page.text  # the first computation is the baseline

    def test_changes_since_the_run_before_link_to_the_member(self, console: TestClient, context: Context,
                                                             workspace: Workspace) -> None:
        b = brand(context, workspace)
        compute_insight(context, workspace, actor=Actor.cli(), as_of=AS_OF)
        later = Brand(workspace_id=workspace.id, links=b.links)
        later.order("tmall-m3", "o4", 1, "10.00")  # Carol buys for the first time: prospect → new
        later.write(context.settings.lake_path, stem="b2")
        compute_insight(context, workspace, actor=Actor.cli(), as_of=AS_OF)

        page = signed_in(console, context, workspace, "marketer").get("/insight")

        assert texts_by_testid(page.text, "change-lifecycle_stage") == ["1"]
        assert 'href="/members/m3"' in page.text and "prospect → new" in page.text
