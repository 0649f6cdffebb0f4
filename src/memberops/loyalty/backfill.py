"""Points for history: replay enrolled members' orders and refunds from the lake through the live ledger rules.

Orders imported in bulk never passed the live path, so they earned nothing. The backfill reads them
(and their refunds) through the warehouse, tied to members by the identity map, and posts each one in
time order with :func:`memberops.loyalty.points.earn_for_order` and
:func:`~memberops.loyalty.points.reverse_for_refund`, the movement time being the order's (or refund's)
own time: member days, birthday months and caps use the order's local date, lots lapse as the replay
reaches their expiry, and a final catch-up brings every replayed member to ``now``.

An order earns only from the member's enrolment on (``Membership.enrolled_at``; a member marked
``is_enrolled`` without a membership gets one dated from ``Member.enrolled_at``): purchases made before
joining earn nothing, the usual programme rule. Every movement carries the same idempotency key as the
live path (``order:{channel}:{order_id}``, ``refund:{channel}:{refund_id}``), so a rerun, or a later live
post of the same order, never earns or reverses twice.

Events of the types the programme rewards (``events``) are replayed in the same timelines through
:func:`memberops.loyalty.event_earning.earn_for_event`, keyed like the live path (``{channel}:{event_id}``),
so streaks, caps and once-per-member rules count them as if they had been posted live in time order.

Reading is one query per table (order lines only when the programme has category or SKU rules, events
only when it rewards some);
the loop over orders is the ledger's own (one member's movements at a time, committed in chunks of
members).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ibis
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.identity.models import Member
from memberops.ingest.models import LiveOrder, LiveRefund
from memberops.insight import config_store
from memberops.insight.config import InsightConfig
from memberops.lake.engine import Warehouse
from memberops.loyalty import enrolment, event_earning, ledger, points
from memberops.loyalty.event_models import EventEarning
from memberops.loyalty.models import Membership, PointsMovement
from memberops.runtime import Context

MEMBERS_PER_TRANSACTION = 500


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


@dataclass(frozen=True)
class _Order:
    member_id: str
    channel: str
    order_id: str
    ordered_at: datetime
    gross: Decimal | None
    shipping: Decimal | None
    paid: Decimal
    lines: tuple[ledger.OrderLine, ...] = ()


@dataclass(frozen=True)
class _Event:
    member_id: str
    channel: str
    event_id: str
    type: str
    occurred_at: datetime


@dataclass(frozen=True)
class _Refund:
    channel: str
    refund_id: str
    refunded_at: datetime
    amount: Decimal
    order: _Order


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def read_history(warehouse: Warehouse, workspace_id: str, *, since: datetime | None = None,
                 uncounted_statuses: tuple[str, ...] = InsightConfig().uncounted_statuses) -> tuple[pa.Table, pa.Table]:
    """The workspace's orders (``member_id`` from the identity map) and their refunds, as Arrow tables."""
    identity_map = warehouse.table("identity_map")
    links = identity_map.filter(identity_map.workspace_id == workspace_id).select(
        "channel", customer_key="source_id", member_id="member_id")
    orders = warehouse.table("orders")
    orders = orders.filter(orders.workspace_id == workspace_id)
    if since is not None:
        orders = orders.filter(orders.ordered_at >= ibis.literal(_utc(since), type="timestamp('UTC')"))
    if uncounted_statuses:
        orders = orders.filter(orders.status.isnull() | ~orders.status.isin(list(uncounted_statuses)))
    owned = orders.join(links, ["channel", "customer_key"]).select(
        "member_id", "channel", "order_id", "ordered_at", "gross_amount", "shipping_amount", "paid_amount")
    refunds = warehouse.table("refunds")
    refunds = refunds.filter(refunds.workspace_id == workspace_id)
    refunded = refunds.join(owned.select("channel", "order_id"), ["channel", "order_id"]).select(
        "channel", "refund_id", "order_id", "refunded_at", "amount")
    return warehouse.to_pyarrow(owned), warehouse.to_pyarrow(refunded)


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
               lines: pa.Table | None = None) -> tuple[dict[str, list[tuple[datetime, int, _Order | _Refund]]], int]:
    """Each enrolled member's orders (from enrolment on, with their ``lines`` when given) and refunds, in
    time order; and how many orders were placed before their buyer enrolled."""
    by_order: dict[tuple[str, str], _Order] = {}
    timelines: dict[str, list[tuple[datetime, int, _Order | _Refund]]] = defaultdict(list)
    order_lines = _lines_by_order(lines)
    before = 0
    for row in orders.to_pylist():
        joined = enrolled.get(row["member_id"])
        if joined is None or row["paid_amount"] is None:
            continue
        order = _Order(row["member_id"], row["channel"], row["order_id"], _utc(row["ordered_at"]),
                       row["gross_amount"], row["shipping_amount"], row["paid_amount"],
                       order_lines.get((row["channel"], row["order_id"]), ()))
        if order.ordered_at < joined:
            before += 1
            continue
        by_order[(order.channel, order.order_id)] = order
        timelines[order.member_id].append((order.ordered_at, 0, order))
    for row in refunds.to_pylist():
        earned = by_order.get((row["channel"], row["order_id"]))
        if earned is None or row["amount"] is None or row["refunded_at"] is None:
            continue
        refund = _Refund(row["channel"], row["refund_id"], _utc(row["refunded_at"]), row["amount"], earned)
        timelines[earned.member_id].append((refund.refunded_at, 1, refund))
    for events in timelines.values():
        events.sort(key=lambda event: (event[0], event[1], _event_id(event[2])))
    return timelines, before


def _add_events(timelines: dict[str, list[tuple[datetime, int, Any]]], events: pa.Table,
                enrolled: dict[str, datetime]) -> None:
    """Each enrolled member's rewarded events from enrolment on, merged into their timeline in time order
    (after an order or refund of the same instant)."""
    touched: set[str] = set()
    for row in events.to_pylist():
        joined = enrolled.get(row["member_id"])
        if joined is None or row["occurred_at"] is None:
            continue
        event = _Event(row["member_id"], row["channel"], row["event_id"], row["type"], _utc(row["occurred_at"]))
        if event.occurred_at >= joined:
            timelines[event.member_id].append((event.occurred_at, 2, event))
            touched.add(event.member_id)
    for member_id in touched:
        timelines[member_id].sort(key=lambda item: (item[0], item[1], _event_id(item[2])))


def _event_id(event: _Order | _Refund | _Event) -> str:
    if isinstance(event, _Order):
        return event.order_id
    return event.refund_id if isinstance(event, _Refund) else event.event_id


def _enrolled_members(session: Session, workspace: Workspace, now: datetime) -> dict[str, datetime]:
    """Enrolled members and when they enrolled; members marked ``is_enrolled`` get their membership here."""
    unrecorded = session.scalars(select(Member).where(
        Member.workspace_id == workspace.id, Member.is_enrolled.is_(True), Member.merged_into_id.is_(None),
        ~Member.id.in_(select(Membership.member_id).where(Membership.workspace_id == workspace.id)))).all()
    for member in unrecorded:
        enrolment.ensure_membership(session, workspace, member, channel="import",
                                    now=_utc(member.enrolled_at) if member.enrolled_at else now)
    return {member_id: _utc(at) for member_id, at in session.execute(select(
        Membership.member_id, Membership.enrolled_at).where(Membership.workspace_id == workspace.id)).all()}


def _posted_keys(session: Session, workspace_id: str) -> set[str]:
    return set(session.scalars(select(PointsMovement.idempotency_key).where(
        PointsMovement.workspace_id == workspace_id,
        PointsMovement.source_type.in_(("order", "refund")))).all())


def backfill_points(context: Context, workspace: Workspace, *, since: datetime | None = None,
                    now: datetime | None = None) -> BackfillSummary:
    """Replay the lake's orders and refunds of enrolled members into the points ledger (see the module)."""
    started = time.perf_counter()
    now = now or utcnow()
    with context.store.transaction() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        enrolled = _enrolled_members(session, ws, now)
        posted = _posted_keys(session, ws.id)
        programme = points.active_programme(session, ws.id).programme
        uncounted = config_store.current(session, ws.id).uncounted_statuses  # the workspace's, as insight counts
        if programme.events:
            posted |= {f"event:{key}" for key in session.scalars(select(EventEarning.event_key).where(
                EventEarning.workspace_id == ws.id)).all()}
    warehouse = context.warehouse()
    orders, refunds = read_history(warehouse, workspace.id, since=since, uncounted_statuses=uncounted)
    has_line_rules = bool(programme.earn.category_rules or programme.earn.sku_rules)
    lines = read_lines(warehouse, workspace.id, since=since) if has_line_rules else None
    timelines, before = _timelines(orders, refunds, enrolled, lines)
    if programme.events:
        _add_events(timelines, read_events(warehouse, workspace.id, sorted(programme.events), since=since), enrolled)
    totals: dict[str, int] = defaultdict(int)
    members = sorted(timelines)
    for start in range(0, len(members), MEMBERS_PER_TRANSACTION):
        with context.store.transaction() as session:
            ws = session.get(Workspace, workspace.id)
            assert ws is not None
            for member_id in members[start:start + MEMBERS_PER_TRANSACTION]:
                _replay(session, ws, timelines[member_id], posted, totals, now)
    return BackfillSummary(
        members=len(enrolled), orders=totals["orders"], points_earned=totals["earned"], refunds=totals["refunds"],
        points_reversed=totals["reversed"], skipped_before_enrolment=before, already_posted=totals["posted"],
        seconds=time.perf_counter() - started, events=totals["events"], points_for_events=totals["event_points"])


def _replay(session: Session, workspace: Workspace, events: list[tuple[datetime, int, Any]], posted: set[str],
            totals: dict[str, int], now: datetime) -> None:
    """One member's history in time order, then the member's ledger caught up with ``now``."""
    refunded: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    member_id = ""
    for at, _, event in events:
        if at > now:
            break
        if isinstance(event, _Event):
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
        elif isinstance(event, _Order):
            member_id = event.member_id
            if points.order_key(event.channel, event.order_id) in posted:
                totals["posted"] += 1
                continue
            earned = points.earn_for_order(session, workspace, _live_order(event, Decimal(0)), now=at,
                                           lines=event.lines)
            if earned:
                totals["orders"] += 1
                totals["earned"] += earned
        else:
            order = event.order
            member_id = order.member_id
            refunded[(order.channel, order.order_id)] += event.amount
            if points.refund_key(event.channel, event.refund_id) in posted:
                totals["posted"] += 1
                continue
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


def _live_order(order: _Order, refunded: Decimal) -> LiveOrder:
    """The order as the live path holds it (never added to the session: the ledger only reads it)."""
    return LiveOrder(workspace_id="", channel=order.channel, order_id=order.order_id, customer_key="",
                     member_id=order.member_id, ordered_at=order.ordered_at, gross_amount=order.gross,
                     shipping_amount=order.shipping, paid_amount=order.paid, refunded_amount=refunded)
