"""The points ledger: earning, releasing, redeeming, expiring, adjusting and reversing points.

Every movement of a member's points happens with the member's ``points_account`` row locked
(``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the write transaction's ``BEGIN IMMEDIATE`` already
serialises writers). Why: a redemption reads the available balance, then spends it; two point-of-sale
terminals redeeming at once must queue on that read, or both would spend the same points. Under the
lock, a movement first catches the member's ledger up with the clock (pending lots whose return window
has passed become available, lapsed lots expire, debts are settled), so nothing is spent that has lapsed.

The ledger is append-only. Each movement carries an idempotency key unique in the workspace: a replayed
key returns the movement it first made (and the balance it left) and moves nothing. Lots record what was
earned together and when it lapses; every movement that takes points records which lots gave them
(allocations), so expiry and reversal always know what is left. The arithmetic is in
:mod:`memberops.loyalty.ledger`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Integer, Table, and_, bindparam, func, insert, or_, select, true, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor, record
from memberops.db.base import utcnow
from memberops.db.dialect import locked, writes_together
from memberops.identity import service as identity
from memberops.identity.models import Member
from memberops.ingest.models import LiveOrder, LiveRefund
from memberops.loyalty import ledger, memberships, tier_rules
from memberops.loyalty.errors import IdempotencyKeyReused, InsufficientPoints, MemberNotEnrolled
from memberops.loyalty.models import (
    LoyaltyEvent,
    Membership,
    PointsAccount,
    PointsAllocation,
    PointsLot,
    PointsMovement,
)
from memberops.loyalty.programmes import (
    HEAD_COLUMNS,
    ActiveProgramme,
    active_programme,
    active_programme_from,
)
from memberops.loyalty.tier_models import MemberTier, TierChange


@dataclass(frozen=True)
class MovementResult:
    """A movement and the balance it left; ``is_replay`` when its idempotency key was seen before."""

    movement: PointsMovement
    balance: dict[str, int]
    is_replay: bool


def zone_of(workspace: Workspace) -> ZoneInfo:
    return ZoneInfo(workspace.timezone or "UTC")


# --- the account and its lock ---------------------------------------------------------------------------


def open_account(session: Session, workspace_id: str, member_id: str) -> PointsAccount:
    account = PointsAccount(workspace_id=workspace_id, member_id=member_id, available=0, pending=0, debt=0)
    session.add(account)
    session.flush()
    return account


# The statements every movement runs, built once: building a statement costs more than running it here.
_ACCOUNT = locked(select(PointsAccount).where(PointsAccount.workspace_id == bindparam("workspace_id"),
                                              PointsAccount.member_id == bindparam("member_id")))
_MOVEMENT_BY_KEY = select(PointsMovement).where(PointsMovement.workspace_id == bindparam("workspace_id"),
                                                PointsMovement.idempotency_key == bindparam("key"))
_DUE_LOTS = select(PointsLot).where(
    PointsLot.member_id == bindparam("member_id"), PointsLot.remaining > 0,
    or_(and_(PointsLot.state == "pending", PointsLot.available_at <= bindparam("now")),
        PointsLot.expires_at <= bindparam("now")),
).order_by(PointsLot.id)
_SPENDABLE_LOTS = select(PointsLot).where(
    PointsLot.member_id == bindparam("member_id"), PointsLot.state == "available", PointsLot.remaining > 0,
    or_(PointsLot.expires_at.is_(None), PointsLot.expires_at > bindparam("now")),
)
_MEMBERSHIP = select(Membership).where(Membership.workspace_id == bindparam("workspace_id"),
                                       Membership.member_id == bindparam("member_id"))
_NEW_LOT = insert(cast(Table, PointsLot.__table__))
_NEW_ALLOCATIONS = insert(cast(Table, PointsAllocation.__table__))
# An earning order's first statement: the buyer's balance row locked, with their membership (read as the
# separate read before the lock did, so a wait for the lock changes nothing about it).
_ACCOUNT_AND_MEMBERSHIP = select(PointsAccount, Membership).outerjoin(Membership, and_(
    Membership.workspace_id == PointsAccount.workspace_id, Membership.member_id == PointsAccount.member_id,
)).where(PointsAccount.workspace_id == bindparam("workspace_id"),
         PointsAccount.member_id == bindparam("member_id")).with_for_update(of=PointsAccount)
# Under the lock, one statement answers what a movement asks before it moves anything: was its key used
# (the movement's id), has any lot fallen due (else catching up reads no lot), and which programme version
# is in force. Read after the lock, so a movement committed while this one waited is seen.
_UNDER_LOCK = select(
    select(PointsMovement.id).where(PointsMovement.workspace_id == bindparam("workspace_id"),
                                    PointsMovement.idempotency_key == bindparam("key")).scalar_subquery()
    .label("previous_id"),
    _DUE_LOTS.with_only_columns(PointsLot.id).order_by(None).exists().label("anything_due"),
    *HEAD_COLUMNS,
)


_UNMERGED_ACCOUNT = select(PointsAccount).join(Member, Member.id == PointsAccount.member_id).where(
    PointsAccount.workspace_id == bindparam("workspace_id"), PointsAccount.member_id == bindparam("member_id"),
    Member.workspace_id == bindparam("workspace_id"), Member.merged_into_id.is_(None),
).with_for_update(of=PointsAccount)


def _lock_unmerged(session: Session, workspace_id: str, member_id: str) -> PointsAccount | None:
    """The member's balance row, locked, when the member is of the workspace and not merged away."""
    return session.scalar(_UNMERGED_ACCOUNT, {"workspace_id": workspace_id, "member_id": member_id})


def lock_account(session: Session, workspace_id: str, member_id: str) -> PointsAccount:
    """The member's balance row, locked until the transaction ends (see the module docstring)."""
    account = session.scalar(_ACCOUNT, {"workspace_id": workspace_id, "member_id": member_id})
    if account is None:
        raise MemberNotEnrolled(member_id)
    return account


@dataclass(frozen=True)
class _Locked:
    """What :data:`_UNDER_LOCK` answered."""

    previous: PointsMovement | None  # the movement that used the key already
    anything_due: bool
    programme: ActiveProgramme


def _under_lock(session: Session, workspace_id: str, member_id: str, key: str, now: datetime) -> _Locked:
    row = session.execute(_UNDER_LOCK, {"workspace_id": workspace_id, "member_id": member_id, "key": key,
                                        "now": now}).one()
    previous = None if row.previous_id is None else session.get(PointsMovement, row.previous_id)
    return _Locked(previous, bool(row.anything_due), active_programme_from(session, workspace_id, row))


def balance_of(account: PointsAccount, programme: ActiveProgramme) -> dict[str, int]:
    return {"available": ledger.shown_available(account.available, account.debt,
                                                allow_negative=programme.programme.allow_negative),
            "pending": account.pending, "debt": account.debt}


def _existing(session: Session, workspace_id: str, key: str) -> PointsMovement | None:
    return session.scalar(_MOVEMENT_BY_KEY, {"workspace_id": workspace_id, "key": key})


def _record(
    session: Session, account: PointsAccount, *, kind: str, points: int, key: str,
    available: int = 0, pending: int = 0, debt: int = 0, taken: Sequence[tuple[PointsLot, int]] = (),
    source_type: str = "", source_id: str = "", reason: str = "", actor: str = "",
    version: int | None = None, occurred_at: datetime | None = None, reverses_id: int | None = None,
    lot: dict[str, Any] | None = None, now: datetime,
) -> PointsMovement:
    """Append one movement, take its allocations from their lots, add the ``lot`` it earned (its columns
    but ``movement_id``), and move the cached balance with it; the movement keeps the balance it leaves as
    its ``outcome`` (what a replay of its key answers).

    Written as plain rows, in one statement on PostgreSQL (:func:`_write`); the account, the lots taken and
    the movement are then in the session as if read back, so nothing is written twice by a flush."""
    for each, count in taken:
        if count > each.remaining:
            raise AssertionError(f"lot {each.id} has {each.remaining} points left, {count} taken")
    balance = {"available": account.available + available, "pending": account.pending + pending,
               "debt": account.debt + debt}
    values = {
        "workspace_id": account.workspace_id, "member_id": account.member_id, "kind": kind, "points": points,
        "available_delta": available, "pending_delta": pending, "debt_delta": debt, "idempotency_key": key,
        "source_type": source_type, "source_id": source_id, "reason": reason, "actor": actor,
        "programme_version": version, "reverses_id": reverses_id, "outcome": balance,
        "occurred_at": occurred_at or now, "created_at": now,
    }
    movement_id = _write(session, account.id, {**balance, "updated_at": now}, values, taken, lot)
    for name, value in (*balance.items(), ("updated_at", now)):
        set_committed_value(account, name, value)
    for each, count in taken:
        set_committed_value(each, "remaining", each.remaining - count)
    movement = PointsMovement(**values, id=movement_id)
    make_transient_to_detached(movement)
    session.add(movement)
    return movement


_MOVEMENTS = cast(Table, PointsMovement.__table__)
_ACCOUNTS = cast(Table, PointsAccount.__table__)
_LOTS = cast(Table, PointsLot.__table__)
_ALLOCATIONS = cast(Table, PointsAllocation.__table__)
_MOVEMENT_COLUMNS = ("workspace_id", "member_id", "kind", "points", "available_delta", "pending_delta", "debt_delta",
                     "idempotency_key", "source_type", "source_id", "reason", "actor", "programme_version",
                     "reverses_id", "outcome", "occurred_at", "created_at")
_LOT_COLUMNS = ("workspace_id", "member_id", "points", "remaining", "state", "earned_at", "available_at",
                "expires_at")
_NEW_MOVEMENT = insert(_MOVEMENTS).returning(_MOVEMENTS.c.id)
_BALANCE_COLUMNS = ("available", "pending", "debt", "updated_at")
_ACCOUNT_BALANCE = update(_ACCOUNTS).where(_ACCOUNTS.c.id == bindparam("account_id")).values({
    name: bindparam(f"account_{name}", type_=_ACCOUNTS.c[name].type) for name in _BALANCE_COLUMNS})
_LOT_REMAINING = update(_LOTS).where(_LOTS.c.id == bindparam("lot_id")).values(remaining=bindparam("left"))
_WRITES_TOGETHER: dict[tuple[bool, bool], Any] = {}  # PostgreSQL's statement, by (takes lots, adds a lot)


def _write(session: Session, account_id: int, balance: dict[str, Any], movement: dict[str, Any],
           taken: Sequence[tuple[PointsLot, int]], lot: dict[str, Any] | None) -> int:
    """Write a movement's rows (the movement, the account's new ``balance``, the remaining points of the lots
    ``taken`` and their allocations, the new ``lot``) and answer the movement's id: one round trip on
    PostgreSQL, one statement per table on SQLite."""
    account = {f"account_{name}": value for name, value in balance.items()}
    if writes_together(session):
        shape = (bool(taken), lot is not None)
        if shape not in _WRITES_TOGETHER:
            _WRITES_TOGETHER[shape] = _together(*shape)
        return int(session.execute(_WRITES_TOGETHER[shape], {
            **{f"movement_{name}": value for name, value in movement.items()}, **account, "account_id": account_id,
            "taken_ids": [each.id for each, _ in taken], "taken_points": [count for _, count in taken],
            "taken_left": [each.remaining - count for each, count in taken],
            **{f"lot_{name}": value for name, value in (lot or {}).items()},
        }).scalar_one())
    movement_id = int(session.execute(_NEW_MOVEMENT, movement).scalar_one())
    session.execute(_ACCOUNT_BALANCE, {**account, "account_id": account_id})
    if taken:
        session.execute(_LOT_REMAINING, [{"lot_id": each.id, "left": each.remaining - count} for each, count in taken])
        session.execute(_NEW_ALLOCATIONS, [{"movement_id": movement_id, "lot_id": each.id, "points": count}
                                           for each, count in taken])
    if lot is not None:
        session.execute(_NEW_LOT, {**lot, "movement_id": movement_id})
    return movement_id


def _together(takes_lots: bool, adds_lot: bool) -> Any:
    """PostgreSQL's one statement for :func:`_write`: the movement inserted in a ``WITH``, the other writes
    beside it referring to its ``RETURNING`` id (lots taken passed as arrays, so one statement serves any
    number of them)."""
    inserted = insert(_MOVEMENTS).values({
        name: bindparam(f"movement_{name}", type_=_MOVEMENTS.c[name].type) for name in _MOVEMENT_COLUMNS
    }).returning(_MOVEMENTS.c.id).cte("movement")
    writes = [_ACCOUNT_BALANCE.cte("balance")]
    if takes_lots:
        ids = bindparam("taken_ids", type_=ARRAY(BigInteger))
        left = func.unnest(ids, bindparam("taken_left", type_=ARRAY(Integer))).table_valued("lot_id", "left").render_derived("left_in_lot")
        writes.append(update(_LOTS).where(_LOTS.c.id == left.c.lot_id).values(remaining=left.c.left).cte("lots"))
        points = func.unnest(ids, bindparam("taken_points", type_=ARRAY(Integer))).table_valued("lot_id", "points").render_derived("taken")
        writes.append(insert(_ALLOCATIONS).from_select(
            ["movement_id", "lot_id", "points"],
            select(inserted.c.id, points.c.lot_id, points.c.points).select_from(inserted).join(points, true()),
        ).cte("allocations"))
    if adds_lot:
        writes.append(insert(_LOTS).from_select(
            ["movement_id", *_LOT_COLUMNS],
            select(inserted.c.id, *(bindparam(f"lot_{name}", type_=_LOTS.c[name].type) for name in _LOT_COLUMNS)),
        ).cte("lot"))
    return select(inserted.c.id).add_cte(*writes)


def _finish(session: Session, movement: PointsMovement, account: PointsAccount, programme: ActiveProgramme) -> dict[str, int]:
    """The balance the request left (after any debt settled from it), kept as the movement's outcome and
    shown as the member sees it (a debt as a negative balance when the programme allows one)."""
    final = {"available": account.available, "pending": account.pending, "debt": account.debt}
    if movement.outcome != final:
        movement.outcome = final
    session.flush()
    return shown(final, programme)


def shown(outcome: dict[str, int], programme: ActiveProgramme) -> dict[str, int]:
    return {"available": ledger.shown_available(outcome["available"], outcome["debt"],
                                                allow_negative=programme.programme.allow_negative),
            "pending": outcome["pending"], "debt": outcome["debt"]}


# --- catching up with the clock --------------------------------------------------------------------------


def _spendable(session: Session, member_id: str, now: datetime) -> list[PointsLot]:
    return list(session.scalars(_SPENDABLE_LOTS, {"member_id": member_id, "now": now}))


def _views(lots: Sequence[PointsLot]) -> list[ledger.LotView]:
    return [ledger.LotView(lot.id, lot.remaining, lot.expires_at) for lot in lots]


def _take(lots: Sequence[PointsLot], allocation: Sequence[tuple[int, int]]) -> list[tuple[PointsLot, int]]:
    by_id = {lot.id: lot for lot in lots}
    return [(by_id[lot_id], count) for lot_id, count in allocation]


def catch_up(session: Session, account: PointsAccount, programme: ActiveProgramme, now: datetime, *,
             anything_due: bool = True) -> None:
    """Release pending lots whose return window has passed, expire lapsed lots, settle debts — for the
    member of ``account``, which the caller has locked (``anything_due=False``: the caller has just read
    under that lock that no lot is due, and nothing is read again)."""
    if not anything_due:
        return
    due = session.scalars(_DUE_LOTS, {"member_id": account.member_id, "now": now}).all()
    released: PointsMovement | None = None
    for lot in due:
        if lot.state == "pending" and lot.available_at <= now:
            released = _record(session, account, kind="release", points=lot.remaining, key=f"release:{lot.id}",
                               available=lot.remaining, pending=-lot.remaining, source_type="lot",
                               source_id=str(lot.id), version=programme.version, occurred_at=lot.available_at,
                               now=now)
            lot.state = "available"
        if lot.expires_at is not None and lot.expires_at <= now and lot.remaining > 0:
            points = lot.remaining
            is_pending = lot.state == "pending"
            _record(session, account, kind="expire", points=points, key=f"expire:{lot.id}",
                    available=0 if is_pending else -points, pending=-points if is_pending else 0,
                    taken=[(lot, points)], source_type="lot", source_id=str(lot.id), version=programme.version,
                    occurred_at=lot.expires_at, now=now)
            session.add(LoyaltyEvent(workspace_id=account.workspace_id, member_id=account.member_id,
                                     type="points_expired", occurred_at=now,
                                     payload={"points": points, "lot_id": lot.id,
                                              "expires_at": lot.expires_at.isoformat()}))
    if released is not None:
        settle_debt(session, account, programme, after=released, now=now)


def settle_debt(session: Session, account: PointsAccount, programme: ActiveProgramme, *, after: PointsMovement,
                now: datetime) -> None:
    """Pay the member's debt from their available points, nearest expiry first (later earnings settle a
    debt before they can be spent)."""
    if account.debt <= 0 or account.available <= 0:
        return
    lots = _spendable(session, account.member_id, now)
    allocation = ledger.allocate(_views(lots), account.debt)
    paid = sum(count for _, count in allocation)
    if paid:
        _record(session, account, kind="settle", points=paid, key=f"settle:{after.id}", available=-paid, debt=-paid,
                taken=_take(lots, allocation), source_type="movement", source_id=str(after.id),
                version=programme.version, now=now)


# --- earning on orders and reversing on refunds ----------------------------------------------------------


def order_key(channel: str, order_id: str) -> str:
    return f"order:{channel}:{order_id}"


def refund_key(channel: str, refund_id: str) -> str:
    return f"refund:{channel}:{refund_id}"


def _membership(session: Session, workspace_id: str, member_id: str) -> Membership | None:
    return session.scalar(_MEMBERSHIP, {"workspace_id": workspace_id, "member_id": member_id})


def _earned_between(session: Session, member_id: str, start: datetime, end: datetime) -> int:
    return int(session.scalar(select(func.coalesce(func.sum(PointsMovement.points), 0)).where(
        PointsMovement.member_id == member_id, PointsMovement.kind == "earn", PointsMovement.source_type == "order",
        PointsMovement.occurred_at >= start, PointsMovement.occurred_at < end)) or 0)


def _multiplier_of(programme: ActiveProgramme, held: str | None) -> Decimal | None:
    return next((tier.earn_multiplier for tier in programme.programme.tiers if tier.code == held), None)


def tier_multiplier(session: Session, programme: ActiveProgramme, workspace_id: str, member_id: str) -> Decimal | None:
    """The earn multiplier of the member's tier; ``None`` when the programme has no tiers or the member
    holds none (so a programme without tiers reads nothing more)."""
    if not programme.programme.tiers:
        return None
    held = session.scalar(select(MemberTier.tier).where(MemberTier.workspace_id == workspace_id,
                                                        MemberTier.member_id == member_id))
    return _multiplier_of(programme, held)


def tier_multiplier_before(session: Session, programme: ActiveProgramme, workspace_id: str, member_id: str,
                           moment: datetime) -> Decimal | None:
    """The earn multiplier of the tier the member held just before ``moment``, by their tier history
    (:func:`memberops.loyalty.tier_rules.tier_held_before`): what an order placed then earned with."""
    if not programme.programme.tiers:
        return None
    changes = [(at, tier) for at, tier in session.execute(select(TierChange.at, TierChange.to_tier).where(
        TierChange.workspace_id == workspace_id, TierChange.member_id == member_id, TierChange.at < moment)
        .order_by(TierChange.at, TierChange.id))]
    held = tier_rules.tier_held_before(changes, moment)
    return _multiplier_of(programme, held)


def earn_for_order(session: Session, workspace: Workspace, order: LiveOrder, *, now: datetime | None = None,
                   lines: Sequence[ledger.OrderLine] = (), tier_at_order_time: bool = False) -> int | None:
    """Points the order earns its buyer, recorded as a lot (pending through the return window); ``None``
    when the buyer is unknown or not enrolled. Idempotent on the order: a retried order earns nothing
    more and answers what it earned the first time. ``lines`` (the order's items) let category and SKU
    rules apply (:func:`memberops.loyalty.ledger.purchase_points`); without them the order earns as a
    whole. ``tier_at_order_time`` (the backfill of past orders) applies the tier the member held when the
    order was placed rather than the tier held now."""
    if order.member_id is None:
        return None
    now = now or utcnow()
    key = order_key(order.channel, order.order_id)
    found = session.execute(_ACCOUNT_AND_MEMBERSHIP, {"workspace_id": workspace.id,
                                                      "member_id": order.member_id}).first()
    if found is None:
        if _membership(session, workspace.id, order.member_id) is None:
            return None
        raise MemberNotEnrolled(order.member_id)
    account, membership = found
    if membership is None:
        return None
    state = _under_lock(session, workspace.id, order.member_id, key, now)
    if state.previous is not None:
        return state.previous.points
    programme = state.programme
    if not memberships.is_earning(programme.programme, membership, order.ordered_at):
        return None
    catch_up(session, account, programme, now, anything_due=state.anything_due)
    rules = programme.programme.earn
    zone = zone_of(workspace)
    local_day = order.ordered_at.astimezone(zone).date()
    points = ledger.purchase_points(rules, ledger.Purchase(
        paid_amount=order.paid_amount, gross_amount=order.gross_amount, shipping_amount=order.shipping_amount,
        channel=order.channel, local_date=local_day, birthday_month=membership.birth_month,
        tier_multiplier=tier_multiplier_before(session, programme, workspace.id, order.member_id, order.ordered_at)
        if tier_at_order_time else tier_multiplier(session, programme, workspace.id, order.member_id), lines=lines,
    ))
    if points and (rules.daily_cap is not None or rules.monthly_cap is not None):
        points = ledger.capped(
            points, daily_cap=rules.daily_cap, monthly_cap=rules.monthly_cap,
            earned_today=_earned_between(session, order.member_id, *ledger.day_window(local_day, zone)),
            earned_this_month=_earned_between(session, order.member_id, *ledger.month_window(local_day, zone)),
        )
    if points <= 0:
        return 0
    grant(session, account, programme, points=points, key=key, kind="earn", earned_at=order.ordered_at,
          available_at=order.ordered_at + timedelta(days=rules.pending_days), source_type="order",
          source_id=f"{order.channel}:{order.order_id}", zone=zone, now=now)
    return points


def grant(
    session: Session, account: PointsAccount, programme: ActiveProgramme, *, points: int, key: str, kind: str,
    earned_at: datetime, available_at: datetime, source_type: str, source_id: str, zone: ZoneInfo,
    reason: str = "", actor: str = "", now: datetime,
) -> PointsMovement:
    """Add a lot of ``points`` (pending until ``available_at``) with the programme's expiry; a debt is
    settled from it as soon as it is available."""
    is_available = available_at <= now
    movement = _record(session, account, kind=kind, points=points, key=key,
                       available=points if is_available else 0, pending=0 if is_available else points,
                       source_type=source_type, source_id=source_id, reason=reason, actor=actor,
                       version=programme.version, occurred_at=earned_at, now=now, lot={
                           "workspace_id": account.workspace_id, "member_id": account.member_id, "points": points,
                           "remaining": points, "state": "available" if is_available else "pending",
                           "earned_at": earned_at, "available_at": available_at,
                           "expires_at": ledger.expires_at(programme.programme.expiry, earned_at, zone),
                       })
    if is_available:
        settle_debt(session, account, programme, after=movement, now=now)
    return movement


def reverse_for_refund(
    session: Session, workspace: Workspace, refund: LiveRefund, order: LiveOrder, *, now: datetime | None = None,
) -> int | None:
    """Take back the order's points in proportion to what has been refunded of it (``order.refunded_amount``
    includes ``refund``); ``None`` when the order earned nothing.

    Points still unspent leave the order's own lot; points already spent are taken from the member's other
    available points, and what those cannot cover becomes a debt (shown as a negative balance when the
    programme allows one) that later earnings settle first. Idempotent on the refund: it never reverses
    twice, and the cumulative proportion means two partial refunds reverse what one full refund would.
    """
    if order.member_id is None:
        return None
    earned = session.scalar(select(PointsMovement).where(
        PointsMovement.workspace_id == workspace.id, PointsMovement.idempotency_key == order_key(order.channel, order.order_id)))
    if earned is None:
        return None
    now = now or utcnow()
    key = refund_key(refund.channel, refund.refund_id)
    _, account = _lot_and_holder(session, workspace.id, earned)
    previous = _existing(session, workspace.id, key)
    if previous is not None:
        return previous.points
    programme = active_programme(session, workspace.id)
    catch_up(session, account, programme, now)
    already = int(session.scalar(select(func.coalesce(func.sum(PointsMovement.points), 0)).where(
        PointsMovement.reverses_id == earned.id)) or 0)
    points = ledger.reversal_target(earned.points, order.paid_amount, order.refunded_amount) - already
    if points <= 0:
        return 0
    take_back(session, account, programme, earned, points, key=key, source_type="refund",
              source_id=f"{refund.channel}:{refund.refund_id}", occurred_at=refund.refunded_at, now=now)
    return points


def take_back(
    session: Session, account: PointsAccount, programme: ActiveProgramme, earned: PointsMovement, points: int, *,
    key: str, source_type: str, source_id: str, occurred_at: datetime, now: datetime,
) -> PointsMovement:
    """Reverse ``points`` of the movement ``earned`` (a refund's share of an order's points, a clawed-back
    reward) for the member of ``account``, which the caller has locked and caught up with ``now``.

    Points still unspent leave the earning's own lot; points already spent come from the member's other
    available points, and what those cannot cover becomes a debt (a negative balance when the programme
    allows one)."""
    first = session.scalar(select(PointsLot).where(PointsLot.movement_id == earned.id))
    assert first is not None
    own = _carried(session, first)  # after a merge, the lot the survivor holds
    if own.member_id != account.member_id:  # moved to a member the caller did not lock: take from the first
        own = first
    others = [lot for lot in _spendable(session, account.member_id, now) if lot.id != own.id]
    split = ledger.split_reversal(points, own.remaining, _views(others))
    from_others = sum(count for _, count in split.from_other_lots)
    own_pending = split.from_own_lot if own.state == "pending" else 0
    own_available = split.from_own_lot - own_pending
    taken = [(own, split.from_own_lot)] if split.from_own_lot else []
    movement = _record(
        session, account, kind="reverse", points=points, key=key, available=-(own_available + from_others),
        pending=-own_pending, debt=split.shortfall, taken=[*taken, *_take(others, split.from_other_lots)],
        source_type=source_type, source_id=source_id,
        reverses_id=earned.id, version=programme.version, occurred_at=occurred_at, now=now,
    )
    _finish(session, movement, account, programme)
    return movement


def _carried(session: Session, lot: PointsLot) -> PointsLot:
    """The lot holding ``lot``'s points now: itself, or the lot a merge moved them to (and so on)."""
    for _ in range(32):  # one step per merge the points went through
        moved = session.scalar(select(PointsLot).where(PointsLot.origin_lot_id == lot.id)
                               .execution_options(populate_existing=True))
        if moved is None:
            return lot
        lot = moved
    return lot


def _lot_and_holder(session: Session, workspace_id: str, earned: PointsMovement) -> tuple[PointsLot, PointsAccount]:
    """The order's lot where it is now and its holder's account, locked: after a merge the points (and so
    a refund's reversal) are with the surviving member. Read again under the lock, in case a merge moved
    the lot while this request waited for it."""
    first = session.scalar(select(PointsLot).where(PointsLot.movement_id == earned.id))
    assert first is not None
    lot = _carried(session, first)
    for _ in range(3):
        account = lock_account(session, workspace_id, lot.member_id)
        again = _carried(session, first)
        if again.member_id == account.member_id:
            return again, account
        lot = again
    return lot, lock_account(session, workspace_id, lot.member_id)


# --- redemptions and adjustments -------------------------------------------------------------------------


def _replayed(previous: PointsMovement | None, key: str, *, member_id: str, kind: str,
              points: int, programme: ActiveProgramme) -> MovementResult | None:
    if previous is None:
        return None
    if (previous.member_id, previous.kind, previous.points) != (member_id, kind, points):
        raise IdempotencyKeyReused(key)
    return MovementResult(previous, shown(previous.outcome, programme), True)


def redeem(
    session: Session, workspace: Workspace, member_id: str, *, points: int, reason: str, idempotency_key: str,
    actor: Actor, now: datetime | None = None, source_type: str = "api", source_id: str = "",
    resolve_member: bool = False,
) -> MovementResult:
    """Spend ``points`` of the member's available balance, nearest-expiring lots first.

    ``resolve_member``: ``member_id`` is as a client sent it: a member merged into another redeems from the
    survivor, and one of another workspace (or none) is :class:`MemberNotFound`
    (:func:`memberops.identity.service.get_member`) — checked with the lock in the common case.

    Raises :class:`InsufficientPoints` (and moves nothing) when the available balance is smaller; never
    drives it below zero, however many redemptions run at once: the balance is re-read under the member's
    lock. A replayed ``idempotency_key`` returns the first outcome. ``source_type``/``source_id`` say what
    the points paid for (``reward`` and the reward redemption's id; ``api`` for a plain redeem).
    """
    now = now or utcnow()
    if resolve_member:
        account = _lock_unmerged(session, workspace.id, member_id)
        if account is None:
            member_id = identity.get_member(session, workspace.id, member_id).id
            account = lock_account(session, workspace.id, member_id)
    else:
        account = lock_account(session, workspace.id, member_id)
    state = _under_lock(session, workspace.id, member_id, idempotency_key, now)
    programme = state.programme
    replay = _replayed(state.previous, idempotency_key, member_id=member_id, kind="redeem", points=points,
                       programme=programme)
    if replay is not None:
        return replay
    catch_up(session, account, programme, now, anything_due=state.anything_due)
    if account.available < points:
        raise InsufficientPoints(member_id, points, balance_of(account, programme)["available"])
    lots = _spendable(session, member_id, now)
    allocation = ledger.allocate(_views(lots), points)
    movement = _record(session, account, kind="redeem", points=points, key=idempotency_key, available=-points,
                       taken=_take(lots, allocation), source_type=source_type, source_id=source_id, reason=reason,
                       actor=f"{actor.type}:{actor.id}"[:100], version=programme.version, now=now)
    return MovementResult(movement, _finish(session, movement, account, programme), False)


def return_redeemed(
    session: Session, workspace: Workspace, redeemed: PointsMovement, *, idempotency_key: str, reason: str,
    actor: Actor, source_type: str = "api", source_id: str = "", now: datetime | None = None,
) -> MovementResult:
    """Give back the points of a redemption that was cancelled: a ``reverse`` movement naming the redeem
    (``reverses_id``) that puts the points back as new available lots, each keeping the expiry and earning
    date of the lot it was taken from, so a cancelled redemption neither lengthens nor shortens the life
    of the points. Points whose lot has lapsed since are not returned: left unspent they would have
    expired. A debt the member owes is settled from the returned points first. A replayed
    ``idempotency_key`` returns the first outcome.
    """
    if redeemed.kind != "redeem":
        raise ValueError(f"movement {redeemed.id} is a {redeemed.kind}, not a redeem")
    now = now or utcnow()
    account = lock_account(session, workspace.id, redeemed.member_id)
    programme = active_programme(session, workspace.id)
    previous = _existing(session, workspace.id, idempotency_key)
    if previous is not None:
        if previous.reverses_id != redeemed.id:
            raise IdempotencyKeyReused(idempotency_key)
        return MovementResult(previous, shown(previous.outcome, programme), True)
    catch_up(session, account, programme, now)
    taken = session.execute(select(PointsAllocation.points, PointsLot.earned_at, PointsLot.expires_at)
                            .join(PointsLot, PointsLot.id == PointsAllocation.lot_id)
                            .where(PointsAllocation.movement_id == redeemed.id).order_by(PointsLot.id)).all()
    alive = [(count, earned_at, expires_at) for count, earned_at, expires_at in taken
             if expires_at is None or expires_at > now]
    returned = sum(count for count, _, _ in alive)
    movement = _record(session, account, kind="reverse", points=returned, key=idempotency_key, available=returned,
                       source_type=source_type, source_id=source_id, reason=reason,
                       actor=f"{actor.type}:{actor.id}"[:100], version=programme.version, reverses_id=redeemed.id,
                       now=now)
    session.flush()  # the lots refer to the movement's id
    for count, earned_at, expires_at in alive:
        session.add(PointsLot(workspace_id=account.workspace_id, member_id=account.member_id, movement_id=movement.id,
                              points=count, remaining=count, state="available", earned_at=earned_at,
                              available_at=now, expires_at=expires_at))
    session.flush()
    settle_debt(session, account, programme, after=movement, now=now)
    return MovementResult(movement, _finish(session, movement, account, programme), False)


def adjust(
    session: Session, workspace: Workspace, member_id: str, *, points: int, reason: str, idempotency_key: str,
    actor: Actor, now: datetime | None = None,
) -> MovementResult:
    """An operator's correction: ``+N`` adds a lot available at once (with the programme's expiry), ``-N``
    takes points nearest expiry first — beyond the available balance only as a debt, and only when the
    programme allows a negative balance. Audited with its reason and operator."""
    now = now or utcnow()
    account = lock_account(session, workspace.id, member_id)
    state = _under_lock(session, workspace.id, member_id, idempotency_key, now)
    programme = state.programme
    replay = _replayed(state.previous, idempotency_key, member_id=member_id, kind="adjust",
                       points=abs(points), programme=programme)
    if replay is not None:
        if (replay.movement.available_delta > 0) != (points > 0):  # the same size in the other direction
            raise IdempotencyKeyReused(idempotency_key)
        return replay
    catch_up(session, account, programme, now, anything_due=state.anything_due)
    who = f"{actor.type}:{actor.id}"[:100]
    if points > 0:
        movement = grant(session, account, programme, points=points, key=idempotency_key, kind="adjust",
                         earned_at=now, available_at=now, source_type="api", source_id="", zone=zone_of(workspace),
                         reason=reason, actor=who, now=now)
    else:
        wanted = -points
        if account.available < wanted and not programme.programme.allow_negative:
            raise InsufficientPoints(member_id, wanted, balance_of(account, programme)["available"])
        lots = _spendable(session, member_id, now)
        allocation = ledger.allocate(_views(lots), wanted)
        taken = sum(count for _, count in allocation)
        movement = _record(session, account, kind="adjust", points=wanted, key=idempotency_key, available=-taken,
                           debt=wanted - taken, taken=_take(lots, allocation), source_type="api", reason=reason,
                           actor=who, version=programme.version, now=now)
    record(session, actor, "loyalty.points.adjust", workspace_id=workspace.id, target_type="member",
           target_id=member_id, detail={"points": points, "movement_id": movement.id})
    return MovementResult(movement, _finish(session, movement, account, programme), False)


# --- reading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointsSummary:
    available: int
    pending: int
    debt: int
    expiring: list[dict[str, Any]]
    tier: str | None = None


def points_summary(session: Session, workspace: Workspace, member_id: str, *, now: datetime | None = None,
                   expiring_limit: int = 12) -> PointsSummary:
    """The member's balance as of ``now`` without writing anything: lots past their return window count
    as available and lapsed lots as gone, exactly as the next movement's catch-up will record them."""
    now = now or utcnow()
    account = session.scalar(select(PointsAccount).where(
        PointsAccount.workspace_id == workspace.id, PointsAccount.member_id == member_id))
    if account is None:
        raise MemberNotEnrolled(member_id)
    programme = active_programme(session, workspace.id)
    lots = session.scalars(select(PointsLot).where(PointsLot.member_id == member_id, PointsLot.remaining > 0)).all()
    available, pending, debt = account.available, account.pending, account.debt
    upcoming: dict[str, int] = {}
    for lot in lots:
        lapsed = lot.expires_at is not None and lot.expires_at <= now
        if lot.state == "pending" and (lapsed or lot.available_at <= now):
            pending -= lot.remaining
            available += 0 if lapsed else lot.remaining
        elif lot.state == "available" and lapsed:
            available -= lot.remaining
        if not lapsed and lot.expires_at is not None:
            day = lot.expires_at.isoformat()
            upcoming[day] = upcoming.get(day, 0) + lot.remaining
    settled = min(debt, max(available, 0))
    available, debt = available - settled, debt - settled
    expiring = [{"expires_at": at, "points": count} for at, count in sorted(upcoming.items())[:expiring_limit]]
    shown = ledger.shown_available(available, debt, allow_negative=programme.programme.allow_negative)
    tier = session.scalar(select(MemberTier.tier).where(MemberTier.workspace_id == workspace.id,
                                                        MemberTier.member_id == member_id))
    return PointsSummary(available=shown, pending=pending, debt=debt, expiring=expiring, tier=tier)


def ledger_page(session: Session, workspace_id: str, member_id: str, *, limit: int,
                before: int | None = None) -> Sequence[PointsMovement]:
    """The member's movements, newest first, ``limit`` at a time before the movement id ``before``."""
    query = select(PointsMovement).where(PointsMovement.workspace_id == workspace_id,
                                         PointsMovement.member_id == member_id)
    if before is not None:
        query = query.where(PointsMovement.id < before)
    return session.scalars(query.order_by(PointsMovement.id.desc()).limit(limit)).all()
