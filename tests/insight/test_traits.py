"""Traits on every engine, from a small hand-built lake, against values computed by hand."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from memberops.insight.compute import compute_traits
from memberops.insight.config import InsightConfig, LifecycleConfig
from memberops.insight.tags import TagDefinition
from memberops.lake.engine import Warehouse
from tests.insight.lake import AS_OF, WS, Brand


def brand() -> Brand:
    b = Brand()
    alice_web = b.person("m1", member_card_no="CARD1")
    alice_pos = b.person("m1", channel="pos", associate_id="as1")
    bob = b.person("m2", referrer_code="CARD1")
    carol = b.person("m3", referrer_code="CARD1")
    dan = b.person("m4")
    b.order(alice_web, "o1", 100, "100.00", lines=(("s1", "newborn", 2, "100.00"),))
    b.order(alice_web, "o2", 50, "50.00", discount="10", lines=(("s2", "toys", 1, "50.00"),))
    b.refund("o2", 40, "20.00")
    b.order(alice_pos, "o3", 10, "30.00", channel="pos", store_id="st1", lines=(("s3", "toys", 1, "30.00"),))
    b.order(alice_web, "o-cancelled", 5, "999.00", status="cancelled")
    b.order(alice_web, "o-later", -5, "500.00")  # after as_of: not yet happened
    b.order(bob, "o4", 5, "80.00", lines=(("s1", "newborn", 1, "80.00"),))
    b.order(dan, "o5", 200, "60.00", coupon_codes=["WELCOME"], lines=(("s4", "toys", 3, "60.00"),))
    b.refund("o5", 190, "60.00")
    b.event(alice_web, "share", 3)
    b.event(carol, "product_view", 2)
    return b


def _rows(warehouse: Warehouse, b: Brand, **kwargs: Any) -> dict[str, dict[str, Any]]:
    b.write(warehouse.lake)
    computed = compute_traits(warehouse, WS, as_of=AS_OF, computed_at=AS_OF, **kwargs)
    return {row["member_id"]: row for row in computed.table.to_pylist()}


class TestPurchaseStatistics:
    def test_merged_member_aggregates_across_channels(self, warehouse: Warehouse) -> None:
        alice = _rows(warehouse, brand())["m1"]
        assert alice["orders"] == 3  # the cancelled order and the one after as_of do not count
        assert alice["units"] == 4
        assert alice["gross_spend"] == Decimal("180.00")
        assert alice["refunded"] == Decimal("20.00")
        assert alice["net_spend"] == Decimal("160.00")
        assert alice["aov"] == Decimal("53.33")
        assert alice["items_per_order"] == pytest.approx(4 / 3)
        assert alice["first_purchase_at"] == AS_OF - timedelta(days=100)
        assert alice["last_purchase_at"] == AS_OF - timedelta(days=10)
        assert alice["days_since_last_purchase"] == 10
        assert alice["mean_interpurchase_days"] == 45.0
        assert alice["median_interpurchase_days"] == 45.0
        assert alice["discount_share"] == pytest.approx(1 / 3)
        assert alice["refund_rate"] == pytest.approx(1 / 3)
        assert alice["online_share"] == pytest.approx(2 / 3)
        assert alice["preferred_channel"] == "tmall"
        assert alice["preferred_category"] == "newborn"  # 2 units each: the alphabetically first
        assert alice["preferred_store"] == "st1"
        assert alice["associate_id"] == "as1"
        assert (alice["frequency"], alice["recency"], alice["tenure_days"]) == (2, 90, 100)
        assert alice["repeat_value"] == 30.0  # (50 − 20 refunded + 30) / 2 repeat days

    def test_refunds_net_out(self, warehouse: Warehouse) -> None:
        dan = _rows(warehouse, brand())["m4"]
        assert (dan["gross_spend"], dan["refunded"], dan["net_spend"]) == (
            Decimal("60.00"), Decimal("60.00"), Decimal("0.00"))
        assert dan["aov"] == Decimal("0.00")
        assert dan["discount_share"] == 1.0  # a coupon is a discount
        assert dan["refund_rate"] == 1.0

    def test_prospect_has_no_purchase_values(self, warehouse: Warehouse) -> None:
        carol = _rows(warehouse, brand())["m3"]
        assert carol["orders"] == 0 and carol["net_spend"] == Decimal("0.00")
        assert carol["aov"] is None and carol["first_purchase_at"] is None
        assert carol["days_since_last_purchase"] is None and carol["rfm_segment"] is None
        assert carol["lifecycle_stage"] == "prospect"
        assert carol["aipl_stage"] == "interested"  # viewed a product two days ago

    def test_median_of_an_even_number_of_gaps(self, warehouse: Warehouse) -> None:
        b = Brand()
        who = b.person("m1")
        for n, days_before in enumerate((100, 99, 90, 60, 50)):  # gaps 1, 9, 30, 10
            b.order(who, f"o{n}", days_before, "10.00")
        b.order(who, "same-day", 50, "10.00")  # a second order on a purchase day is not a new gap
        row = _rows(warehouse, b)["m1"]
        assert row["median_interpurchase_days"] == 9.5
        assert row["mean_interpurchase_days"] == 12.5
        assert (row["orders"], row["purchase_days"], row["frequency"]) == (6, 5, 4)


class TestSegmentsAndStages:
    def test_rfm_lifecycle_next_purchase_and_influence(self, warehouse: Warehouse) -> None:
        rows = _rows(warehouse, brand())
        alice, bob, dan = rows["m1"], rows["m2"], rows["m4"]
        # three buyers in the window; recency 10, 5, 200; frequency 3, 1, 1; monetary 160, 80, 0
        assert (alice["rfm_r"], alice["rfm_f"], alice["rfm_m"]) == (4, 5, 5)
        # bob and dan bought once: their frequencies tie and share the lowest score of the tie, ceil(5 · 1 / 3)
        assert (bob["rfm_r"], bob["rfm_f"], bob["rfm_m"]) == (5, 2, 4)
        assert (dan["rfm_r"], dan["rfm_f"], dan["rfm_m"]) == (2, 2, 2)
        assert (alice["rfm_segment"], bob["rfm_segment"], dan["rfm_segment"]) == \
            ("Champions", "Potential Loyalist", "Hibernating")
        assert alice["rfm_score"] == "455"
        assert alice["lifecycle_stage"] == "loyal"  # 3 orders in the last 365 days
        assert bob["lifecycle_stage"] == "new"
        assert dan["lifecycle_stage"] == "at_risk"  # 200 days without a purchase
        # brand gaps: alice's 50 and 40 → quartiles 40, 40, 50; h = 5; alice's median gap 45
        assert alice["next_purchase_expected"] == (AS_OF + timedelta(days=35)).date()
        assert (alice["next_purchase_from"], alice["next_purchase_to"]) == (
            (AS_OF + timedelta(days=30)).date(), (AS_OF + timedelta(days=40)).date())
        # one-time buyer: first purchase + the brand's first→second gap (50)
        assert bob["next_purchase_expected"] == (AS_OF + timedelta(days=45)).date()
        assert alice["referrals"] == 2 and alice["referrals_converted"] == 1
        assert alice["referred_value"] == Decimal("80.00") and alice["shares"] == 1
        # points = 3·1 + 1·1 + 0.2·1 + 80 / (240 net ÷ 5 orders) = 5.8667; 100·(1 − e^(−0.58667)) = 44.4
        assert alice["koc_score"] == 44.4
        assert bob["koc_score"] == 0.0

    def test_churned_and_configurable_rules(self, warehouse: Warehouse) -> None:
        b = brand()
        config = InsightConfig(lifecycle=LifecycleConfig(at_risk_days=30, churned_days=150, new_days=3))
        rows = _rows(warehouse, b, config=config)
        assert rows["m4"]["lifecycle_stage"] == "churned"
        assert rows["m2"]["lifecycle_stage"] == "active"  # 5 days since the first purchase: no longer new
        assert rows["m1"]["lifecycle_stage"] == "loyal"

    def test_tags_are_computed_with_the_traits(self, warehouse: Warehouse) -> None:
        tags = [TagDefinition.model_validate(t) for t in (
            {"name": "new_mom", "rule": {"bought": {"category": "newborn", "within_days": 90}}},
            {"name": "price_sensitive", "rule": {"trait": "discount_share", "op": "gte", "value": 0.3}},
            {"name": "high_value", "rule": {"trait": "net_spend", "op": "top_percent", "value": 25}},
        )]
        rows = _rows(warehouse, brand(), tags=tags)
        assert rows["m1"]["tags"] == ["price_sensitive", "high_value"]
        assert rows["m2"]["tags"] == ["new_mom"]
        assert rows["m3"]["tags"] == []
        assert rows["m4"]["tags"] == ["price_sensitive"]

    def test_same_as_of_same_traits(self, warehouse: Warehouse) -> None:
        b = brand()
        b.write(warehouse.lake)
        first = compute_traits(warehouse, WS, as_of=AS_OF, computed_at=AS_OF).table
        second = compute_traits(warehouse, WS, as_of=AS_OF, computed_at=AS_OF).table
        assert first.equals(second)
