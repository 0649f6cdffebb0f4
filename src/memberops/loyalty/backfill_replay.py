"""The backfill's ledger in memory: one member's history replayed by the live ledger's rules, no I/O.

:mod:`memberops.loyalty.backfill` reads every member's state once (balance, lots with points left, the
events already rewarded), replays their orders, refunds and events here, and writes the movements, lots,
allocations and event rows this decides in a few bulk statements. The rules are the live path's, step for
step — :func:`memberops.loyalty.points.earn_for_order`, ``reverse_for_refund``, ``catch_up``,
``settle_debt`` and :func:`memberops.loyalty.event_earning.earn_for_event` — with the arithmetic from
:mod:`memberops.loyalty.ledger`; ``tests/loyalty/test_backfill.py`` compares the two ledgers row for row.

Rows made here have no id yet: a new lot sorts after every stored lot (ids only grow), in the order it was
made, which is the order the store gives them when they are written. Keys and source ids that name an id
(``release:{lot}``, ``settle:{movement}``) are spelt once the ids are known (:meth:`Movement.key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from memberops.loyalty import ledger, memberships, tier_rules
from memberops.loyalty.models import Membership
from memberops.loyalty.programme import EventRule
from memberops.loyalty.programmes import ActiveProgramme

NEW_LOT_BASE = 1 << 62  # new lots sort after every stored lot, in the order they were made


@dataclass(frozen=True)
class PastOrder:
    """An imported order of an enrolled member, as the backfill replays it."""

    member_id: str
    channel: str
    order_id: str
    ordered_at: datetime
    gross: Decimal | None
    shipping: Decimal | None
    paid: Decimal
    lines: tuple[ledger.OrderLine, ...] = ()


@dataclass(frozen=True)
class PastEvent:
    """An imported event of a type the programme rewards."""

    member_id: str
    channel: str
    event_id: str
    type: str
    occurred_at: datetime


@dataclass(frozen=True)
class PastRefund:
    """An imported refund of a replayed order."""

    channel: str
    refund_id: str
    refunded_at: datetime
    amount: Decimal
    order: PastOrder


@dataclass(eq=False)
class Lot:
    """A lot as the replay holds it: read from the store (``id`` set) or made by the replay."""

    position: int  # its place in id order: the stored id, or NEW_LOT_BASE + the order it was made in
    member_id: str
    points: int
    remaining: int
    state: str
    earned_at: datetime
    available_at: datetime
    expires_at: datetime | None
    id: int | None = None
    movement: Movement | None = None  # the movement that made a new lot
    changed: bool = False  # a stored lot whose remaining points or state the replay changed

    def view(self) -> ledger.LotView:
        return ledger.LotView(self.position, self.remaining, self.expires_at)


@dataclass(eq=False)
class Movement:
    """A movement the replay made; ``names`` is the lot or movement its key and source id spell by id."""

    member_id: str
    kind: str
    points: int
    available_delta: int
    pending_delta: int
    debt_delta: int
    outcome: dict[str, int]
    occurred_at: datetime
    created_at: datetime
    version: int
    key_text: str = ""
    source_type: str = ""
    source_id_text: str = ""
    reason: str = ""
    names: Lot | Movement | None = None  # release/expire name a lot, settle the movement it follows
    reverses: Movement | None = None
    taken: list[tuple[Lot, int]] = field(default_factory=list)
    id: int | None = None

    def key(self) -> str:
        return f"{self.kind}:{self.names.id}" if self.names is not None else self.key_text

    def source_id(self) -> str:
        return str(self.names.id) if self.names is not None else self.source_id_text


@dataclass(frozen=True)
class Earning:
    """An event the programme rewarded (stored, or made by the replay), as caps and streaks count it."""

    event_type: str
    local_day: str
    points: int
    streak: int


@dataclass(eq=False)
class EventRow:
    member_id: str
    event_type: str
    event_key: str
    occurred_at: datetime
    local_day: str
    points: int
    streak: int
    movement: Movement | None
    created_at: datetime


@dataclass
class Account:
    available: int
    pending: int
    debt: int
    changed: bool = False


@dataclass
class Written:
    """Everything a replay made, in the order it was made (the order ids are given in)."""

    movements: list[Movement] = field(default_factory=list)
    lots: list[Lot] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    expired: list[tuple[str, datetime, dict[str, Any]]] = field(default_factory=list)  # points_expired events


class MemberLedger:
    """One member's ledger in memory: the live path's movements, made in the same order with the same
    arithmetic (see the module)."""

    def __init__(self, programme: ActiveProgramme, zone: ZoneInfo, member_id: str, account: Account,
                 lots: list[Lot], membership: Membership, *, tier_history: list[tuple[datetime, str | None]],
                 order_earnings: list[tuple[datetime, int]], earnings: list[Earning], fields_held: set[str],
                 out: Written) -> None:
        self.programme = programme
        self.zone = zone
        self.member_id = member_id
        self.account = account
        self.lots = lots
        self.membership = membership
        self.tier_history = tier_history  # (at, to_tier) in the order recorded: the tier held at each order
        self.order_earnings = order_earnings  # (occurred at, points) of purchase earnings, for the caps
        self.earnings = earnings
        self.fields_held = fields_held
        self.out = out
        self.earned: dict[str, Movement] = {}  # an order's earn movement by the order's key
        self.reversed: dict[int, int] = {}  # points reversed so far of each earn movement (by id())

    # --- the ledger's steps -------------------------------------------------------------------------

    def _record(self, *, kind: str, points: int, available: int = 0, pending: int = 0, debt: int = 0,
                taken: list[tuple[Lot, int]] | None = None, occurred_at: datetime, now: datetime,
                **fields: Any) -> Movement:
        account = self.account
        account.available += available
        account.pending += pending
        account.debt += debt
        account.changed = True
        movement = Movement(self.member_id, kind, points, available, pending, debt,
                            {"available": account.available, "pending": account.pending, "debt": account.debt},
                            occurred_at, now, self.programme.version, taken=list(taken or []), **fields)
        for lot, count in movement.taken:
            if count > lot.remaining:
                raise AssertionError(f"lot {lot.position} has {lot.remaining} points left, {count} taken")
            lot.remaining -= count
            lot.changed = True
        self.out.movements.append(movement)
        return movement

    def _spendable(self, now: datetime) -> list[Lot]:
        return [lot for lot in self.lots if lot.state == "available" and lot.remaining > 0
                and (lot.expires_at is None or lot.expires_at > now)]

    @staticmethod
    def _take(lots: list[Lot], allocation: list[tuple[int, int]]) -> list[tuple[Lot, int]]:
        by_position = {lot.position: lot for lot in lots}
        return [(by_position[position], count) for position, count in allocation]

    def catch_up(self, now: datetime) -> None:
        """:func:`memberops.loyalty.points.catch_up`."""
        due = sorted((lot for lot in self.lots if lot.remaining > 0 and (
            lot.state == "pending" and lot.available_at <= now
            or lot.expires_at is not None and lot.expires_at <= now)), key=lambda lot: lot.position)
        released: Movement | None = None
        for lot in due:
            if lot.state == "pending" and lot.available_at <= now:
                released = self._record(kind="release", points=lot.remaining, available=lot.remaining,
                                        pending=-lot.remaining, source_type="lot", names=lot,
                                        occurred_at=lot.available_at, now=now)
                lot.state = "available"
                lot.changed = True
            if lot.expires_at is not None and lot.expires_at <= now and lot.remaining > 0:
                count = lot.remaining
                is_pending = lot.state == "pending"
                self._record(kind="expire", points=count, available=0 if is_pending else -count,
                             pending=-count if is_pending else 0, taken=[(lot, count)], source_type="lot",
                             names=lot, occurred_at=lot.expires_at, now=now)
                self.out.expired.append((self.member_id, now, {"points": count, "lot": lot,
                                                               "expires_at": lot.expires_at.isoformat()}))
        if released is not None:
            self.settle_debt(released, now)

    def settle_debt(self, after: Movement, now: datetime) -> None:
        """:func:`memberops.loyalty.points.settle_debt`."""
        if self.account.debt <= 0 or self.account.available <= 0:
            return
        lots = self._spendable(now)
        allocation = ledger.allocate([lot.view() for lot in lots], self.account.debt)
        paid = sum(count for _, count in allocation)
        if paid:
            self._record(kind="settle", points=paid, available=-paid, debt=-paid, taken=self._take(lots, allocation),
                         source_type="movement", names=after, occurred_at=now, now=now)

    def grant(self, *, points: int, key: str, earned_at: datetime, available_at: datetime, source_type: str,
              source_id: str, reason: str = "", now: datetime) -> Movement:
        """:func:`memberops.loyalty.points.grant` (an ``earn``)."""
        is_available = available_at <= now
        movement = self._record(kind="earn", points=points, available=points if is_available else 0,
                                pending=0 if is_available else points, key_text=key, source_type=source_type,
                                source_id_text=source_id, reason=reason, occurred_at=earned_at, now=now)
        lot = Lot(NEW_LOT_BASE + len(self.out.lots), self.member_id, points, points,
                  "available" if is_available else "pending", earned_at, available_at,
                  ledger.expires_at(self.programme.programme.expiry, earned_at, self.zone), movement=movement)
        self.lots.append(lot)
        self.out.lots.append(lot)
        if is_available:
            self.settle_debt(movement, now)
        return movement

    def earn_for_order(self, *, key: str, source_id: str, ordered_at: datetime, paid: Decimal, gross: Decimal | None,
                       shipping: Decimal | None, channel: str, lines: tuple[ledger.OrderLine, ...],
                       now: datetime) -> int | None:
        """:func:`memberops.loyalty.points.earn_for_order` for an order not posted before."""
        if not memberships.is_earning(self.programme.programme, self.membership, ordered_at):
            return None
        self.catch_up(now)
        rules = self.programme.programme.earn
        local_day = ordered_at.astimezone(self.zone).date()
        points = ledger.purchase_points(rules, ledger.Purchase(
            paid_amount=paid, gross_amount=gross, shipping_amount=shipping, channel=channel, local_date=local_day,
            birthday_month=self.membership.birth_month, tier_multiplier=self._tier_multiplier(ordered_at),
            lines=lines))
        if points and (rules.daily_cap is not None or rules.monthly_cap is not None):
            points = ledger.capped(
                points, daily_cap=rules.daily_cap, monthly_cap=rules.monthly_cap,
                earned_today=self._earned_between(*ledger.day_window(local_day, self.zone)),
                earned_this_month=self._earned_between(*ledger.month_window(local_day, self.zone)))
        if points <= 0:
            return 0
        movement = self.grant(points=points, key=key, earned_at=ordered_at,
                              available_at=ordered_at + timedelta(days=rules.pending_days), source_type="order",
                              source_id=source_id, now=now)
        self.earned[key] = movement
        self.order_earnings.append((ordered_at, points))
        return points

    def _tier_multiplier(self, ordered_at: datetime) -> Decimal | None:
        """:func:`memberops.loyalty.points.tier_multiplier_before`: the tier held when the order was placed."""
        held = tier_rules.tier_held_before(self.tier_history, ordered_at)
        return next((tier.earn_multiplier for tier in self.programme.programme.tiers if tier.code == held), None)

    def _earned_between(self, start: datetime, end: datetime) -> int:
        return sum(points for at, points in self.order_earnings if start <= at < end)

    def reverse_for_refund(self, *, order_key: str, key: str, source_id: str, paid: Decimal, refunded: Decimal,
                           refunded_at: datetime, now: datetime) -> int | None:
        """:func:`memberops.loyalty.points.reverse_for_refund` for an order this replay earned on."""
        earned = self.earned.get(order_key)
        if earned is None:
            return None
        self.catch_up(now)
        already = self.reversed.get(id(earned), 0)
        points = ledger.reversal_target(earned.points, paid, refunded) - already
        if points <= 0:
            return 0
        own = next(lot for lot in self.lots if lot.movement is earned)
        others = [lot for lot in self._spendable(now) if lot is not own]
        split = ledger.split_reversal(points, own.remaining, [lot.view() for lot in others])
        from_others = sum(count for _, count in split.from_other_lots)
        own_pending = split.from_own_lot if own.state == "pending" else 0
        own_available = split.from_own_lot - own_pending
        taken = [(own, split.from_own_lot)] if split.from_own_lot else []
        self._record(kind="reverse", points=points, available=-(own_available + from_others), pending=-own_pending,
                     debt=split.shortfall, taken=[*taken, *self._take(others, split.from_other_lots)],
                     key_text=key, source_type="refund", source_id_text=source_id, reverses=earned,
                     occurred_at=refunded_at, now=now)
        self.reversed[id(earned)] = already + points
        return points

    def earn_for_event(self, *, event_type: str, event_key: str, occurred_at: datetime, now: datetime) -> int:
        """:func:`memberops.loyalty.event_earning.earn_for_event` for a rewarded event not posted before
        (growth value aside: the backfill replays member by member when events earn growth)."""
        rule = self.programme.programme.events.get(event_type)
        if rule is None:
            return 0
        self.catch_up(now)
        day = occurred_at.astimezone(self.zone).date()
        base = rule.points if self._may_earn(event_type, rule, day) else 0
        streak, bonus = self._streak(event_type, rule, day)
        earned = base + bonus
        movement: Movement | None = None
        if earned > 0:
            reason = f"{event_type}, {streak} days in a row" if bonus else event_type
            movement = self.grant(points=earned, key=f"event:{event_key}", earned_at=occurred_at,
                                  available_at=occurred_at, source_type="event", source_id=event_key,
                                  reason=reason[:200], now=now)
        self.earnings.append(Earning(event_type, day.isoformat(), earned, streak))
        self.out.events.append(EventRow(self.member_id, event_type, event_key, occurred_at, day.isoformat(), earned,
                                        streak, movement, now))
        return earned

    def _rewarded(self, event_type: str, first_day: str, end_day: str) -> int:
        return sum(1 for row in self.earnings
                   if row.event_type == event_type and row.points > 0 and first_day <= row.local_day < end_day)

    def _may_earn(self, event_type: str, rule: EventRule, day: date) -> bool:
        if rule.once_per_member and any(row.event_type == event_type and row.points > 0 for row in self.earnings):
            return False
        if rule.max_per_day is not None and self._rewarded(
                event_type, day.isoformat(), (day + timedelta(days=1)).isoformat()) >= rule.max_per_day:
            return False
        if rule.max_per_month is not None:
            first = day.replace(day=1)
            if self._rewarded(event_type, first.isoformat(), ledger.add_months(first, 1).isoformat()) \
                    >= rule.max_per_month:
                return False
        return not rule.required_fields or set(rule.required_fields) <= self.fields_held

    def _streak(self, event_type: str, rule: EventRule, day: date) -> tuple[int, int]:
        if rule.streak is None:
            return 0, 0
        today = [row.streak for row in self.earnings if row.event_type == event_type and row.local_day == day.isoformat()]
        if today:
            return max(today), 0
        yesterday = (day - timedelta(days=1)).isoformat()
        before = [row.streak for row in self.earnings if row.event_type == event_type and row.local_day == yesterday]
        streak = (max(before) if before else 0) + 1
        return streak, rule.streak.bonus if streak % rule.streak.days == 0 else 0
