"""The set-based backfill's reads and writes: a chunk of members' ledger state read in a few queries, their
histories replayed in memory (:mod:`memberops.loyalty.backfill_replay`), and what the replay made written
in a few bulk statements — the same rows the live calls would write one by one.

The chunk's points accounts are locked first, in member id order as every path that locks several
members does (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's write transaction serialises writers), so no
live movement of these members interleaves with the replay. The point of sale keeps posting while a
backfill runs, and an order it posts may be one the lake holds too (the nightly export of the same
order): under the lock the chunk reads again which of its members' orders, refunds and events the ledger
has (:func:`refresh_posted`), so one posted live since the backfill began — or committed while the chunk
waited for its lock — is skipped as already posted, never earned twice, and the chunk does not fail on
the ledger's unique key. A member whose history now refunds an order posted live is left to the ledger's
own calls, as one whose order was posted before the run is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.dialect import insert_many, locked, reserve_ids
from memberops.identity.models import Identifier
from memberops.loyalty import event_earning, points
from memberops.loyalty.backfill_replay import (
    Account,
    Earning,
    Lot,
    MemberLedger,
    PastEvent,
    PastOrder,
    PastRefund,
    Written,
)
from memberops.loyalty.event_models import EventEarning
from memberops.loyalty.models import (
    LoyaltyEvent,
    Membership,
    PointsAccount,
    PointsAllocation,
    PointsLot,
    PointsMovement,
)
from memberops.loyalty.programmes import ActiveProgramme
from memberops.loyalty.tier_models import TierChange

_MOVEMENTS = cast(Table, PointsMovement.__table__)
_LOTS = cast(Table, PointsLot.__table__)


def replay_members(session: Session, workspace: Workspace, active: ActiveProgramme, members: list[str],
                   timelines: dict[str, list[tuple[datetime, int, Any]]], posted: set[str], totals: dict[str, int],
                   now: datetime) -> list[str]:
    """Replay ``members``' timelines into the ledger (see the module) and add up ``totals`` as the member by
    member replay does; returns the members left out, for the caller to replay through the ledger's own
    calls: those without a points account (the calls say why) and those whose history refunds an order
    the ledger already has (posted live while the backfill ran)."""
    accounts = {account.member_id: account for account in session.scalars(locked(select(PointsAccount).where(
        PointsAccount.workspace_id == workspace.id, PointsAccount.member_id.in_(members))
        .order_by(PointsAccount.member_id)))}
    refresh_posted(session, workspace.id, [timelines[member_id] for member_id in accounts], posted)
    missing = [member_id for member_id in members
               if member_id not in accounts or refunds_posted_order(timelines[member_id], posted)]
    left = set(missing)
    present = [member_id for member_id in members if member_id not in left]
    state = _read_state(session, workspace, active, present)
    out = Written()
    zone = points.zone_of(workspace)
    cached: dict[str, Account] = {}
    for member_id in present:
        stored = accounts[member_id]
        account = cached[member_id] = Account(stored.available, stored.pending, stored.debt)
        memory = MemberLedger(active, zone, member_id, account, state.lots[member_id], state.memberships[member_id],
                              tier_history=state.tier_history.get(member_id, []),
                              order_earnings=state.order_earnings[member_id], earnings=state.earnings[member_id],
                              fields_held=state.fields[member_id], out=out)
        _replay(memory, timelines[member_id], posted, totals, now)
    _write(session, workspace.id, out, state.lots, accounts, cached)
    return missing


def _key(event: PastOrder | PastRefund | PastEvent) -> str:
    """The ledger key the event's movement has, as the posted keys spell it."""
    if isinstance(event, PastOrder):
        return points.order_key(event.channel, event.order_id)
    if isinstance(event, PastRefund):
        return points.refund_key(event.channel, event.refund_id)
    return f"event:{event_earning.event_key(event.channel, event.event_id)}"


KEYS_PER_QUERY = 1_000


def refresh_posted(session: Session, workspace_id: str, timelines: Sequence[Sequence[tuple[datetime, int, Any]]],
                   posted: set[str]) -> None:
    """Add to ``posted`` the keys of ``timelines``' orders, refunds and events that the ledger has now but
    did not when ``posted`` was read: posted live since. Read by key (the unique index), so an order posted
    to a member since merged into another is found too. The caller holds the members' locks, so nothing
    of theirs is posted between this read and the replay."""
    unseen = sorted({key for timeline in timelines for _, _, event in timeline if (key := _key(event)) not in posted})
    ledger_keys = [key for key in unseen if not key.startswith("event:")]
    event_keys = [key.removeprefix("event:") for key in unseen if key.startswith("event:")]
    for start in range(0, len(ledger_keys), KEYS_PER_QUERY):
        posted.update(session.scalars(select(PointsMovement.idempotency_key).where(
            PointsMovement.workspace_id == workspace_id,
            PointsMovement.idempotency_key.in_(ledger_keys[start:start + KEYS_PER_QUERY]))))
    for start in range(0, len(event_keys), KEYS_PER_QUERY):
        posted.update(f"event:{key}" for key in session.scalars(select(EventEarning.event_key).where(
            EventEarning.workspace_id == workspace_id,
            EventEarning.event_key.in_(event_keys[start:start + KEYS_PER_QUERY]))))


def refunds_posted_order(timeline: Sequence[tuple[datetime, int, Any]], posted: set[str]) -> bool:
    """Whether the member's timeline refunds (anew) an order whose points were posted before: the memory
    replay knows only the orders it earns on, so such a member is replayed through the ledger's calls."""
    return any(isinstance(event, PastRefund) and points.refund_key(event.channel, event.refund_id) not in posted
               and points.order_key(event.order.channel, event.order.order_id) in posted
               for _, _, event in timeline)


def refunded_before(timeline: Sequence[tuple[datetime, int, Any]], posted: set[str]) -> dict[tuple[str, str], Decimal]:
    """What each order's refunds already in the ledger add up to, whenever they were made: where a refund
    replayed now starts counting. The reversal is cumulative (the share of the order refunded so far, less
    what was taken back), so counting only the refunds before it in time would take back nothing for an
    imported refund older than a live one, and counting each refund once (the timeline has each once:
    :func:`memberops.loyalty.backfill.merge_refunds`) never takes back twice."""
    refunded: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for _, _, event in timeline:
        if isinstance(event, PastRefund) and points.refund_key(event.channel, event.refund_id) in posted:
            refunded[(event.order.channel, event.order.order_id)] += event.amount
    return refunded


class _State:
    """What the replay of a chunk of members needs from the store, read in one query per table."""

    def __init__(self) -> None:
        self.lots: dict[str, list[Lot]] = defaultdict(list)
        self.memberships: dict[str, Membership] = {}
        self.tier_history: dict[str, list[tuple[datetime, str | None]]] = defaultdict(list)  # (at, to_tier)
        self.order_earnings: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
        self.earnings: dict[str, list[Earning]] = defaultdict(list)
        self.fields: dict[str, set[str]] = defaultdict(set)


def _read_state(session: Session, workspace: Workspace, active: ActiveProgramme, members: list[str]) -> _State:
    programme = active.programme
    state = _State()
    for lot in session.scalars(select(PointsLot).where(PointsLot.member_id.in_(members), PointsLot.remaining > 0)
                               .order_by(PointsLot.id)):
        state.lots[lot.member_id].append(Lot(lot.id, lot.member_id, lot.points, lot.remaining, lot.state, lot.earned_at,
                                             lot.available_at, lot.expires_at, id=lot.id))
    state.memberships = {membership.member_id: membership for membership in session.scalars(select(Membership).where(
        Membership.workspace_id == workspace.id, Membership.member_id.in_(members)))}
    if programme.tiers:
        for member_id, at, tier in session.execute(select(TierChange.member_id, TierChange.at, TierChange.to_tier).where(
                TierChange.workspace_id == workspace.id, TierChange.member_id.in_(members))
                .order_by(TierChange.member_id, TierChange.at, TierChange.id)):
            state.tier_history[member_id].append((at, tier))
    if programme.earn.daily_cap is not None or programme.earn.monthly_cap is not None:
        for member_id, occurred_at, count in session.execute(select(
                PointsMovement.member_id, PointsMovement.occurred_at, PointsMovement.points).where(
                PointsMovement.member_id.in_(members), PointsMovement.kind == "earn",
                PointsMovement.source_type == "order")):
            state.order_earnings[member_id].append((occurred_at, count))
    if programme.events:
        for row in session.execute(select(EventEarning.member_id, EventEarning.event_type, EventEarning.local_day,
                                          EventEarning.points, EventEarning.streak).where(
                EventEarning.member_id.in_(members)).order_by(EventEarning.id)):
            state.earnings[row.member_id].append(Earning(row.event_type, row.local_day, row.points, row.streak))
    if any(rule.required_fields for rule in programme.events.values()):
        for member_id, kind in session.execute(select(Identifier.member_id, Identifier.type).where(
                Identifier.member_id.in_(members)).distinct()):
            state.fields[member_id].add(kind)
        for member_id, membership in state.memberships.items():
            if membership.birth_month is not None:
                state.fields[member_id].add("birthday")
    return state


def _replay(memory: MemberLedger, timeline: list[tuple[datetime, int, Any]], posted: set[str],
            totals: dict[str, int], now: datetime) -> None:
    """One member's history in time order, then the member's ledger caught up with ``now`` — step for step
    :func:`memberops.loyalty.backfill._replay`."""
    refunded = refunded_before(timeline, posted)
    seen = False
    for at, _, event in timeline:
        if at > now:
            break
        seen = True
        if isinstance(event, PastEvent):
            key = event_earning.stored_key(event_earning.event_key(event.channel, event.event_id))
            if f"event:{key}" in posted:
                totals["posted"] += 1
                continue
            earned = memory.earn_for_event(event_type=event.type, event_key=key, occurred_at=event.occurred_at, now=at)
            if earned:
                totals["events"] += 1
                totals["event_points"] += earned
        elif isinstance(event, PastOrder):
            key = points.order_key(event.channel, event.order_id)
            if key in posted:
                totals["posted"] += 1
                continue
            gained = memory.earn_for_order(key=key, source_id=f"{event.channel}:{event.order_id}",
                                           ordered_at=event.ordered_at, paid=event.paid, gross=event.gross,
                                           shipping=event.shipping, channel=event.channel, lines=event.lines, now=at)
            if gained:
                totals["orders"] += 1
                totals["earned"] += gained
        else:
            refund: PastRefund = event
            order = refund.order
            key = points.refund_key(refund.channel, refund.refund_id)
            if key in posted:
                totals["posted"] += 1
                continue
            refunded[(order.channel, order.order_id)] += refund.amount
            taken = memory.reverse_for_refund(
                order_key=points.order_key(order.channel, order.order_id), key=key,
                source_id=f"{refund.channel}:{refund.refund_id}", paid=order.paid,
                refunded=refunded[(order.channel, order.order_id)], refunded_at=refund.refunded_at, now=at)
            if taken:
                totals["refunds"] += 1
                totals["reversed"] += taken
    if seen:
        memory.catch_up(now)


def _write(session: Session, workspace_id: str, out: Written, stored_lots: dict[str, list[Lot]],
           accounts: dict[str, PointsAccount], cached: dict[str, Account]) -> None:
    """Everything the replay made, in a few bulk statements, with ids in the order it was made."""
    for movement, new_id in zip(out.movements, reserve_ids(session, _MOVEMENTS, len(out.movements)), strict=True):
        movement.id = new_id
    for lot, new_id in zip(out.lots, reserve_ids(session, _LOTS, len(out.lots)), strict=True):
        lot.id = new_id
    last_change: dict[str, datetime] = {}
    for movement in out.movements:
        last_change[movement.member_id] = movement.created_at
    moved = out.movements
    insert_many(session, insert(PointsMovement), {
        "id": [m.id for m in moved], "member_id": [m.member_id for m in moved], "kind": [m.kind for m in moved],
        "points": [m.points for m in moved], "available_delta": [m.available_delta for m in moved],
        "pending_delta": [m.pending_delta for m in moved], "debt_delta": [m.debt_delta for m in moved],
        "idempotency_key": [m.key() for m in moved], "source_type": [m.source_type for m in moved],
        "source_id": [m.source_id() for m in moved], "reason": [m.reason for m in moved],
        "programme_version": [m.version for m in moved],
        "reverses_id": [m.reverses.id if m.reverses is not None else None for m in moved],
        "outcome": [m.outcome for m in moved], "occurred_at": [m.occurred_at for m in moved],
        "created_at": [m.created_at for m in moved],
    }, {"workspace_id": workspace_id, "actor": ""})
    lots = out.lots
    insert_many(session, insert(PointsLot), {
        "id": [lot.id for lot in lots], "member_id": [lot.member_id for lot in lots],
        "movement_id": [lot.movement.id if lot.movement is not None else None for lot in lots],
        "points": [lot.points for lot in lots], "remaining": [lot.remaining for lot in lots],
        "state": [lot.state for lot in lots], "earned_at": [lot.earned_at for lot in lots],
        "available_at": [lot.available_at for lot in lots], "expires_at": [lot.expires_at for lot in lots],
    }, {"workspace_id": workspace_id, "warned_at": None, "origin_lot_id": None})
    taken = [(m.id, lot.id, count) for m in moved for lot, count in m.taken]
    insert_many(session, insert(PointsAllocation), {
        "movement_id": [row[0] for row in taken], "lot_id": [row[1] for row in taken],
        "points": [row[2] for row in taken]}, {})
    rows = out.events
    insert_many(session, insert(EventEarning), {
        "member_id": [row.member_id for row in rows], "event_type": [row.event_type for row in rows],
        "event_key": [row.event_key for row in rows], "occurred_at": [row.occurred_at for row in rows],
        "local_day": [row.local_day for row in rows], "points": [row.points for row in rows],
        "streak": [row.streak for row in rows],
        "movement_id": [row.movement.id if row.movement is not None else None for row in rows],
        "created_at": [row.created_at for row in rows]}, {"workspace_id": workspace_id})
    expired = out.expired
    insert_many(session, insert(LoyaltyEvent), {
        "member_id": [member_id for member_id, _, _ in expired], "occurred_at": [at for _, at, _ in expired],
        "payload": [{"points": payload["points"], "lot_id": payload["lot"].id, "expires_at": payload["expires_at"]}
                    for _, _, payload in expired]}, {"workspace_id": workspace_id, "type": "points_expired"})
    changed = [lot for member_lots in stored_lots.values() for lot in member_lots if lot.changed and lot.movement is None]
    if changed:
        session.connection().execute(
            update(_LOTS).where(_LOTS.c.id == bindparam("lot_id")).values(remaining=bindparam("left"),
                                                                         state=bindparam("lot_state")),
            [{"lot_id": lot.id, "left": lot.remaining, "lot_state": lot.state} for lot in changed])
    touched = [(accounts[member_id], account) for member_id, account in cached.items() if account.changed]
    if touched:
        table = cast(Table, PointsAccount.__table__)
        session.connection().execute(
            update(table).where(table.c.id == bindparam("account_id")).values(
                available=bindparam("now_available"), pending=bindparam("now_pending"), debt=bindparam("now_debt"),
                updated_at=bindparam("changed_at")),
            [{"account_id": stored.id, "now_available": account.available, "now_pending": account.pending,
              "now_debt": account.debt, "changed_at": last_change[stored.member_id]} for stored, account in touched])
        for stored, _ in touched:  # the session's copies are stale now
            session.expire(stored)
