"""``insight compute``: traits and tags of a workspace, snapshotted, with the changes since the last snapshot.

1. the outbox is exported, so live orders are in the lake; traits are computed from the lake only;
2. the previous snapshot's key columns (lifecycle stage, RFM segment, tags) are compared with the new
   ones: each difference is a trait change — a state-store row and an outbox event (lake
   ``trait_changes``) in one transaction, so a journey can trigger on it. The first snapshot of a
   workspace is the baseline and records no change;
3. the snapshot replaces the workspace's file of the lake's derived ``member_traits`` table;
4. the serving subset replaces the workspace's rows of the state store (``member_trait``; a bulk load,
   ``COPY`` on PostgreSQL) in the transaction that records the run's summary: the profile shows the previous
   computation until this one commits, and keeps showing it if this one fails.

Computing twice with the same ``as_of`` and facts gives the same snapshot and records no change.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import insert

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor, record
from memberops.db.base import utcnow
from memberops.db.outbox import OutboxRow
from memberops.insight import config_store
from memberops.insight.compute import compute_traits
from memberops.insight.config import RFM_SEGMENTS, InsightConfig, RfmConfig
from memberops.insight.lifecycle import AIPL_STAGES, STAGES
from memberops.insight.models import InsightRun, TraitChange
from memberops.insight.service import save_serving_traits
from memberops.insight.tagging import tag_definitions
from memberops.lake.engine import Warehouse
from memberops.lake.export import export_outbox
from memberops.lake.registry import table_spec
from memberops.lake.writer import has_files, replace_snapshot
from memberops.runtime import Context

Progress = Callable[[str, float], None]
CHUNK = 10_000
KEYS = ("lifecycle_stage", "rfm_segment")


@dataclass
class InsightSummary:
    """What a run found. ``lifecycle``, ``aipl`` and ``segments`` name every stage of the chain and every
    RFM segment of the grid in force, in their order, zeros included: an empty stage is something to see.
    ``rfm_unscored``: members with no purchase in the RFM window (prospects included), so no segment."""

    run_id: str
    as_of: str
    members: int = 0
    buyers: int = 0
    segments: dict[str, int] = field(default_factory=dict)
    lifecycle: dict[str, int] = field(default_factory=dict)
    aipl: dict[str, int] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    clv: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    rfm_unscored: int = 0


def _counts(column: pa.ChunkedArray, names: Sequence[str] = ()) -> dict[str, int]:
    """Members per value of ``column``: every one of ``names`` first, in that order and zeros included,
    then any other value found, most members first."""
    counted = pc.value_counts(column.drop_null()).to_pylist() if len(column) else []
    found = {str(c["values"]): int(c["counts"]) for c in sorted(counted, key=lambda c: -c["counts"])}
    return {name: found.get(name, 0) for name in names} | found


def rfm_segment_names(config: RfmConfig) -> list[str]:
    """The segments the grid in force can give, in the usual order (Champions … Lost); names a workspace
    made up itself follow, in the grid's order."""
    in_grid = list(dict.fromkeys(name for r in sorted(config.grid, reverse=True) for name in config.grid[r]))
    return [name for name in RFM_SEGMENTS if name in in_grid] + [name for name in in_grid if name not in RFM_SEGMENTS]


def detect_changes(warehouse: Warehouse, workspace_id: str, new: pa.Table) -> pa.Table | None:
    """``member_id, kind, from_value, to_value`` for every key trait that differs from the previous snapshot
    of the lake's ``member_traits`` (None when there is no previous snapshot: the first is the baseline)."""
    spec = table_spec("member_traits")
    previous = warehouse.table("member_traits")
    previous = previous.filter(previous.workspace_id == workspace_id)
    if not has_files(warehouse.lake, spec) or int(warehouse.execute(previous.count())) == 0:
        return None
    current = ibis.memtable(new.select(["member_id", *KEYS, "tags"]))
    old = previous.select("member_id", *[previous[k].name(f"old_{k}") for k in KEYS], old_tags=previous.tags)
    joined = current.join(old, "member_id", how="left")
    parts = []
    for key in KEYS:
        differs = joined[key].fill_null("") != joined[f"old_{key}"].fill_null("")
        parts.append(joined.filter(differs).select(
            "member_id", kind=ibis.literal(key), from_value=joined[f"old_{key}"], to_value=joined[key]))
    new_tags = current.select("member_id", tag=current.tags.unnest())
    old_tags = old.select("member_id", tag=old.old_tags.unnest())
    added = new_tags.anti_join(old_tags, ["member_id", "tag"])
    removed = old_tags.anti_join(new_tags, ["member_id", "tag"]).semi_join(current, "member_id")
    null = ibis.null().cast("string")
    parts.append(added.select("member_id", kind=ibis.literal("tag_added"), from_value=null, to_value=added.tag))
    parts.append(removed.select("member_id", kind=ibis.literal("tag_removed"), from_value=removed.tag, to_value=null))
    changes = ibis.union(*parts).order_by(["member_id", "kind", "from_value", "to_value"])
    return warehouse.to_pyarrow(changes)


def _record_changes(context: Context, workspace_id: str, run_id: str, changes: pa.Table, at: datetime) -> None:
    rows = changes.to_pylist()
    with context.store.transaction() as session:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start:start + CHUNK]
            session.execute(insert(TraitChange), [
                {"workspace_id": workspace_id, "run_id": run_id, "changed_at": at, **row} for row in chunk])
            session.execute(insert(OutboxRow), [
                {"workspace_id": workspace_id, "topic": "trait_changes", "created_at": at,
                 "payload": {"run_id": run_id, "changed_at": at.isoformat(), **row}} for row in chunk])


def compute_insight(context: Context, workspace: Workspace, *, actor: Actor, as_of: datetime | None = None,
                    config: InsightConfig | None = None, progress: Progress | None = None) -> InsightSummary:
    """Compute, snapshot and serve every trait and tag of ``workspace``; see the module docstring. Without
    ``config``, the workspace's stored settings in force (``config_store.current``) decide the traits."""
    started = time.perf_counter()
    report = progress or (lambda _phase, _fraction: None)
    as_of = (as_of or utcnow()).astimezone(UTC)
    with context.store.transaction() as session:
        run = InsightRun(workspace_id=workspace.id, as_of=as_of)
        session.add(run)
        session.flush()
        run_id = run.id
        tags = tag_definitions(session, workspace.id)
        # the run records which stored version decided its traits (None: a config given by the caller)
        config_version: int | None = None
        if config is None:
            config, config_version = config_store.current_version(session, workspace.id)
    summary = InsightSummary(run_id=run_id, as_of=as_of.isoformat())
    report("exporting live facts", 0.02)
    export_outbox(context.store, context.settings.lake_path, batch_size=context.settings.outbox_batch_size)
    warehouse = context.warehouse()
    computed_at = utcnow()
    computed = compute_traits(warehouse, workspace.id, as_of=as_of, config=config, tags=tags,
                              computed_at=computed_at, progress=report)
    traits = computed.table
    report("detecting changes", 0.96)
    changes = detect_changes(warehouse, workspace.id, traits)
    if changes is not None and changes.num_rows:
        _record_changes(context, workspace.id, run_id, changes, computed_at)
        summary.changes = dict(Counter(changes["kind"].to_pylist()))
    report("writing the snapshot", 0.97)
    n = traits.num_rows
    stamped = (traits.append_column("workspace_id", pa.array([workspace.id] * n, pa.string()))
               .append_column("batch_id", pa.array([run_id] * n, pa.string()))
               .append_column("ingested_at", pa.array([computed_at] * n, pa.timestamp("us", tz="UTC"))))
    replace_snapshot(context.settings.lake_path, table_spec("member_traits"), workspace.id, stamped)
    warehouse.refresh("member_traits")
    summary.members = n
    summary.buyers = int(pc.sum(pc.greater(traits["orders"], 0)).as_py() or 0)
    summary.segments = _counts(traits["rfm_segment"], rfm_segment_names(config.rfm))
    summary.rfm_unscored = traits["rfm_segment"].null_count
    summary.lifecycle = _counts(traits["lifecycle_stage"], STAGES)
    summary.aipl = _counts(traits["aipl_stage"], AIPL_STAGES)
    summary.tags = {tag.name: 0 for tag in tags} | _counts(pc.list_flatten(traits["tags"]))
    summary.clv = computed.value_fit.as_dict()
    report("serving traits", 0.98)
    with context.store.transaction() as session:
        save_serving_traits(session, workspace.id, traits, computed_at)
        finished = session.get(InsightRun, run_id)
        assert finished is not None
        summary.seconds = round(time.perf_counter() - started, 2)
        finished.status = "done"
        finished.finished_at = utcnow()
        finished.summary = {**asdict(summary), "timings": computed.timings, "config_version": config_version}
        record(session, actor, "insight.compute", workspace_id=workspace.id, target_type="insight_run",
               target_id=run_id, detail={"members": summary.members, "as_of": summary.as_of})
    return summary


def compute_every_workspace(context: Context, *, actor: Actor) -> list[InsightSummary]:
    """``compute_insight`` for each workspace with resolved members (the nightly job)."""
    from memberops.accounts.service import list_workspaces
    from memberops.identity.service import count_members

    with context.store.read() as session:
        workspaces = [w for w in list_workspaces(session) if count_members(session, w.id)]
    return [compute_insight(context, workspace, actor=actor) for workspace in workspaces]
