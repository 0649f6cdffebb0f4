"""OneID batch resolution: every identity record to a stable member id.

1. the outbox is exported, so records posted live are in the lake too;
2. the newest version of each record is stitched deterministically (``identity/stitch.py``), with the
   operator's decisions: forced merges, pins apart, splits;
3. **stable ids**: each component keeps the member id most of its records already had (ties: the
   oldest id); a member id is kept by one component only — the one holding most of its records (ties:
   the component whose first record sorts first); a component no prior id reaches gets a new one. Ids that lose all their records point at the member
   that absorbed them (``merged_into_id``), so an id once given out always leads somewhere;
4. the state store's serving identity map (``identity_link``) and members are updated in one
   transaction with an event per merge and unmerge, and the map is exported to the lake
   (``identity_map``), which every analytical query joins facts through.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import ibis
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Table, bindparam, delete, insert, select, update

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.db.base import utcnow
from memberops.db.dialect import insert_ignoring_conflicts, insert_many
from memberops.identity import config as identity_config
from memberops.identity.golden import golden_records
from memberops.identity.matching import MatchSettings
from memberops.identity.models import (
    FlaggedIdentifier,
    Identifier,
    IdentityDecision,
    IdentityEvent,
    IdentityLink,
    Member,
    ResolutionRun,
)
from memberops.identity.probabilistic import score_pairs
from memberops.identity.review import queue_pairs
from memberops.identity.stitch import (
    StitchRules,
    flagged_of,
    identifier_links,
    latest_records,
    merges_by_rule,
    shared_identifiers,
    stitch,
)
from memberops.ids import new_id
from memberops.lake.export import export_outbox
from memberops.lake.registry import table_spec
from memberops.lake.writer import replace_snapshot
from memberops.runtime import Context

Progress = Callable[[str], None]
CHUNK = 10_000
REVIEW_LIMIT = 10_000  # the most likely pairs of a run; an operator reviews the top of the queue first


@dataclass
class ResolutionSummary:
    run_id: str
    records: int = 0
    members: int = 0
    new_members: int = 0
    merged_members: int = 0
    unmerged_members: int = 0
    records_moved: int = 0
    merges_by_rule: dict[str, int] = field(default_factory=dict)
    flagged_identifiers: int = 0
    decisions_applied: int = 0
    pairs_for_review: int = 0


def _decisions(context: Context, workspace: Workspace) -> list[IdentityDecision]:
    with context.store.read() as session:
        return list(session.scalars(select(IdentityDecision).where(
            IdentityDecision.workspace_id == workspace.id, IdentityDecision.revoked_at.is_(None),
        ).order_by(IdentityDecision.id)))


def _prior_links(context: Context, workspace: Workspace) -> pa.Table:
    with context.store.read() as session:
        rows = session.execute(select(IdentityLink.channel, IdentityLink.source_id, IdentityLink.member_id).where(
            IdentityLink.workspace_id == workspace.id)).all()
    return pa.table({
        "channel": pa.array([r[0] for r in rows], pa.string()),
        "source_id": pa.array([r[1] for r in rows], pa.string()),
        "prior_member_id": pa.array([r[2] for r in rows], pa.string()),
    })


def _decision_tables(decisions: list[IdentityDecision], records: ibis.Table) -> tuple[Any, Any, list[tuple[str, str]]]:
    """Forced merge edges ``(node, key)``, pins ``(pin_id, node_a, node_b)`` and split records."""
    merges = [d for d in decisions if d.kind == "merge"]
    pins = [d for d in decisions if d.kind == "pin_apart"]
    splits = [(d.channel_a, d.source_id_a) for d in decisions if d.kind == "split"]
    keyed = records.select("node", "channel", "source_id")
    forced = None
    if merges:
        ends = ibis.memtable(pa.table({
            "channel": [c for d in merges for c in (d.channel_a, d.channel_b)],
            "source_id": [s for d in merges for s in (d.source_id_a, d.source_id_b)],
            "key": [f"merge:{d.id}" for d in merges for _ in (0, 1)],
        }))
        forced = ends.join(keyed, ["channel", "source_id"]).select("node", "key")
    pin_table = None
    if pins:
        sides = ibis.memtable(pa.table({
            "pin_id": pa.array([d.id for d in pins], pa.int64()),
            "channel_a": [d.channel_a for d in pins], "source_id_a": [d.source_id_a for d in pins],
            "channel_b": [d.channel_b for d in pins], "source_id_b": [d.source_id_b for d in pins],
        }))
        a = keyed.rename(node_a="node", channel_a="channel", source_id_a="source_id")
        b = keyed.rename(node_b="node", channel_b="channel", source_id_b="source_id")
        pin_table = sides.join(a, ["channel_a", "source_id_a"]).join(b, ["channel_b", "source_id_b"]).select(
            "pin_id", "node_a", "node_b")
    return forced, pin_table, splits


def resolve_identities(
    context: Context, workspace: Workspace, *, actor: Actor, rules: StitchRules | None = None,
    progress: Progress | None = None, probabilistic: bool = True, threshold: float | None = None,
    match_settings: MatchSettings | None = None,
) -> ResolutionSummary:
    """Resolve every identity record of ``workspace`` to a member; see the module docstring.

    With ``probabilistic``, records sharing no strong identifier are also compared (Fellegi–Sunter,
    ``identity/probabilistic.py``): pairs at or above ``threshold`` join like a shared identifier (last
    in trust, under the same guard rails), pairs in the band below it go to the review queue.
    """
    with context.store.read() as session:
        settings, _ = identity_config.current(session, workspace.id)
    rules = rules or settings.stitch_rules()
    match_settings = match_settings or settings.match_settings()
    if threshold is not None:
        match_settings = match_settings.model_copy(update={"match_threshold": threshold})
    report = progress or (lambda _phase: None)
    with context.store.transaction() as session:
        run = ResolutionRun(workspace_id=workspace.id)
        session.add(run)
        session.flush()
        run_id = run.id
    summary = ResolutionSummary(run_id)
    report("exporting live records")
    export_outbox(context.store, context.settings.lake_path, batch_size=context.settings.outbox_batch_size)

    warehouse = context.warehouse()
    report("reading records")
    records = warehouse.materialise(latest_records(warehouse, workspace.id))
    links = warehouse.materialise(identifier_links(records, rules))
    # stitching reuses this aggregate (the same expression, materialised once)
    shared = warehouse.materialise(shared_identifiers(links, rules))
    flagged = warehouse.to_pyarrow(flagged_of(shared, rules))
    usable = links.anti_join(ibis.memtable(flagged.select(["type", "value"])), ["type", "value"]) if flagged.num_rows else links
    decisions = _decisions(context, workspace)
    forced, pins, splits = _decision_tables(decisions, records)
    excluded: list[int] = []
    if splits:
        split_table = ibis.memtable(pa.table({"channel": [c for c, _ in splits], "source_id": [s for _, s in splits]}))
        excluded = [int(n) for n in warehouse.to_pyarrow(records.join(split_table, ["channel", "source_id"]).select("node"))
                    .column("node").to_pylist()]

    report("stitching")
    components = warehouse.materialise(
        stitch(warehouse, records, links, rules, forced=forced, pins=pins, excluded_nodes=excluded))
    stages = {row["type"]: int(row["records"])
              for row in warehouse.to_pyarrow(merges_by_rule(usable, components, rules)).to_pylist()}
    review_pairs: list[dict[str, Any]] = []
    if probabilistic:
        report("comparing records without a shared identifier")
        scored = score_pairs(warehouse, records, settings=match_settings, exclude_same=components).pairs
        likely = scored.filter(scored.match_probability >= match_settings.match_threshold)
        probable = warehouse.materialise(ibis.union(
            likely.select(node=likely.node_l, key=likely.node_l.cast("string").concat(":", likely.node_r.cast("string"))),
            likely.select(node=likely.node_r, key=likely.node_l.cast("string").concat(":", likely.node_r.cast("string"))),
        ))
        before = int(warehouse.execute(components.component.nunique()))
        components = warehouse.materialise(stitch(
            warehouse, records, links, rules, forced=forced, pins=pins, excluded_nodes=excluded, probable=probable))
        stages["probabilistic"] = before - int(warehouse.execute(components.component.nunique()))
        review_pairs = _review_band(warehouse, records, components, scored, match_settings)
    report("assigning member ids")
    assigned = _assign_member_ids(warehouse, records, components, _prior_links(context, workspace))
    summary.records = assigned.num_rows
    summary.merges_by_rule = stages
    summary.flagged_identifiers = flagged.num_rows
    summary.decisions_applied = len(decisions)

    report("saving")
    identifiers = _serving_identifiers(warehouse, records, links, assigned)
    _save(context, workspace, run_id, assigned, flagged, actor, summary, identifiers)
    if review_pairs:
        with context.store.transaction() as session:
            summary.pairs_for_review = queue_pairs(session, workspace.id, run_id, review_pairs)
    report("exporting the identity map")
    now = utcnow()
    identity_map = assigned.select(["channel", "source_id", "member_id"])
    replace_snapshot(context.settings.lake_path, table_spec("identity_map"), workspace.id,
                     _stamped(identity_map, workspace.id, run_id, now))
    report("choosing golden records")
    golden = warehouse.to_pyarrow(golden_records(records, ibis.memtable(identity_map)))
    replace_snapshot(context.settings.lake_path, table_spec("golden_records"), workspace.id,
                     _stamped(golden, workspace.id, run_id, now))
    with context.store.transaction() as session:
        finished = session.get(ResolutionRun, run_id)
        assert finished is not None
        finished.status = "done"
        finished.finished_at = utcnow()
        finished.summary = asdict(summary)
    return summary


def _review_band(warehouse: Any, records: ibis.Table, components: ibis.Table, scored: ibis.Table,
                 settings: MatchSettings) -> list[dict[str, Any]]:
    """Pairs likely enough to show an operator, not likely enough to merge, and still apart."""
    band = scored.filter((scored.match_probability >= settings.review_threshold)
                         & (scored.match_probability < settings.match_threshold))
    left = components.rename(node_l="node", component_l="component")
    right = components.rename(node_r="node", component_r="component")
    apart = band.join(left, "node_l").join(right, "node_r").filter(lambda t: t.component_l != t.component_r)
    a = records.select(node_l=records.node, channel_a=records.channel, source_id_a=records.source_id)
    b = records.select(node_r=records.node, channel_b=records.channel, source_id_b=records.source_id)
    named = apart.join(a, "node_l").join(b, "node_r").select(
        "channel_a", "source_id_a", "channel_b", "source_id_b", match_probability=apart.match_probability.cast("float64"))
    return warehouse.to_pyarrow(named.order_by(ibis.desc("match_probability")).limit(REVIEW_LIMIT)).to_pylist()


def _stamped(table: pa.Table, workspace_id: str, run_id: str, at: Any) -> pa.Table:
    """``table`` with the lake's common columns (workspace, the run that made it, when)."""
    n = table.num_rows
    return (table.append_column("workspace_id", pa.array([workspace_id] * n, pa.string()))
            .append_column("batch_id", pa.array([run_id] * n, pa.string()))
            .append_column("ingested_at", pa.array([at] * n, pa.timestamp("us", tz="UTC"))))


def _assign_member_ids(warehouse: Any, records: ibis.Table, components: ibis.Table, prior: pa.Table) -> pa.Table:
    """``(channel, source_id, component, prior_member_id, member_id)``: stable ids, see the module docstring."""
    by_record = records.select("node", "channel", "source_id").join(components, "node")
    joined = by_record.join(ibis.memtable(prior), ["channel", "source_id"], how="left")
    per_record = warehouse.materialise(joined.select("channel", "source_id", "component", "prior_member_id"))
    # a component's first record (by channel and source id) breaks ties the same way on every run,
    # whatever numbers the engine gave the nodes
    first_key = per_record.group_by("component").aggregate(
        first_key=per_record.channel.concat("\x1f", per_record.source_id).min())
    votes = per_record.filter(per_record.prior_member_id.notnull()).group_by(["component", "prior_member_id"]).aggregate(
        n=ibis._.count()).join(first_key, "component")
    choice = votes.mutate(rank=ibis.row_number().over(
        group_by=votes.component, order_by=[votes.n.desc(), votes.prior_member_id])).filter(ibis._.rank == 0)
    winner = choice.mutate(rank=ibis.row_number().over(
        group_by=choice.prior_member_id, order_by=[choice.n.desc(), choice.first_key])).filter(ibis._.rank == 0)
    kept = winner.select("component", kept_member_id=winner.prior_member_id)
    result = per_record.join(kept, "component", how="left")
    table = warehouse.to_pyarrow(result.select("channel", "source_id", "component", "prior_member_id", "kept_member_id"))
    # components no prior id reaches get new ids: one per component, minted here (ids sort by creation)
    without = pc.unique(table.filter(pc.is_null(table["kept_member_id"]))["component"])
    fresh = dict(zip(without.to_pylist(), (new_id() for _ in range(len(without))), strict=True))
    fresh_ids = pa.array([fresh.get(c) for c in table["component"].to_pylist()], pa.string()) if fresh else None
    member_id = pc.coalesce(table["kept_member_id"], fresh_ids) if fresh_ids is not None else table["kept_member_id"]
    return table.drop_columns(["kept_member_id"]).append_column("member_id", member_id)


def _serving_identifiers(warehouse: Any, records: ibis.Table, links: ibis.Table, assigned: pa.Table) -> pa.Table:
    """``(type, value, channel, member_id)`` for the strong identifiers of the records this run placed anew
    (new or moved), so the live path finds the person a batch run made by any of their identifiers."""
    placed = assigned.filter(pc.or_kleene(pc.is_null(assigned["prior_member_id"]),
                                          pc.not_equal(assigned["prior_member_id"], assigned["member_id"])))
    if placed.num_rows == 0:
        return pa.table({"type": pa.array([], pa.string()), "value": pa.array([], pa.string()),
                         "channel": pa.array([], pa.string()), "member_id": pa.array([], pa.string())})
    by_record = links.join(records.select("node", "channel", "source_id"), "node")
    joined = by_record.join(ibis.memtable(placed.select(["channel", "source_id", "member_id"])),
                            ["channel", "source_id"])
    return warehouse.to_pyarrow(joined.select("type", "value", "channel", "member_id").distinct())


def _write_identifiers(session: Any, workspace_id: str, identifiers: pa.Table, now: Any) -> None:
    """Add the identifiers a run placed to their members (an identifier already held is left as it is)."""
    statement = insert_ignoring_conflicts(session, cast(Table, Identifier.__table__),
                                          ("workspace_id", "type", "value", "member_id"))
    insert_many(session, statement, identifiers.to_pydict(), {"workspace_id": workspace_id, "created_at": now},
                chunk=CHUNK)


def _save(context: Context, workspace: Workspace, run_id: str, assigned: pa.Table, flagged: pa.Table, actor: Actor,
          summary: ResolutionSummary, identifiers: pa.Table) -> None:
    """Write members, the serving identity map and the events of this run in one transaction.

    Only what changed crosses into Python: new records, moved records and the few members merged or split.
    """
    current_ids = set(pc.unique(assigned["member_id"]).to_pylist())
    summary.members = len(current_ids)
    is_new = pc.is_null(assigned["prior_member_id"])
    is_moved = pc.and_(pc.invert(is_new), pc.not_equal(assigned["prior_member_id"], assigned["member_id"]))
    moved = assigned.filter(is_moved)
    summary.records_moved = moved.num_rows
    flows = moved.group_by(["prior_member_id", "member_id"]).aggregate([("channel", "count")]).to_pylist()
    destinations: dict[str, Counter[str]] = defaultdict(Counter)
    for flow in flows:  # one row per (old id, new id) pair that moved: merges and splits, not records
        destinations[flow["prior_member_id"]][flow["member_id"]] += flow["channel_count"]
    now = utcnow()
    who = f"{actor.type}:{actor.id}"

    def event(kind: str, member_id: str, other: str | None) -> dict[str, Any]:
        return {"workspace_id": workspace.id, "kind": kind, "member_id": member_id, "other_member_id": other,
                "rule": "resolution", "actor": who, "run_id": run_id, "at": now}

    with context.store.transaction() as session:
        existing = set(session.scalars(select(Member.id).where(Member.workspace_id == workspace.id)))
        created = sorted(current_ids - existing)
        summary.new_members = len(created)
        insert_many(session, insert(Member), {"id": created}, {
            "workspace_id": workspace.id, "is_enrolled": False, "enrolled_at": None, "merged_into_id": None,
            "created_at": now, "updated_at": now}, chunk=CHUNK)
        absorbed = session.scalars(select(Member.id).where(
            Member.workspace_id == workspace.id, Member.merged_into_id.is_not(None))).all()
        revived = [m for m in absorbed if m in current_ids]  # absorbed once, holding records again
        if revived:
            session.execute(update(Member).where(Member.id.in_(revived)).values(merged_into_id=None, updated_at=now))
        summary.unmerged_members = len(revived)
        events = [event("unmerge", m, None) for m in revived]
        gone = [m for m in destinations if m not in current_ids]
        for member_id in gone:
            survivor = destinations[member_id].most_common(1)[0][0]
            session.execute(update(Member).where(Member.id == member_id).values(merged_into_id=survivor, updated_at=now))
            events.append(event("merge", survivor, member_id))
        events += [event("split", member_id, target) for member_id, targets in destinations.items()
                   if member_id in current_ids for target in targets]
        summary.merged_members = len(gone)
        for start in range(0, len(events), CHUNK):
            session.execute(insert(IdentityEvent), events[start:start + CHUNK])
        _write_links(session, workspace.id, assigned.filter(is_new), moved, now)
        _write_identifiers(session, workspace.id, identifiers, now)
        if gone:  # the absorbed members' loyalty (membership, points, coupons, benefits) moves in this transaction
            from memberops.loyalty.merge import absorb_merged_members

            absorb_merged_members(session, workspace, {m: destinations[m].most_common(1)[0][0] for m in gone})
        session.execute(delete(FlaggedIdentifier).where(FlaggedIdentifier.workspace_id == workspace.id))
        flagged_rows = [{"workspace_id": workspace.id, "type": f["type"], "value": f["value"],
                         "records": int(f["records"]), "run_id": run_id} for f in flagged.to_pylist()]
        for start in range(0, len(flagged_rows), CHUNK):
            session.execute(insert(FlaggedIdentifier), flagged_rows[start:start + CHUNK])


def _write_links(session: Any, workspace_id: str, new: pa.Table, moved: pa.Table, now: Any) -> None:
    """The serving identity map: new records inserted, moved records re-pointed (bulk statements)."""
    insert_many(session, insert(IdentityLink), new.select(["channel", "source_id", "member_id"]).to_pydict(),
                {"workspace_id": workspace_id, "created_at": now}, chunk=CHUNK)
    moved_rows = moved.select(["channel", "source_id", "member_id"]).to_pylist()
    if moved_rows:
        statement = (
            update(IdentityLink.__table__)  # type: ignore[arg-type]
            .where(IdentityLink.__table__.c.workspace_id == workspace_id,
                   IdentityLink.__table__.c.channel == bindparam("b_channel"),
                   IdentityLink.__table__.c.source_id == bindparam("b_source_id"))
            .values(member_id=bindparam("b_member_id"))
        )
        for start in range(0, len(moved_rows), CHUNK):
            session.connection().execute(statement, [
                {"b_channel": r["channel"], "b_source_id": r["source_id"], "b_member_id": r["member_id"]}
                for r in moved_rows[start:start + CHUNK]])
