"""Points for history: replay enrolled members' orders and refunds from the lake through the live ledger rules.

Orders imported in bulk never passed the live path, so they earned nothing. The backfill reads them
(and their refunds) through the warehouse, tied to members by the identity map, and replays each member's
history in time order by the live rules (:func:`memberops.loyalty.points.earn_for_order`,
:func:`~memberops.loyalty.points.reverse_for_refund`), the movement time being the order's (or refund's)
own time: member days, birthday months and caps use the order's local date, lots lapse as the replay
reaches their expiry, and a final catch-up brings every replayed member to ``now``.

An order earns only from the member's enrolment on (``Membership.enrolled_at``; a member marked
``is_enrolled`` without a membership gets one dated from ``Member.enrolled_at``): purchases made before
joining earn nothing, the usual programme rule. Every movement carries the same idempotency key as the
live path (``order:{channel}:{order_id}``, ``refund:{channel}:{refund_id}``), so a rerun, or a later live
post of the same order, never earns or reverses twice.

Events of the types the programme rewards (``events``) are replayed in the same timelines as
:func:`memberops.loyalty.event_earning.earn_for_event` would, keyed like the live path
(``{channel}:{event_id}``), so streaks, caps and once-per-member rules count them as if they had been
posted live in time order.

The same orders and refunds count toward spend and order-count tiers, and earn growth value when the
tiers count growth (:mod:`memberops.loyalty.backfill_tiers`), each once however often the backfill runs.

Reading the lake is one query per table (order lines only when the programme has category or SKU rules,
events only when it rewards some). The ledger is written set-based (:func:`backfill_points`: a chunk of
members read, replayed in memory by :mod:`memberops.loyalty.backfill_replay` and written in a few bulk
statements by :mod:`memberops.loyalty.backfill_bulk`); :func:`backfill_points_per_member` makes the same
ledger through the live calls one movement at a time, and the tests hold the two equal.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.db.dialect import locked
from memberops.identity.models import Member
from memberops.ingest.models import LiveOrder, LiveRefund
from memberops.insight import config_store
from memberops.insight.config import InsightConfig
from memberops.lake.engine import Warehouse
from memberops.loyalty import backfill_bulk as bulk
from memberops.loyalty import enrolment, event_earning, ledger, points
from memberops.loyalty.backfill_replay import PastEvent, PastOrder, PastRefund
from memberops.loyalty.backfill_tiers import record_tier_history
from memberops.loyalty.event_models import EventEarning
from memberops.loyalty.models import Membership, PointsAccount, PointsMovement
from memberops.loyalty.programme import Programme
from memberops.loyalty.programmes import ActiveProgramme
from memberops.runtime import Context


@dataclass(frozen=True)
class Chunks:
    """How much one backfill transaction takes on: members replayed in memory and written together
    (``bulk_members``), members replayed through the ledger's own calls (``ledger_members``), and rows
    recorded for the tiers (``tier_rows``)."""

    bulk_members: int
    ledger_members: int
    tier_rows: int


# PostgreSQL locks the chunk's members' rows alone: the point of sale keeps writing for everyone else, so
# large chunks buy throughput. SQLite has one writer for the whole store: every live order waits for the
# chunk's commit (busy_timeout), so a chunk there stays small — a fraction of a second of writing even on a
# loaded machine (the set-based replay writes a member in ~4 ms under load, the ledger's calls in ~70 ms),
# far below the 8 s a 2,000-member chunk held the lock and the live path's busy timeout.
POSTGRESQL_CHUNKS = Chunks(bulk_members=2_000, ledger_members=500, tier_rows=20_000)
SQLITE_CHUNKS = Chunks(bulk_members=100, ledger_members=10, tier_rows=2_000)


def chunks_for(dialect: str) -> Chunks:
    """The chunk sizes of a store: short write transactions on SQLite, large ones on PostgreSQL."""
    return SQLITE_CHUNKS if dialect == "sqlite" else POSTGRESQL_CHUNKS

Progress = Callable[[int, int], None]  # (members replayed, members to replay)


@dataclass(frozen=True)
class BackfillSummary:
    members: int  # enrolled members considered
    orders: int  # orders that earned points in this run
    points_earned: int
    refunds: int  # refunds that reversed points in this run
    points_reversed: int
    skipped_before_enrolment: int  # orders placed before their buyer enrolled
    already_posted: int  # orders and refunds whose movement existed (a rerun, or posted live)
    seconds: float
    events: int = 0  # events of rewarded types that earned points in this run
    points_for_events: int = 0
    tier_orders: int = 0  # imported orders recorded for spend and order-count tiers (backfill_tiers)
    growth_movements: int = 0  # growth value of imported orders and refunds, when tiers count growth


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_ORDER_COLUMNS = ("member_id", "ordered_at", "gross_amount", "shipping_amount", "paid_amount")


def read_history(warehouse: Warehouse, workspace_id: str, *, since: datetime | None = None,
                 uncounted_statuses: tuple[str, ...] = InsightConfig().uncounted_statuses) -> tuple[pa.Table, pa.Table]:
    """The workspace's orders (``member_id`` from the identity map) and their refunds, as Arrow tables.

    ``since`` limits the orders, never the refunds: a refund imported after an earlier run, of an order
    placed before ``since``, is read too, with its order's columns (``member_id``, ``ordered_at``,
    ``gross_amount``, ``shipping_amount``, ``paid_amount``), so it is reversed and its order's tier row
    refreshed. Every refund row carries those columns."""
    identity_map = warehouse.table("identity_map")
    links = identity_map.filter(identity_map.workspace_id == workspace_id).select(
        "channel", customer_key="source_id", member_id="member_id")
    orders = warehouse.table("orders")
    orders = orders.filter(orders.workspace_id == workspace_id)
    if uncounted_statuses:
        orders = orders.filter(orders.status.isnull() | ~orders.status.isin(list(uncounted_statuses)))
    every = orders.join(links, ["channel", "customer_key"]).select(
        "member_id", "channel", "order_id", "ordered_at", "gross_amount", "shipping_amount", "paid_amount")
    owned = every
    if since is not None:
        owned = every.filter(every.ordered_at >= ibis.literal(_utc(since), type="timestamp('UTC')"))
    refunds = warehouse.table("refunds")
    refunds = refunds.filter(refunds.workspace_id == workspace_id)
    refunded = refunds.join(every, ["channel", "order_id"]).select(
        "channel", "refund_id", "order_id", "refunded_at", "amount", *_ORDER_COLUMNS)
    return warehouse.to_pyarrow(owned), warehouse.to_pyarrow(refunded)


def _key(channel: str, order_id: str) -> str:
    return f"{channel}\x1f{order_id}"


def _keys(table: pa.Table) -> pa.Array:
    """Each row's order as one string (:func:`_key`), so sets of orders are compared by Arrow, not in Python."""
    return pc.binary_join_element_wise(pc.cast(table["channel"], pa.string()), pc.cast(table["order_id"], pa.string()),
                                       "\x1f")


def merge_refunds(lake: pa.Table, live: list[dict[str, Any]], orders: pa.Table) -> pa.Table:
    """The lake's refunds and the live ones (``live_refund`` rows: ``channel``, ``refund_id``, ``order_id``,
    ``refunded_at``, ``amount``), each refund once by its natural key (``channel``, ``refund_id``).

    A live refund is exported to the lake through the outbox, so the same refund is often in both; one the
    export has not reached yet, or a refund only a marketplace file brought, is in one alone. Summing the
    distinct refunds is exact where taking either source's total (or the larger) is not. A live refund is
    kept when its order is known here (in ``orders``, or named by a lake refund), with that order's columns."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    named = pa.array(sorted({_key(row["channel"], row["order_id"]) for row in live}), pa.string())
    # only the orders live refunds name are turned into Python rows, not every order of the workspace
    known = {(row["channel"], row["order_id"]): row
             for row in orders.filter(pc.is_in(_keys(orders), value_set=named)).to_pylist()}
    for row in lake.to_pylist():
        rows.setdefault((row["channel"], row["refund_id"]), row)  # a refund file may repeat a refund
        known.setdefault((row["channel"], row["order_id"]), row)
    for row in live:
        order = known.get((row["channel"], row["order_id"]))
        if order is not None:
            rows.setdefault((row["channel"], row["refund_id"]),
                            {**row, **{name: order[name] for name in _ORDER_COLUMNS}})
    schema = lake.schema
    return pa.Table.from_pylist([{name: row[name] for name in schema.names} for row in rows.values()], schema=schema)


def refunded_orders(orders: pa.Table, refunds: pa.Table) -> pa.Table:
    """``orders`` and the orders of ``refunds`` not among them (placed before ``since``), one row each."""
    elsewhere = refunds.filter(pc.invert(pc.is_in(_keys(refunds), value_set=_keys(orders))))
    extra: dict[tuple[str, str], dict[str, Any]] = {}
    for row in elsewhere.to_pylist():
        extra.setdefault((row["channel"], row["order_id"]), {name: row[name] for name in orders.schema.names})
    if not extra:
        return orders
    return pa.concat_tables([orders, pa.Table.from_pylist(list(extra.values()), schema=orders.schema)])


def _live_refunds(session: Session, workspace_id: str) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in session.execute(select(
        LiveRefund.channel, LiveRefund.refund_id, LiveRefund.order_id, LiveRefund.refunded_at, LiveRefund.amount)
        .where(LiveRefund.workspace_id == workspace_id))]


def read_lines(warehouse: Warehouse, workspace_id: str, *, since: datetime | None = None) -> pa.Table:
    """The lines of the workspace's orders bought by a known person (one query, joined set-based to the
    orders the backfill reads), for category and SKU earn rules."""
    identity_map = warehouse.table("identity_map")
    links = identity_map.filter(identity_map.workspace_id == workspace_id).select(
        "channel", customer_key="source_id")
    orders = warehouse.table("orders")
    orders = orders.filter(orders.workspace_id == workspace_id)
    if since is not None:
        orders = orders.filter(orders.ordered_at >= ibis.literal(_utc(since), type="timestamp('UTC')"))
    owned = orders.join(links, ["channel", "customer_key"]).select("channel", "order_id").distinct()
    items = warehouse.table("order_items")
    items = items.filter(items.workspace_id == workspace_id).join(owned, ["channel", "order_id"])
    return warehouse.to_pyarrow(items.select("channel", "order_id", "line_no", "sku", "category", "quantity",
                                             "amount").order_by(["channel", "order_id", "line_no"]))


def read_events(warehouse: Warehouse, workspace_id: str, types: list[str], *,
                since: datetime | None = None) -> pa.Table:
    """The lake's events of ``types`` by known people (``member_id`` from the identity map), one query."""
    identity_map = warehouse.table("identity_map")
    links = identity_map.filter(identity_map.workspace_id == workspace_id).select(
        "channel", customer_key="source_id", member_id="member_id")
    events = warehouse.table("events")
    events = events.filter(events.workspace_id == workspace_id, events.type.isin(types), events.customer_key.notnull())
    if since is not None:
        events = events.filter(events.occurred_at >= ibis.literal(_utc(since), type="timestamp('UTC')"))
    return warehouse.to_pyarrow(events.join(links, ["channel", "customer_key"]).select(
        "member_id", "channel", "event_id", "type", "occurred_at"))


def _lines_by_order(lines: pa.Table | None) -> dict[tuple[str, str], tuple[ledger.OrderLine, ...]]:
    grouped: dict[tuple[str, str], list[ledger.OrderLine]] = defaultdict(list)
    if lines is not None:
        for row in lines.to_pylist():
            if row["sku"] is None or row["amount"] is None:
                continue
            grouped[(row["channel"], row["order_id"])].append(
                ledger.OrderLine(row["sku"], row["category"], row["quantity"] or 0, row["amount"]))
    return {key: tuple(found) for key, found in grouped.items()}


def _timelines(orders: pa.Table, refunds: pa.Table, enrolled: dict[str, datetime],
               lines: pa.Table | None = None) -> tuple[dict[str, list[tuple[datetime, int, PastOrder | PastRefund]]], int]:
    """Each enrolled member's orders (from enrolment on, with their ``lines`` when given) and refunds, in
    time order; and how many orders were placed before their buyer enrolled."""
    by_order: dict[tuple[str, str], PastOrder] = {}
    timelines: dict[str, list[tuple[datetime, int, PastOrder | PastRefund]]] = defaultdict(list)
    order_lines = _lines_by_order(lines)
    before = 0
    for row in orders.to_pylist():
        joined = enrolled.get(row["member_id"])
        if joined is None or row["paid_amount"] is None:
            continue
        order = PastOrder(row["member_id"], row["channel"], row["order_id"], _utc(row["ordered_at"]),
                       row["gross_amount"], row["shipping_amount"], row["paid_amount"],
                       order_lines.get((row["channel"], row["order_id"]), ()))
        if order.ordered_at < joined:
            before += 1
            continue
        by_order[(order.channel, order.order_id)] = order
        timelines[order.member_id].append((order.ordered_at, 0, order))
    for row in refunds.to_pylist():
        earned = by_order.get((row["channel"], row["order_id"])) or _earlier_order(row, enrolled)
        if earned is None or row["amount"] is None or row["refunded_at"] is None:
            continue
        refund = PastRefund(row["channel"], row["refund_id"], _utc(row["refunded_at"]), row["amount"], earned)
        timelines[earned.member_id].append((refund.refunded_at, 1, refund))
    for events in timelines.values():
        events.sort(key=lambda event: (event[0], event[1], _event_id(event[2])))
    return timelines, before


def _earlier_order(row: dict[str, Any], enrolled: dict[str, datetime]) -> PastOrder | None:
    """The order a refund names when the run does not replay it (placed before ``since``): its points, if
    it earned any in an earlier run, are in the ledger, and the refund takes its share of them back."""
    joined = enrolled.get(row["member_id"])
    if joined is None or row["paid_amount"] is None or _utc(row["ordered_at"]) < joined:
        return None
    return PastOrder(row["member_id"], row["channel"], row["order_id"], _utc(row["ordered_at"]),
                     row["gross_amount"], row["shipping_amount"], row["paid_amount"])


def _add_events(timelines: dict[str, list[tuple[datetime, int, Any]]], events: pa.Table,
                enrolled: dict[str, datetime]) -> None:
    """Each enrolled member's rewarded events from enrolment on, merged into their timeline in time order
    (after an order or refund of the same instant)."""
    touched: set[str] = set()
    for row in events.to_pylist():
        joined = enrolled.get(row["member_id"])
        if joined is None or row["occurred_at"] is None:
            continue
        event = PastEvent(row["member_id"], row["channel"], row["event_id"], row["type"], _utc(row["occurred_at"]))
        if event.occurred_at >= joined:
            timelines[event.member_id].append((event.occurred_at, 2, event))
            touched.add(event.member_id)
    for member_id in touched:
        timelines[member_id].sort(key=lambda item: (item[0], item[1], _event_id(item[2])))


def _event_id(event: PastOrder | PastRefund | PastEvent) -> str:
    if isinstance(event, PastOrder):
        return event.order_id
    return event.refund_id if isinstance(event, PastRefund) else event.event_id


def _enrolled_members(session: Session, workspace: Workspace, now: datetime) -> dict[str, datetime]:
    """Enrolled members and when they enrolled; members marked ``is_enrolled`` get their membership here."""
    unrecorded = session.scalars(select(Member).where(
        Member.workspace_id == workspace.id, Member.is_enrolled.is_(True), Member.merged_into_id.is_(None),
        ~Member.id.in_(select(Membership.member_id).where(Membership.workspace_id == workspace.id)))).all()
    enrolment.ensure_memberships(session, workspace, [
        enrolment.Joining(member.id, _utc(member.enrolled_at) if member.enrolled_at else now) for member in unrecorded],
        channel="import")
    return {member_id: _utc(at) for member_id, at in session.execute(select(
        Membership.member_id, Membership.enrolled_at).where(Membership.workspace_id == workspace.id)).all()}


def _posted_keys(session: Session, workspace_id: str) -> set[str]:
    return set(session.scalars(select(PointsMovement.idempotency_key).where(
        PointsMovement.workspace_id == workspace_id,
        PointsMovement.source_type.in_(("order", "refund")))).all())


def _posted(session: Session, workspace_id: str, programme: Programme) -> set[str]:
    """Keys of the orders, refunds (and, when the programme rewards events, events) already in the ledger."""
    posted = _posted_keys(session, workspace_id)
    if programme.events:
        posted |= {f"event:{key}" for key in session.scalars(select(EventEarning.event_key).where(
            EventEarning.workspace_id == workspace_id)).all()}
    return posted


@dataclass(frozen=True)
class _History:
    timelines: dict[str, list[tuple[datetime, int, Any]]]
    before: int  # orders placed before their buyer enrolled
    enrolled: dict[str, datetime]
    posted: set[str]
    active: ActiveProgramme
    orders: pa.Table  # as read from the lake, and the earlier orders of the refunds, for the tiers (backfill_tiers)
    refunds: pa.Table  # the lake's and the live ones, each once (merge_refunds)


def _history(context: Context, workspace: Workspace, since: datetime | None, now: datetime) -> _History:
    """Every enrolled member's timeline to replay, and what the replay needs to know first."""
    with context.store.transaction() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        enrolled = _enrolled_members(session, ws, now)
        active = points.active_programme(session, ws.id)
        posted = _posted(session, ws.id, active.programme)
        uncounted = config_store.current(session, ws.id).uncounted_statuses  # the workspace's, as insight counts
        live_refunds = _live_refunds(session, ws.id)
    programme = active.programme
    warehouse = context.warehouse()
    orders, lake_refunds = read_history(warehouse, workspace.id, since=since, uncounted_statuses=uncounted)
    refunds = merge_refunds(lake_refunds, live_refunds, orders)
    has_line_rules = bool(programme.earn.category_rules or programme.earn.sku_rules)
    lines = read_lines(warehouse, workspace.id, since=since) if has_line_rules else None
    timelines, before = _timelines(orders, refunds, enrolled, lines)
    if programme.events:
        _add_events(timelines, read_events(warehouse, workspace.id, sorted(programme.events), since=since), enrolled)
    return _History(timelines, before, enrolled, posted, active, refunded_orders(orders, refunds), refunds)


def _summary(context: Context, workspace: Workspace, history: _History, totals: dict[str, int], started: float,
             now: datetime, chunks: Chunks) -> BackfillSummary:
    """The run's figures, once the imported orders are recorded for the tiers too."""
    tiers = record_tier_history(context, workspace, history.active.programme, history.orders, history.refunds,
                                history.enrolled, now=now, rows_per_transaction=chunks.tier_rows)
    return BackfillSummary(
        members=len(history.enrolled), orders=totals["orders"], points_earned=totals["earned"],
        refunds=totals["refunds"], points_reversed=totals["reversed"], skipped_before_enrolment=history.before,
        already_posted=totals["posted"], seconds=time.perf_counter() - started, events=totals["events"],
        points_for_events=totals["event_points"], tier_orders=tiers.orders, growth_movements=tiers.growth_movements)


def backfill_points(context: Context, workspace: Workspace, *, since: datetime | None = None,
                    now: datetime | None = None, progress: Progress | None = None,
                    chunks: Chunks | None = None) -> BackfillSummary:
    """Replay the lake's orders and refunds of enrolled members into the points ledger (see the module).

    Set-based: each chunk of members is read in a few queries (balances locked, lots with points left,
    memberships, the events already rewarded), replayed in memory by the live rules
    (:mod:`memberops.loyalty.backfill_replay`) and written in a few bulk statements. A member whose history
    the memory replay does not cover (a refund of an order posted before this run, no points account) and
    every member of a programme whose events earn growth value are replayed by the ledger's own calls, as
    :func:`backfill_points_per_member` does.

    ``progress`` is told ``(members replayed, members to replay)`` before each transaction that replays
    members and once at the end. ``chunks`` (the store's :func:`chunks_for` unless given) bounds what one
    transaction replays: on SQLite a chunk holds the store's single write lock, which the point of sale
    waits for, so chunks there are small."""
    started = time.perf_counter()
    now = now or utcnow()
    chunks = chunks or chunks_for(context.store.dialect)
    history = _history(context, workspace, since, now)
    timelines, posted, active = history.timelines, history.posted, history.active
    totals: dict[str, int] = defaultdict(int)
    members = sorted(timelines)
    told = _Told(progress, len(members))
    if _events_earn_growth(active.programme):
        _replay_per_member(context, workspace, members, timelines, posted, totals, now, chunks, told)
        told.finish()
        return _summary(context, workspace, history, totals, started, now, chunks)
    by_ledger = [member_id for member_id in members if bulk.refunds_posted_order(timelines[member_id], posted)]
    _replay_per_member(context, workspace, by_ledger, timelines, posted, totals, now, chunks, told)
    skip = set(by_ledger)
    in_memory = [member_id for member_id in members if member_id not in skip]
    for start in range(0, len(in_memory), chunks.bulk_members):
        chunk = in_memory[start:start + chunks.bulk_members]
        told.before(0)
        with context.store.transaction() as session:
            ws = session.get(Workspace, workspace.id)
            assert ws is not None
            missing = bulk.replay_members(session, ws, active, chunk, timelines, posted, totals, now)
        told.done += len(chunk) - len(missing)
        _replay_per_member(context, workspace, missing, timelines, posted, totals, now, chunks, told)
    told.finish()
    return _summary(context, workspace, history, totals, started, now, chunks)


def backfill_points_per_member(context: Context, workspace: Workspace, *, since: datetime | None = None,
                               now: datetime | None = None) -> BackfillSummary:
    """:func:`backfill_points` order by order through the live ledger calls (one member's movements at a
    time): the reference the set-based backfill is compared with, row for row, in the tests."""
    started = time.perf_counter()
    now = now or utcnow()
    history = _history(context, workspace, since, now)
    totals: dict[str, int] = defaultdict(int)
    chunks = chunks_for(context.store.dialect)
    _replay_per_member(context, workspace, sorted(history.timelines), history.timelines, history.posted, totals, now,
                       chunks)
    return _summary(context, workspace, history, totals, started, now, chunks)


def _events_earn_growth(programme: Programme) -> bool:
    return bool(programme.tiers) and programme.tier_rules.metric == "growth" \
        and bool(set(programme.tier_rules.growth_events) & set(programme.events))


class _Told:
    """How far a backfill is, told to its ``progress`` callback."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = 0

    def before(self, count: int) -> None:
        """Before a transaction that replays members (``count``: those it replays, counted as done)."""
        if self.progress is not None:
            self.progress(self.done, self.total)
        self.done += count

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total)


def _replay_per_member(context: Context, workspace: Workspace, members: list[str],
                       timelines: dict[str, list[tuple[datetime, int, Any]]], posted: set[str],
                       totals: dict[str, int], now: datetime, chunks: Chunks, told: _Told | None = None) -> None:
    size = chunks.ledger_members
    for start in range(0, len(members), size):
        batch = members[start:start + size]
        if told is not None:
            told.before(len(batch))
        with context.store.transaction() as session:
            ws = session.get(Workspace, workspace.id)
            assert ws is not None
            # the batch's locks first, in member order, then what was posted live meanwhile (see
            # backfill_bulk): counted as already posted, not as earned by this run
            session.execute(locked(select(PointsAccount.id).where(
                PointsAccount.workspace_id == ws.id, PointsAccount.member_id.in_(batch))
                .order_by(PointsAccount.member_id))).all()
            bulk.refresh_posted(session, ws.id, [timelines[member_id] for member_id in batch], posted)
            for member_id in batch:
                _replay(session, ws, timelines[member_id], posted, totals, now)


def _replay(session: Session, workspace: Workspace, events: list[tuple[datetime, int, Any]], posted: set[str],
            totals: dict[str, int], now: datetime) -> None:
    """One member's history in time order, then the member's ledger caught up with ``now``."""
    refunded = bulk.refunded_before(events, posted)
    member_id = ""
    for at, _, event in events:
        if at > now:
            break
        if isinstance(event, PastEvent):
            member_id = event.member_id
            key = event_earning.event_key(event.channel, event.event_id)
            if f"event:{key}" in posted:
                totals["posted"] += 1
                continue
            earned = event_earning.earn_for_event(session, workspace, member_id, event.type, key, event.occurred_at,
                                                  now=at)
            if earned:
                totals["events"] += 1
                totals["event_points"] += earned
        elif isinstance(event, PastOrder):
            member_id = event.member_id
            if points.order_key(event.channel, event.order_id) in posted:
                totals["posted"] += 1
                continue
            earned = points.earn_for_order(session, workspace, _live_order(event, Decimal(0)), now=at,
                                           lines=event.lines, tier_at_order_time=True)
            if earned:
                totals["orders"] += 1
                totals["earned"] += earned
        else:
            order = event.order
            member_id = order.member_id
            if points.refund_key(event.channel, event.refund_id) in posted:
                totals["posted"] += 1
                continue
            refunded[(order.channel, order.order_id)] += event.amount
            live_order = _live_order(order, refunded[(order.channel, order.order_id)])
            refund = LiveRefund(workspace_id=workspace.id, channel=event.channel, refund_id=event.refund_id,
                                order_id=order.order_id, refunded_at=event.refunded_at, amount=event.amount)
            taken = points.reverse_for_refund(session, workspace, refund, live_order, now=at)
            if taken:
                totals["refunds"] += 1
                totals["reversed"] += taken
    if member_id:
        account = points.lock_account(session, workspace.id, member_id)
        points.catch_up(session, account, points.active_programme(session, workspace.id), now)
        session.flush()


def _live_order(order: PastOrder, refunded: Decimal) -> LiveOrder:
    """The order as the live path holds it (never added to the session: the ledger only reads it)."""
    return LiveOrder(workspace_id="", channel=order.channel, order_id=order.order_id, customer_key="",
                     member_id=order.member_id, ordered_at=order.ordered_at, gross_amount=order.gross,
                     shipping_amount=order.shipping, paid_amount=order.paid, refunded_amount=refunded)
