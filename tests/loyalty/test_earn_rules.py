"""Earning by category and SKU (issue 6, "Earn rules"): the basis spread over order lines, line multipliers
under the programme's stacking, fixed bonus points per unit, caps and refunds — pure arithmetic first, then
the live path and the backfill on every store."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.loyalty import ledger, points
from memberops.loyalty.errors import InvalidProgramme
from memberops.loyalty.models import PointsMovement
from memberops.loyalty.programme import EarnRules, programme_from_dict
from memberops.runtime import Context
from tests.loyalty.factories import WHEN, enrol, post_order, post_refund, set_programme

Line = ledger.OrderLine


def purchase(paid: str, lines: tuple[Line, ...], *, gross: str | None = None, shipping: str | None = None,
             day: date = date(2026, 3, 3), channel: str = "pos") -> ledger.Purchase:
    return ledger.Purchase(Decimal(paid), Decimal(gross) if gross else None, Decimal(shipping) if shipping else None,
                           channel, day, lines=lines)


def rules(**settings: Any) -> EarnRules:
    return EarnRules.model_validate(settings)


NEWBORN_X2 = {"category_rules": {"newborn_gift": {"multiplier": "2"}}}
BASKET = (Line("NG-BOX", "newborn_gift", 1, Decimal("60.00")), Line("WIPES", "wipes", 2, Decimal("40.00")))


class TestLineShares:
    @given(basis_cents=st.integers(0, 10_000_000),
           amounts=st.lists(st.integers(0, 1_000_000), min_size=1, max_size=12))
    def test_shares_add_up_to_the_basis_to_the_cent(self, basis_cents: int, amounts: list[int]) -> None:
        basis = Decimal(basis_cents) / 100
        shares = ledger.line_shares(basis, [Decimal(a) / 100 for a in amounts])
        assert all(share >= 0 and share == share.quantize(ledger.CENT) for share in shares)
        if sum(amounts) == 0:
            assert sum(shares) == 0
            return
        assert sum(shares) == basis
        for amount, share in zip(amounts, shares, strict=True):  # each within a cent of its exact share
            assert abs(share - basis * amount / sum(amounts)) < ledger.CENT

    def test_thirds_do_not_lose_a_cent(self) -> None:
        assert ledger.line_shares(Decimal("100.00"), [Decimal(1)] * 3) == [
            Decimal("33.34"), Decimal("33.33"), Decimal("33.33")]


class TestLineRules:
    def test_the_discount_falls_on_each_line_by_its_share(self) -> None:
        # paid 88.80 of 100.00: the newborn box (60 %) earns on 53.28 at ×2, the wipes on 35.52
        # 106.56 + 35.52 = 142.08 → 142 (rounded once, at the end)
        assert ledger.purchase_points(rules(**NEWBORN_X2), purchase("88.80", BASKET)) == 142
        assert ledger.purchase_points(rules(**NEWBORN_X2, basis="gross"), purchase("88.80", BASKET, gross="100.00")) == 160

    @pytest.mark.parametrize(("rounding", "expected"), [("floor", 15), ("round", 15), ("ceil", 16)])
    def test_rounding_rule_applies_once_to_the_sum(self, rounding: str, expected: int) -> None:
        # 10.01 shared 3.34 + 3.34 + 3.33, at ×1.5 = 15.015 summed exactly; line by line it would be
        # 5 + 5 + 4 = 14 (floor) or 6 + 6 + 5 = 17 (ceil)
        lines = tuple(Line(f"S{i}", "toys", 1, Decimal("1.00")) for i in range(3))
        settings = rules(category_rules={"toys": {"multiplier": "1.5"}}, rounding=rounding)
        assert ledger.purchase_points(settings, purchase("10.01", lines)) == expected

    def test_a_sku_rule_replaces_its_category_rule_and_bonus_is_per_unit(self) -> None:
        settings = rules(**NEWBORN_X2, sku_rules={"NG-BOX": {"bonus_per_unit": 30}, "WIPES": {"bonus_per_unit": 5}})
        # NG-BOX: 60 × 1 + 30; WIPES: 40 × 1 + 2 × 5
        assert ledger.purchase_points(settings, purchase("100.00", BASKET)) == 140

    def test_stacking_with_the_member_day(self) -> None:
        member_day = {"member_days": [{"day_of_month": 8, "multiplier": "3"}]}
        eighth = date(2026, 3, 8)
        # max: the box at max(3, 2) = 3, the wipes at 3 → 300; multiply: the box at 6 → 360 + 120
        assert ledger.purchase_points(rules(**NEWBORN_X2, **member_day), purchase("100.00", BASKET, day=eighth)) == 300
        product = rules(**NEWBORN_X2, **member_day, stacking="multiply")
        assert ledger.purchase_points(product, purchase("100.00", BASKET, day=eighth)) == 480

    def test_included_shipping_earns_with_the_order_multipliers_only(self) -> None:
        settings = rules(**NEWBORN_X2, include_shipping=True)
        # paid 110 with 10 shipping: lines share 100 (120 + 40), shipping 10 at ×1
        assert ledger.purchase_points(settings, purchase("110.00", BASKET, shipping="10.00")) == 170
        assert ledger.purchase_points(rules(**NEWBORN_X2), purchase("110.00", BASKET, shipping="10.00")) == 160

    @given(paid_cents=st.integers(0, 5_000_000), amounts=st.lists(st.integers(0, 100_000), min_size=1, max_size=8),
           multiplier=st.sampled_from(["0.5", "1", "1.5", "2"]), rounding=st.sampled_from(["floor", "round", "ceil"]))
    def test_lines_without_a_rule_earn_exactly_as_the_whole_order(
            self, paid_cents: int, amounts: list[int], multiplier: str, rounding: str) -> None:
        lines = tuple(Line(f"S{i}", "other", 1, Decimal(a) / 100) for i, a in enumerate(amounts))
        settings = rules(category_rules={"unrelated": {"multiplier": "2"}}, rounding=rounding,
                         channel_multipliers={"pos": multiplier})
        paid = str(Decimal(paid_cents) / 100)
        assert ledger.purchase_points(settings, purchase(paid, lines)) == ledger.purchase_points(settings, purchase(paid, ()))

    def test_config_errors_name_the_field_and_what_is_accepted(self) -> None:
        with pytest.raises(InvalidProgramme) as caught:
            programme_from_dict({"earn": {"category_rules": {"toys": {"multiplier": "-1", "bonus": 3}}}})
        fields = {error["field"]: error["message"] for error in caught.value.errors}
        assert "greater than or equal to 0" in fields["earn.category_rules.toys.multiplier"]
        assert fields["earn.category_rules.toys.bonus"] == "Extra inputs are not permitted"


@pytest.fixture
def member(context: Context, workspace: Workspace) -> str:
    with context.store.transaction() as session:
        return enrol(session, workspace)


def items(*lines: tuple[str, str, int, str]) -> list[dict[str, Any]]:
    return [{"line_no": n, "sku": sku, "category": category, "quantity": quantity, "amount": amount}
            for n, (sku, category, quantity, amount) in enumerate(lines, start=1)]


BOX_AND_WIPES = items(("NG-BOX", "newborn_gift", 1, "60.00"), ("WIPES", "wipes", 2, "40.00"))


class TestLiveOrders:
    def test_lines_posted_with_the_order_earn_by_category_caps_and_refunds_as_before(
            self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, earn={**NEWBORN_X2, "daily_cap": 200})
            assert post_order(session, workspace, "o1", paid="88.80", gross_amount=Decimal("100.00"),
                              discount_amount=Decimal("11.20"), items=BOX_AND_WIPES).points == 142
            assert post_order(session, workspace, "o2", items=BOX_AND_WIPES).points == 58  # the day's cap: 200
            assert post_order(session, workspace, "o3", ordered_at=WHEN + timedelta(days=1)).points == 100  # no lines
        with context.store.transaction() as session:  # a quarter of o1 refunded: 142 × 22.20 / 88.80 = 35.5 → 36
            assert post_refund(session, workspace, "r1", order_id="o1", amount="22.20").points == 36
            assert post_refund(session, workspace, "r1", order_id="o1", amount="22.20").status == "duplicate"
            assert post_refund(session, workspace, "r2", order_id="o1", amount="66.60").points == 106
        with context.store.read() as session:
            summary = points.points_summary(session, workspace, member)
            assert summary.available == 58 + 100
            reversed_total = sum(m.points for m in session.scalars(
                select(PointsMovement).where(PointsMovement.kind == "reverse")))
            assert reversed_total == 142


class TestBackfill:
    def test_imported_lines_earn_by_category(self, context: Context, workspace: Workspace) -> None:
        from memberops.loyalty.backfill import backfill_points
        from tests.insight.lake import AS_OF, Brand, at

        with context.store.transaction() as session:
            set_programme(session, workspace, earn=NEWBORN_X2)
            member_id = enrol(session, workspace, "c1", now=at(400))
        brand = Brand(workspace_id=workspace.id)
        customer = brand.person(member_id, channel="pos", source_id="c1")
        lines = (("NG-BOX", "newborn_gift", 1, "60.00"), ("WIPES", "wipes", 2, "40.00"))
        brand.order(customer, "t1", 30, "88.80", channel="pos", discount="11.20", lines=lines)
        brand.order(customer, "t2", 20, "100.00", channel="pos")  # no lines: as a whole
        brand.write(context.settings.lake_path)
        summary = backfill_points(context, workspace, now=AS_OF)
        assert (summary.orders, summary.points_earned) == (2, 142 + 100)


class TestGrowthOnRefunds:
    def test_a_refund_takes_growth_back_in_proportion_once_and_only_evaluation_downgrades(
            self, context: Context, workspace: Workspace, member: str) -> None:
        from memberops.db.base import utcnow
        from memberops.ingest.models import LiveOrder, LiveRefund
        from memberops.loyalty import tiers
        from memberops.loyalty.tier_models import GrowthMovement

        now = utcnow()

        def growth() -> int:
            with context.store.read() as session:
                return int(session.scalar(select(func.sum(GrowthMovement.value))) or 0)

        def held() -> str | None:
            with context.store.read() as session:
                tier = tiers.tier_of(session, workspace.id, member)
                return None if tier is None else tier.tier

        with context.store.transaction() as session:
            set_programme(session, workspace, tiers=[{"code": "silver", "name": "Silver", "threshold": "500"}],
                          tier_rules={"metric": "growth", "growth_per_unit": "1"})
            post_order(session, workspace, "o1", paid="600.00", ordered_at=now - timedelta(days=1))
        assert (growth(), held()) == (600, "silver")
        with context.store.transaction() as session:
            assert post_refund(session, workspace, "r1", order_id="o1", amount="150.00", refunded_at=now).points == 150
            assert post_refund(session, workspace, "r1", order_id="o1", amount="150.00").status == "duplicate"
            ws = session.get(Workspace, workspace.id)
            assert ws is not None
            refund = session.scalars(select(LiveRefund)).one()
            order = session.scalars(select(LiveOrder)).one()
            assert tiers.reverse_growth_for_refund(session, ws, refund, order) == 0  # the hook ran it already
        assert (growth(), held()) == (450, "silver")  # below the threshold, but only evaluation downgrades
        with context.store.transaction() as session:
            post_refund(session, workspace, "r2", order_id="o1", amount="450.00", refunded_at=now)
            taken = session.scalars(select(GrowthMovement.value).where(GrowthMovement.source_type == "refund")).all()
            assert sorted(taken) == [-450, -150]
            moved = session.scalars(select(GrowthMovement.occurred_at).where(GrowthMovement.value < 0)).all()
            assert all(at == now - timedelta(days=1) for at in moved)  # in the window the growth was earned in
        assert (growth(), held()) == (0, "silver")
        with context.store.transaction() as session:
            ws = session.get(Workspace, workspace.id)
            assert ws is not None
            assert tiers.evaluate_tiers(session, ws, as_of=now + timedelta(days=1)).downgraded == 1
        assert held() is None
