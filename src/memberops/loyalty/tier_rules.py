"""Tier arithmetic with no I/O: qualification windows, the tier a metric reaches, and what an evaluation
decides. The service (:mod:`memberops.loyalty.tiers`) reads the metric from the store and writes what
these decide; the property tests drive them directly.

Windows are half-open ``[start, end)`` instants; calendar and anniversary boundaries are local midnights
in the workspace's time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Literal

from memberops.loyalty.ledger import add_months

WindowRule = Literal["rolling_12_months", "calendar_year", "anniversary"]
TICK = timedelta(microseconds=1)  # the smallest step of a stored time: "up to and including"


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime  # exclusive
    label: str

    def __contains__(self, at: object) -> bool:
        return isinstance(at, datetime) and self.start <= at < self.end


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def _anniversary_on_or_before(day: date, anniversary: date) -> date:
    """The last anniversary of ``anniversary`` on or before ``day`` (29 February falls on the 28th)."""
    year = day.year
    candidate = add_months(anniversary, (year - anniversary.year) * 12)
    if candidate > day:
        candidate = add_months(anniversary, (year - 1 - anniversary.year) * 12)
    return candidate


def window_containing(rule: WindowRule, at: datetime, zone: tzinfo, *, anniversary: date) -> Window:
    """The qualification window ``at`` falls in: the 12 months up to and including ``at``
    (``rolling_12_months``), its calendar year, or its membership year (from the anniversary of
    ``anniversary``, the local enrolment date, on or before it)."""
    local = at.astimezone(zone)
    if rule == "rolling_12_months":
        start = datetime.combine(add_months(local.date(), -12), local.timetz()).astimezone(at.tzinfo)
        return Window(start, at + TICK, local.date().isoformat())
    if rule == "calendar_year":
        return Window(_midnight(date(local.year, 1, 1), zone).astimezone(at.tzinfo),
                      _midnight(date(local.year + 1, 1, 1), zone).astimezone(at.tzinfo), str(local.year))
    first = _anniversary_on_or_before(local.date(), anniversary)
    following = add_months(anniversary, (first.year + 1 - anniversary.year) * 12)
    return Window(_midnight(first, zone).astimezone(at.tzinfo), _midnight(following, zone).astimezone(at.tzinfo),
                  first.isoformat())


def assessed_window(rule: WindowRule, as_of: datetime, zone: tzinfo, *, anniversary: date,
                    grace_months: int) -> Window:
    """The window an evaluation at ``as_of`` judges a tier on: the last one that ended at least
    ``grace_months`` before ``as_of`` (for rolling windows: the 12 months ending then)."""
    local = as_of.astimezone(zone)
    ref = datetime.combine(add_months(local.date(), -grace_months), local.timetz()).astimezone(as_of.tzinfo)
    if rule == "rolling_12_months":
        start = datetime.combine(add_months(ref.astimezone(zone).date(), -12),
                                 ref.astimezone(zone).timetz()).astimezone(as_of.tzinfo)
        return Window(start, ref, ref.astimezone(zone).strftime("%Y-%m"))
    current = window_containing(rule, ref, zone, anniversary=anniversary)
    return window_containing(rule, current.start - TICK, zone, anniversary=anniversary)


def benefit_period(rule: WindowRule, at: datetime, zone: tzinfo, *, anniversary: date) -> Window:
    """The period a tier's benefits are given for: the calendar or membership year of ``at`` (rolling
    windows give them per calendar year)."""
    return window_containing("calendar_year" if rule == "rolling_12_months" else rule, at, zone,
                             anniversary=anniversary)


def tier_for(thresholds: Sequence[Decimal], metric: Decimal) -> int | None:
    """The index of the highest tier whose threshold ``metric`` reaches (thresholds ascending), or
    ``None`` below the first."""
    reached: int | None = None
    for index, threshold in enumerate(thresholds):
        if metric >= threshold:
            reached = index
    return reached


def missing_for_next(thresholds: Sequence[Decimal], current: int | None, metric: Decimal) -> tuple[int, Decimal] | None:
    """The next tier above ``current`` and how much of the metric it still needs, or ``None`` at the top."""
    following = 0 if current is None else current + 1
    if following >= len(thresholds):
        return None
    return following, max(thresholds[following] - metric, Decimal(0))


Reason = Literal["upgrade", "downgrade", "keep"]


@dataclass(frozen=True)
class Decision:
    tier: int | None
    reason: Reason | None  # None: nothing to record


def upgrade(current: int | None, thresholds: Sequence[Decimal], metric: Decimal) -> Decision:
    """On the live path: a higher tier as soon as the current window's metric reaches it; never lower."""
    reached = tier_for(thresholds, metric)
    if reached is not None and (current is None or reached > current):
        return Decision(reached, "upgrade")
    return Decision(current, None)


def evaluate(
    current: int | None, since: datetime | None, *, thresholds: Sequence[Decimal], keep_ratio: Decimal,
    current_metric: Decimal, assessed_metric: Decimal, assessed: Window,
) -> Decision:
    """The evaluation's verdict. A tier reached at or after the assessed window's end is not judged by it
    (it was won later). Otherwise the member keeps the highest tier up to theirs whose lower bar
    (``keep_ratio`` × threshold) the assessed window reaches, or whatever the current window qualifies for,
    whichever is higher; ``keep`` is recorded only when the lower bar is what saved the tier."""
    raised = upgrade(current, thresholds, current_metric)
    if raised.reason is not None or current is None:
        return raised
    if since is not None and since >= assessed.end:
        return Decision(current, None)
    kept: int | None = None
    for index in range(current + 1):
        if assessed_metric >= thresholds[index] * keep_ratio:
            kept = index
    qualified = tier_for(thresholds, current_metric)
    candidates = [tier for tier in (kept, qualified) if tier is not None]
    result = max(candidates) if candidates else None
    if result is None or result < current:
        return Decision(result, "downgrade")
    if assessed_metric < thresholds[current] and (qualified is None or qualified < current):
        return Decision(current, "keep")
    return Decision(current, None)


def tier_held_before(changes: Sequence[tuple[datetime, str | None]], moment: datetime) -> str | None:
    """The tier a member held just before ``moment``, from their tier history (``(at, to_tier)`` in the
    order it was recorded); ``None`` before the first entry — no tier known then, e.g. before the
    programme existed. An upgrade an order brings about applies from the next order, so a change at the
    very ``moment`` does not count."""
    held: str | None = None
    for at, tier in changes:
        if at >= moment:
            break
        held = tier
    return held
