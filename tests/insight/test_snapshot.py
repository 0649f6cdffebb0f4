"""``insight compute`` on every state store: snapshot in the lake, serving traits, changes as events."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pyarrow.parquet as pq
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.audit.models import AuditEntry
from memberops.audit.service import Actor
from memberops.db.outbox import OutboxRow
from memberops.insight import service, tagging
from memberops.insight.config import RFM_SEGMENTS, InsightConfig
from memberops.insight.lifecycle import AIPL_STAGES, STAGES
from memberops.insight.models import InsightRun, TraitChange
from memberops.insight.snapshot import compute_insight
from memberops.insight.tags import TagDefinition
from memberops.lake.export import export_outbox
from memberops.lake.registry import table_spec
from memberops.lake.writer import table_dir
from memberops.runtime import Context
from tests.insight.lake import AS_OF, Brand

NEW_MOM = TagDefinition.model_validate(
    {"name": "new_mom", "rule": {"bought": {"category": "newborn", "within_days": 90}}})


def _brand(workspace: Workspace) -> Brand:
    b = Brand(workspace_id=workspace.id)
    alice = b.person("m1")
    bob = b.person("m2")
    b.person("m3")
    b.order(alice, "o1", 100, "100.00", lines=(("s1", "newborn", 1, "100.00"),))
    b.order(alice, "o2", 20, "50.00", lines=(("s2", "toys", 1, "50.00"),))
    b.order(bob, "o3", 200, "70.00", lines=(("s3", "toys", 1, "70.00"),))
    return b


def _snapshot(context: Context, workspace: Workspace) -> dict[str, dict[str, object]]:
    path = table_dir(context.settings.lake_path, table_spec("member_traits")) / f"{workspace.id}.parquet"
    return {row["member_id"]: row for row in pq.read_table(path).to_pylist()}


class TestComputeInsight:
    def test_snapshot_serving_traits_and_summary(self, context: Context, workspace: Workspace) -> None:
        _brand(workspace).write(context.settings.lake_path)
        with context.store.transaction() as session:
            tagging.put_tag(session, workspace.id, NEW_MOM, actor=Actor.cli())
        summary = compute_insight(context, workspace, actor=Actor.cli(), as_of=AS_OF)
        assert (summary.members, summary.buyers) == (3, 2)
        assert summary.lifecycle == {"prospect": 1, "new": 0, "active": 1, "loyal": 0, "at_risk": 1, "churned": 0}
        assert summary.tags == {"new_mom": 0}
        assert summary.changes == {}  # the first snapshot is the baseline
        snapshot = _snapshot(context, workspace)
        assert snapshot["m1"]["net_spend"] == Decimal("150.00") and snapshot["m1"]["workspace_id"] == workspace.id
        assert snapshot["m1"]["as_of"] == AS_OF
        with context.store.read() as session:
            traits = service.get_traits(session, workspace.id, "m1")
            assert traits is not None
            assert traits["net_spend"] == "150.00" and traits["lifecycle_stage"] == "active"
            assert traits["last_purchase_at"] == (AS_OF - timedelta(days=20)).isoformat()
            assert service.get_tags(session, workspace.id, "m1") == []
            assert service.get_traits(session, workspace.id, "nobody") is None
            run = session.scalars(select(InsightRun)).one()
            assert run.status == "done" and run.summary["members"] == 3
            assert session.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.action == "insight.compute")) == 1

    def test_computing_twice_gives_the_same_snapshot_and_no_change(self, context: Context, workspace: Workspace) -> None:
        _brand(workspace).write(context.settings.lake_path)
        compute_insight(context, workspace, actor=Actor.cli(), as_of=AS_OF)
        first = _snapshot(context, workspace)
        summary = compute_insight(context, workspace, actor=Actor.cli(), as_of=AS_OF)
        second = _snapshot(context, workspace)
        assert summary.changes == {}
        ignore = {"computed_at", "ingested_at", "batch_id"}
        assert {m: {k: v for k, v in r.items() if k not in ignore} for m, r in first.items()} == \
               {m: {k: v for k, v in r.items() if k not in ignore} for m, r in second.items()}
        with context.store.read() as session:
            assert session.scalar(select(func.count(TraitChange.id))) == 0

    def test_changes_are_recorded_and_exported(self, context: Context, workspace: Workspace) -> None:
        b = _brand(workspace)
        b.write(context.settings.lake_path)
        with context.store.transaction() as session:
            tagging.put_tag(session, workspace.id, NEW_MOM, actor=Actor.cli())
        compute_insight(context, workspace, actor=Actor.cli(), as_of=AS_OF)
        # Bob comes back and buys for a newborn; Carol buys for the first time
        later = Brand(workspace_id=workspace.id, links=b.links)
        later.order("tmall-m2", "o4", 1, "40.00", lines=(("s1", "newborn", 1, "40.00"),))
        later.order("tmall-m3", "o5", 1, "10.00", lines=(("s2", "toys", 1, "10.00"),))
        later.write(context.settings.lake_path, stem="b2")
        summary = compute_insight(context, workspace, actor=Actor.cli(), as_of=AS_OF)
        assert summary.changes == {"lifecycle_stage": 2, "rfm_segment": 3, "tag_added": 1}
        with context.store.read() as session:
            changes = {(c.member_id, c.kind): (c.from_value, c.to_value)
                       for c in service.trait_changes(session, workspace.id)}
            assert changes[("m2", "lifecycle_stage")] == ("at_risk", "active")
            assert changes[("m3", "lifecycle_stage")] == ("prospect", "new")
            assert changes[("m2", "tag_added")] == (None, "new_mom")
            assert service.get_tags(session, workspace.id, "m2") == ["new_mom"]
            assert session.scalar(select(func.count(OutboxRow.id)).where(OutboxRow.topic == "trait_changes")) == 6
        export_outbox(context.store, context.settings.lake_path)
        warehouse = context.warehouse()
        exported = warehouse.table("trait_changes")
        assert warehouse.execute(exported.filter(exported.workspace_id == workspace.id).count()) == 6


class TestSummary:
    """The summary an operator reads after a run names every stage and segment, so an empty one shows."""

    def test_every_stage_and_segment_in_order_zeros_included(self, context: Context, workspace: Workspace) -> None:
        _brand(workspace).write(context.settings.lake_path)
        summary = compute_insight(context, workspace, actor=Actor.cli(), as_of=AS_OF)

        assert list(summary.lifecycle) == list(STAGES)  # prospect → new → active → loyal → at risk → churned
        assert summary.lifecycle["new"] == 0 and summary.lifecycle["churned"] == 0
        assert summary.aipl == {"aware": 1, "interested": 0, "purchased": 2, "loyal": 0}
        assert list(summary.aipl) == list(AIPL_STAGES)
        assert list(summary.segments) == list(RFM_SEGMENTS)
        # every member is in one segment or has none (no purchase in the RFM window)
        assert sum(summary.segments.values()) == 2 and summary.rfm_unscored == 1
        with context.store.read() as session:
            run = session.scalars(select(InsightRun)).one()
            assert run.summary["lifecycle"]["loyal"] == 0 and run.summary["rfm_unscored"] == 1

    def test_segments_follow_the_grid_in_force(self, context: Context, workspace: Workspace) -> None:
        _brand(workspace).write(context.settings.lake_path)
        grid = {r: tuple("VIP" if name == "Champions" else name for name in row)
                for r, row in InsightConfig().rfm.grid.items()}
        config = InsightConfig.model_validate({"rfm": {"grid": grid}})

        summary = compute_insight(context, workspace, actor=Actor.cli(), as_of=AS_OF, config=config)

        assert "Champions" not in summary.segments  # a segment the grid cannot give is not listed
        assert list(summary.segments) == [name for name in RFM_SEGMENTS if name != "Champions"] + ["VIP"]
