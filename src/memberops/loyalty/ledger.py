"""Points arithmetic with no I/O: what a purchase earns, when points lapse, which lots a spend consumes
and how much a refund takes back. The service (:mod:`memberops.loyalty.points`) reads rows, calls these
and writes what they decide; the property tests drive them directly.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from memberops.loyalty.programme import EarnRules, Expiry, LineRule

_ROUNDING = {"floor": ROUND_FLOOR, "round": ROUND_HALF_UP, "ceil": ROUND_CEILING}


def to_points(value: Decimal, rounding: str) -> int:
    """``value`` as whole points by the programme's rounding rule (``round`` is half up)."""
    return int(value.to_integral_value(rounding=_ROUNDING[rounding]))


# --- earning -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    """An order line as earning sees it: what was bought (SKU, category), how many, and the line's amount."""

    sku: str
    category: str | None
    quantity: int
    amount: Decimal


@dataclass(frozen=True)
class Purchase:
    """What a purchase earns on: its amounts, channel and local date (the workspace's time zone)."""

    paid_amount: Decimal
    gross_amount: Decimal | None
    shipping_amount: Decimal | None
    channel: str
    local_date: date
    birthday_month: int | None = None
    tier_multiplier: Decimal | None = None  # the earn multiplier of the buyer's tier, if they hold one
    lines: Sequence[OrderLine] = ()  # none: the order earns as a whole


def earn_basis(rules: EarnRules, purchase: Purchase) -> Decimal:
    """The amount points are earned on: paid (after discounts) or gross, shipping left out unless the
    rules include it; never negative."""
    amount = purchase.gross_amount if rules.basis == "gross" and purchase.gross_amount is not None \
        else purchase.paid_amount
    if not rules.include_shipping and purchase.shipping_amount:
        amount -= purchase.shipping_amount
    return max(amount, Decimal(0))


def multipliers(rules: EarnRules, purchase: Purchase) -> list[Decimal]:
    """Every multiplier that applies to the purchase (channel, member days, birthday month, the buyer's
    tier)."""
    found: list[Decimal] = []
    if purchase.channel in rules.channel_multipliers:
        found.append(rules.channel_multipliers[purchase.channel])
    for day in rules.member_days:
        if day.day_of_month is not None and day.day_of_month == purchase.local_date.day \
                or day.weekday is not None and day.weekday == purchase.local_date.weekday():
            found.append(day.multiplier)
    if purchase.birthday_month is not None and purchase.birthday_month == purchase.local_date.month \
            and rules.birthday_month_multiplier != 1:
        found.append(rules.birthday_month_multiplier)
    if purchase.tier_multiplier is not None and purchase.tier_multiplier != 1:
        found.append(purchase.tier_multiplier)
    return found


def _stacked(stacking: str, found: Sequence[Decimal]) -> Decimal:
    if not found:
        return Decimal(1)
    if stacking == "max":
        return max(found)
    product = Decimal(1)
    for value in found:
        product *= value
    return product


def combined_multiplier(rules: EarnRules, purchase: Purchase) -> Decimal:
    return _stacked(rules.stacking, multipliers(rules, purchase))


CENT = Decimal("0.01")


def line_shares(basis: Decimal, amounts: Sequence[Decimal]) -> list[Decimal]:
    """``basis`` spread over lines in proportion to their ``amounts``, in whole cents, summing exactly to
    ``basis`` (to the cent): each line gets its share rounded down, and the cents left go one each to the
    lines with the largest remainders (the first line on a tie). Lines of no (or negative) amount get
    nothing; so does every line when no amount is positive.

    This is how a paid basis carries the order's discount onto its lines: a line of 60 % of the line
    amounts earns on 60 % of what was paid.
    """
    weights = [int(max(amount, Decimal(0)).scaleb(2).to_integral_value(ROUND_HALF_UP)) for amount in amounts]
    total_weight = sum(weights)
    units = int((max(basis, Decimal(0)) / CENT).to_integral_value(ROUND_FLOOR))
    if total_weight <= 0 or units <= 0:
        return [Decimal(0) for _ in amounts]
    quotients = [units * weight // total_weight for weight in weights]
    remainders = [units * weight % total_weight for weight in weights]
    left = units - sum(quotients)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        quotients[index] += 1
    return [Decimal(quotient) * CENT for quotient in quotients]


def _line_rule(rules: EarnRules, line: OrderLine) -> LineRule | None:
    rule = rules.sku_rules.get(line.sku)
    if rule is None and line.category is not None:
        rule = rules.category_rules.get(line.category)
    return rule


def purchase_points(rules: EarnRules, purchase: Purchase) -> int:
    """Points a purchase earns before caps: basis × points per unit × multiplier, rounded once at the end
    (so ×2 of 10.5 points is 21, not 20).

    With order lines and category or SKU rules, the basis (shipping left aside) is spread over the lines
    (:func:`line_shares`); a line with a rule earns on its share with its multiplier joined to the order's
    under ``stacking``, plus ``bonus_per_unit`` × quantity; the rest of the basis (shipping when included,
    lines without a rule) earns with the order's multipliers. An order without lines, or a programme
    without line rules, earns exactly as the order as a whole.
    """
    basis = earn_basis(rules, purchase)
    found = multipliers(rules, purchase)
    order_multiplier = _stacked(rules.stacking, found)
    if not purchase.lines or not (rules.category_rules or rules.sku_rules):
        return max(to_points(basis * rules.points_per_unit * order_multiplier, rules.rounding), 0)
    shipping = (purchase.shipping_amount or Decimal(0)) if rules.include_shipping else Decimal(0)
    shares = line_shares(basis - min(max(shipping, Decimal(0)), basis), [line.amount for line in purchase.lines])
    raw = (basis - sum(shares, Decimal(0))) * rules.points_per_unit * order_multiplier
    for line, share in zip(purchase.lines, shares, strict=True):
        rule = _line_rule(rules, line)
        if rule is None:
            raw += share * rules.points_per_unit * order_multiplier
            continue
        multiplier = _stacked(rules.stacking, [*found, rule.multiplier]) if rule.multiplier != 1 else order_multiplier
        raw += share * rules.points_per_unit * multiplier + rule.bonus_per_unit * max(line.quantity, 0)
    return max(to_points(raw, rules.rounding), 0)


def capped(points: int, *, daily_cap: int | None, monthly_cap: int | None,
           earned_today: int, earned_this_month: int) -> int:
    """``points`` cut so the day's and the month's purchase earnings stay within their caps."""
    room = points
    if daily_cap is not None:
        room = min(room, max(daily_cap - earned_today, 0))
    if monthly_cap is not None:
        room = min(room, max(monthly_cap - earned_this_month, 0))
    return max(room, 0)


# --- expiry --------------------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """``day`` moved by ``months`` calendar months, clamped to the month's last day (Jan 31 + 1 → Feb 28)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _local_midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def expires_at(policy: Expiry, earned_at: datetime, zone: tzinfo) -> datetime | None:
    """The instant points earned at ``earned_at`` lapse (they are spendable strictly before it), or
    ``None`` when they never do. Calendar boundaries are the workspace's (``zone``)."""
    local = earned_at.astimezone(zone)
    if policy.policy == "never":
        return None
    if policy.policy == "rolling_months":
        moved = add_months(local.date(), policy.months)
        return datetime.combine(moved, local.timetz()).astimezone(earned_at.tzinfo)
    if policy.policy == "end_of_month":
        target = add_months(local.date().replace(day=1), policy.months + 1)
        return _local_midnight(target, zone).astimezone(earned_at.tzinfo)
    return _local_midnight(date(local.year + policy.years + 1, 1, 1), zone).astimezone(earned_at.tzinfo)


# --- lots ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LotView:
    """A lot as allocation sees it: how many of its points are left and when they lapse."""

    id: int
    remaining: int
    expires_at: datetime | None


def allocation_order(lots: Iterable[LotView]) -> list[LotView]:
    """Nearest expiry first (never-expiring last), then oldest lot first."""
    far = datetime.max.replace(tzinfo=None)
    return sorted(lots, key=lambda lot: (lot.expires_at is None,
                                         lot.expires_at.replace(tzinfo=None) if lot.expires_at else far, lot.id))


def allocate(lots: Sequence[LotView], points: int) -> list[tuple[int, int]]:
    """Which lots give ``points`` and how many each: ``[(lot_id, points), …]``, nearest expiry first.

    Takes at most each lot's remaining points; the result sums to ``min(points, sum of remaining)`` — the
    caller decides what a shortfall means (a refusal for a redemption, a debt for a reversal).
    """
    if points <= 0:
        return []
    taken: list[tuple[int, int]] = []
    left = points
    for lot in allocation_order(lots):
        if left == 0:
            break
        take = min(lot.remaining, left)
        if take > 0:
            taken.append((lot.id, take))
            left -= take
    return taken


# --- reversal ------------------------------------------------------------------------------------------


def reversal_target(earned: int, paid_amount: Decimal, refunded_total: Decimal) -> int:
    """How many of an order's ``earned`` points are taken back once ``refunded_total`` of its
    ``paid_amount`` has been refunded: proportional, rounded half up, all of them on a full refund.

    Cumulative on purpose: each refund reverses ``target(after) - target(before)``, so two half refunds
    reverse exactly what one full refund would, and rounding never drifts.
    """
    if earned <= 0:
        return 0
    if paid_amount <= 0 or refunded_total >= paid_amount:
        return earned
    share = Decimal(earned) * refunded_total / paid_amount
    return min(earned, to_points(share, "round"))


@dataclass(frozen=True)
class Reversal:
    """A reversal split by where its points come from: the order's own unspent lot, the member's other
    available lots, and what is left as a debt (or negative balance)."""

    from_own_lot: int
    from_other_lots: list[tuple[int, int]]
    shortfall: int


def split_reversal(points: int, own_lot_remaining: int, other_lots: Sequence[LotView]) -> Reversal:
    """Points not yet spent come back from the order's own lot; points already spent are taken from the
    member's other available points, nearest expiry first; what still cannot be covered is the
    shortfall, kept as a debt — never dropped."""
    own = min(points, max(own_lot_remaining, 0))
    others = allocate(other_lots, points - own)
    return Reversal(own, others, points - own - sum(p for _, p in others))


# --- balances ------------------------------------------------------------------------------------------


def shown_available(available: int, debt: int, *, allow_negative: bool) -> int:
    """The available balance as the member sees it: a debt shows as a negative balance when the
    programme allows one; otherwise the debt is reported on its own and available stays at its lots."""
    return available - debt if allow_negative else available


def day_window(local_day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """The UTC-comparable bounds of a local calendar day."""
    start = _local_midnight(local_day, zone)
    return start, start + timedelta(days=1)


def month_window(local_day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    first = local_day.replace(day=1)
    return _local_midnight(first, zone), _local_midnight(add_months(first, 1), zone)
