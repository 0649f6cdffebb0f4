"""Points arithmetic without a database: earning, expiry dates, lot allocation, proportional reversal."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memberops.loyalty import ledger
from memberops.loyalty.errors import InvalidProgramme
from memberops.loyalty.programme import (
    DEFAULT_PROGRAMME,
    EarnRules,
    Expiry,
    MemberDay,
    parse_programme,
    programme_yaml,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def purchase(paid: str = "100.00", *, gross: str | None = None, shipping: str | None = None, channel: str = "pos",
             day: date = date(2026, 3, 3), birthday_month: int | None = None) -> ledger.Purchase:
    return ledger.Purchase(Decimal(paid), Decimal(gross) if gross else None, Decimal(shipping) if shipping else None,
                           channel, day, birthday_month)


class TestEarning:
    def test_default_is_one_point_per_unit_paid_rounded_down(self) -> None:
        assert ledger.purchase_points(DEFAULT_PROGRAMME.earn, purchase("123.99")) == 123

    @pytest.mark.parametrize(("rounding", "points"), [("floor", 10), ("round", 11), ("ceil", 11)])
    def test_rounding_rule(self, rounding: str, points: int) -> None:
        rules = EarnRules(rounding=rounding)  # type: ignore[arg-type]
        assert ledger.purchase_points(rules, purchase("10.50")) == points

    def test_paid_amount_after_discounts_without_shipping(self) -> None:
        rules = EarnRules()
        assert ledger.purchase_points(rules, purchase("90.00", gross="120.00", shipping="10.00")) == 80
        assert ledger.purchase_points(EarnRules(include_shipping=True), purchase("90.00", shipping="10.00")) == 90

    def test_gross_basis(self) -> None:
        assert ledger.purchase_points(EarnRules(basis="gross"), purchase("90.00", gross="120.00")) == 120

    def test_shipping_larger_than_paid_earns_nothing(self) -> None:
        assert ledger.purchase_points(EarnRules(), purchase("5.00", shipping="8.00")) == 0

    def test_member_day_doubles_on_the_8th(self) -> None:
        rules = EarnRules(member_days=[MemberDay(day_of_month=8, multiplier=Decimal(2))])
        assert ledger.purchase_points(rules, purchase(day=date(2026, 3, 8))) == 200
        assert ledger.purchase_points(rules, purchase(day=date(2026, 3, 9))) == 100

    def test_multiplier_applies_before_rounding(self) -> None:
        rules = EarnRules(member_days=[MemberDay(weekday=0, multiplier=Decimal(2))])  # Mondays
        assert ledger.purchase_points(rules, purchase("10.50", day=date(2026, 3, 2))) == 21

    def test_birthday_month_and_channel_stack_by_max_or_product(self) -> None:
        settings = {"channel_multipliers": {"app": Decimal("1.5")}, "birthday_month_multiplier": Decimal(2)}
        highest = EarnRules(**settings)  # type: ignore[arg-type]
        product = EarnRules(**settings, stacking="multiply")  # type: ignore[arg-type]
        birthday = purchase(channel="app", day=date(2026, 3, 3), birthday_month=3)
        assert ledger.purchase_points(highest, birthday) == 200
        assert ledger.purchase_points(product, birthday) == 300
        assert ledger.purchase_points(product, purchase(channel="app", birthday_month=4)) == 150

    @given(points=st.integers(0, 10_000), cap=st.integers(0, 5_000), today=st.integers(0, 6_000),
           month=st.integers(0, 6_000))
    def test_caps_never_exceeded(self, points: int, cap: int, today: int, month: int) -> None:
        granted = ledger.capped(points, daily_cap=cap, monthly_cap=2 * cap, earned_today=today,
                                earned_this_month=month)
        assert 0 <= granted <= points
        assert today + granted <= max(cap, today)
        assert month + granted <= max(2 * cap, month)

    def test_member_day_needs_exactly_one_day(self) -> None:
        with pytest.raises(ValueError, match="either day_of_month or weekday"):
            MemberDay(multiplier=Decimal(2))


class TestExpiry:
    EARNED = datetime(2026, 1, 31, 20, 0, tzinfo=UTC)  # 2026-02-01 04:00 in Shanghai

    def test_rolling_months_keeps_the_time_and_clamps_the_day(self) -> None:
        assert ledger.expires_at(Expiry(months=1), self.EARNED, UTC) == datetime(2026, 2, 28, 20, 0, tzinfo=UTC)
        assert ledger.expires_at(Expiry(), self.EARNED, UTC) == datetime(2027, 1, 31, 20, 0, tzinfo=UTC)

    def test_end_of_month_in_the_workspace_zone(self) -> None:
        # earned in February (local), valid through the end of the month 12 months later: until 2027-03-01 local
        expected = datetime(2027, 3, 1, tzinfo=SHANGHAI)
        assert ledger.expires_at(Expiry(policy="end_of_month"), self.EARNED, SHANGHAI) == expected

    def test_year_end_buckets(self) -> None:
        expected = datetime(2028, 1, 1, tzinfo=SHANGHAI)  # points of 2026 lapse at the end of 2027
        assert ledger.expires_at(Expiry(policy="year_end", years=1), self.EARNED, SHANGHAI) == expected
        assert ledger.expires_at(Expiry(policy="never"), self.EARNED, UTC) is None

    @given(st.dates(date(2000, 1, 1), date(2100, 12, 31)), st.integers(0, 240))
    def test_add_months_lands_in_the_right_month(self, day: date, months: int) -> None:
        moved = ledger.add_months(day, months)
        assert (moved.year * 12 + moved.month) - (day.year * 12 + day.month) == months
        assert moved.day == day.day or moved.day < day.day and (moved + timedelta(days=1)).day == 1


lot_lists = st.lists(
    st.builds(ledger.LotView, id=st.integers(1, 10_000), remaining=st.integers(0, 500),
              expires_at=st.none() | st.datetimes(datetime(2026, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC))),
    max_size=12, unique_by=lambda lot: lot.id,
)


class TestAllocation:
    @given(lot_lists, st.integers(0, 5_000))
    def test_never_over_consumes_and_takes_what_it_can(self, lots: list[ledger.LotView], points: int) -> None:
        taken = ledger.allocate(lots, points)
        remaining = {lot.id: lot.remaining for lot in lots}
        assert all(0 < count <= remaining[lot_id] for lot_id, count in taken)
        assert len({lot_id for lot_id, _ in taken}) == len(taken)
        assert sum(count for _, count in taken) == min(points, sum(remaining.values()))

    @given(lot_lists, st.integers(1, 5_000))
    def test_nearest_expiry_first(self, lots: list[ledger.LotView], points: int) -> None:
        taken = dict(ledger.allocate(lots, points))
        ordered = ledger.allocation_order([lot for lot in lots if lot.remaining > 0])
        # every lot before the last one touched is emptied; nothing after it is touched
        touched = [i for i, lot in enumerate(ordered) if lot.id in taken]
        if touched:
            last = touched[-1]
            assert all(taken.get(lot.id) == lot.remaining for lot in ordered[:last])
            assert all(lot.id not in taken for lot in ordered[last + 1:])

    def test_never_expiring_lots_last(self) -> None:
        soon = ledger.LotView(2, 5, datetime(2026, 5, 1, tzinfo=UTC))
        never = ledger.LotView(1, 5, None)
        assert ledger.allocate([never, soon], 7) == [(2, 5), (1, 2)]


class TestReversal:
    @given(earned=st.integers(0, 100_000), paid_cents=st.integers(1, 10_000_000),
           cuts=st.lists(st.integers(1, 1_000), min_size=1, max_size=8))
    def test_partial_refunds_add_up_to_a_full_one(self, earned: int, paid_cents: int, cuts: list[int]) -> None:
        paid = Decimal(paid_cents) / 100
        total = sum(cuts)
        refunded = Decimal(0)
        reversed_so_far = 0
        for i, cut in enumerate(cuts):
            refunded = paid if i == len(cuts) - 1 else min(paid, refunded + (paid * cut / total).quantize(Decimal("0.01")))
            target = ledger.reversal_target(earned, paid, refunded)
            assert target >= reversed_so_far  # never gives points back
            reversed_so_far = target
        assert reversed_so_far == earned

    def test_half_refund_reverses_half(self) -> None:
        assert ledger.reversal_target(123, Decimal("123.45"), Decimal("61.73")) == 62

    @given(points=st.integers(0, 1_000), own=st.integers(0, 1_000), lots=lot_lists)
    def test_shortfall_is_never_dropped(self, points: int, own: int, lots: list[ledger.LotView]) -> None:
        split = ledger.split_reversal(points, own, lots)
        assert split.from_own_lot + sum(c for _, c in split.from_other_lots) + split.shortfall == points
        assert split.shortfall >= 0 and split.from_own_lot <= own


class TestProgrammeDocument:
    def test_yaml_round_trip(self) -> None:
        assert parse_programme(programme_yaml(DEFAULT_PROGRAMME)) == DEFAULT_PROGRAMME

    def test_bad_fields_are_named(self) -> None:
        with pytest.raises(InvalidProgramme) as raised:
            parse_programme("earn: {rounding: sideways, pending_days: -1}\nexpiry: {policy: whenever}\ncolour: red")
        fields = {e["field"] for e in raised.value.errors}
        assert {"earn.rounding", "earn.pending_days", "expiry.policy", "colour"} <= fields

    def test_not_a_mapping(self) -> None:
        with pytest.raises(InvalidProgramme):
            parse_programme("- just\n- a list")
