"""RFM scores and segments, lifecycle rules and CLV wiring: edge cases, on every engine."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from memberops.insight import clv
from memberops.insight.compute import compute_traits
from memberops.insight.config import DEFAULT_RFM_GRID, RFM_SEGMENTS, InsightConfig, LifecycleConfig, RfmConfig
from memberops.insight.lifecycle import LIFECYCLE_RULES, STAGES
from memberops.insight.rfm import quintile
from memberops.lake.engine import Warehouse
from tests.insight.lake import AS_OF, WS, Brand


def _rows(warehouse: Warehouse, b: Brand, config: InsightConfig | None = None) -> dict[str, dict[str, Any]]:
    b.write(warehouse.lake)
    computed = compute_traits(warehouse, WS, as_of=AS_OF, computed_at=AS_OF, config=config)
    return {row["member_id"]: row for row in computed.table.to_pylist()}


class TestQuintiles:
    def _scores(self, warehouse: Warehouse, values: list[int], smaller_is_better: bool = False) -> list[int]:
        t = ibis.memtable(pa.table({"i": list(range(len(values))), "v": values}))
        scored = t.select("i", s=quintile(t.v, smaller_is_better=smaller_is_better)).order_by("i")
        return warehouse.to_pyarrow(scored).column("s").to_pylist()

    def test_ten_distinct_values_two_per_quintile(self, warehouse: Warehouse) -> None:
        assert self._scores(warehouse, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]) == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
        assert self._scores(warehouse, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1], smaller_is_better=True) == \
            [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]

    def test_ties_share_a_score(self, warehouse: Warehouse) -> None:
        assert self._scores(warehouse, [3, 3, 3, 3]) == [5, 5, 5, 5]
        assert self._scores(warehouse, [1, 1, 1, 1, 1, 1, 1, 1, 2, 3]) == [4, 4, 4, 4, 4, 4, 4, 4, 5, 5]

    def test_frequency_ties_share_the_lowest_score_of_their_group(self, warehouse: Warehouse) -> None:
        def scores(values: list[int]) -> list[int]:
            t = ibis.memtable(pa.table({"i": list(range(len(values))), "v": values}))
            return warehouse.to_pyarrow(t.select("i", s=quintile(t.v, ties="lowest")).order_by("i")) \
                .column("s").to_pylist()

        assert scores([10, 9, 8, 7, 6, 5, 4, 3, 2, 1]) == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]  # no ties: the same
        # most buyers bought once: they are the worst frequency, F = 1, not the middle of the range they span
        assert scores([1, 1, 1, 1, 1, 1, 1, 1, 2, 3]) == [1, 1, 1, 1, 1, 1, 1, 1, 5, 5]
        assert scores([3, 3, 3, 3]) == [2, 2, 2, 2]  # ceil(5 · 1 / 4): the group's first row in rank order


class TestRfmGrid:
    def test_every_cell_is_a_named_segment_and_every_segment_has_a_cell(self) -> None:
        cells = [name for row in DEFAULT_RFM_GRID.values() for name in row]
        assert len(cells) == 25 and set(cells) == set(RFM_SEGMENTS) and len(RFM_SEGMENTS) == 11

    def test_corners(self) -> None:
        config = RfmConfig()
        assert config.segment(5, 5) == "Champions"
        assert config.segment(5, 1) == "New"
        assert config.segment(1, 5) == "Can't Lose Them"
        assert config.segment(1, 1) == "Lost"

    def test_a_grid_needs_every_r_score(self) -> None:
        with pytest.raises(ValidationError, match="one row for each R score"):
            RfmConfig(grid={5: DEFAULT_RFM_GRID[5]})

    def test_window_and_single_buyer(self, warehouse: Warehouse) -> None:
        b = Brand()
        b.order(b.person("m1"), "o1", 10, "50.00")
        b.order(b.person("m2"), "o2", 400, "500.00")  # bought, but before the 365-day window
        rows = _rows(warehouse, b)
        assert (rows["m1"]["rfm_r"], rows["m1"]["rfm_f"], rows["m1"]["rfm_m"]) == (5, 5, 5)
        assert rows["m1"]["rfm_segment"] == "Champions"
        assert rows["m2"]["rfm_segment"] is None and rows["m2"]["rfm_r"] is None
        assert rows["m2"]["lifecycle_stage"] == "churned"

    def test_fm_is_the_mean_of_f_and_m_half_up(self, warehouse: Warehouse) -> None:
        b = Brand()
        for n, (orders, paid) in enumerate([(3, "10.00"), (2, "500.00"), (1, "20.00"), (1, "30.00"), (1, "40.00")]):
            who = b.person(f"m{n}")
            for k in range(orders):
                b.order(who, f"o{n}-{k}", 10 + k, paid)
        rows = _rows(warehouse, b)
        # m1: F = 4 (2 orders, one member above), M = 5 (1000.00) → FM = 4.5 → 5 (half up); R = 5 (ties)
        assert (rows["m1"]["rfm_f"], rows["m1"]["rfm_m"], rows["m1"]["rfm_score"]) == (4, 5, "545")
        assert rows["m1"]["rfm_segment"] == "Champions"
        # m2: F = 1 (one order, as three others: they share the lowest score), M = 1 (the least) → FM = 1;
        # R = 5 → New
        assert (rows["m2"]["rfm_f"], rows["m2"]["rfm_m"], rows["m2"]["rfm_segment"]) == (1, 1, "New")


class TestLifecycleRules:
    def test_the_policy_covers_every_stage_once_and_ends_with_a_catch_all(self) -> None:
        assert sorted(rule.stage for rule in LIFECYCLE_RULES) == sorted(STAGES)
        assert LIFECYCLE_RULES[0].stage == "prospect" and LIFECYCLE_RULES[-1].stage == "active"

    def test_churn_must_come_after_risk(self) -> None:
        with pytest.raises(ValidationError, match="longer than at_risk_days"):
            LifecycleConfig(at_risk_days=200, churned_days=100)

    def test_boundaries_are_strict(self, warehouse: Warehouse) -> None:
        b = Brand()
        b.order(b.person("m180"), "o1", 180, "10.00")
        b.order(b.person("m181"), "o2", 181, "10.00")
        b.order(b.person("m365"), "o3", 365, "10.00")
        b.order(b.person("m366"), "o4", 366, "10.00")
        b.order(b.person("m90"), "o5", 90, "10.00")
        b.order(b.person("m89"), "o6", 89, "10.00")
        stages = {m: r["lifecycle_stage"] for m, r in _rows(warehouse, b).items()}
        assert stages == {"m180": "active", "m181": "at_risk", "m365": "at_risk", "m366": "churned",
                          "m90": "active", "m89": "new"}


def _reference_summary(b: Brand) -> dict[str, tuple[int, int, int, float]]:
    """(frequency, recency, T, monetary) per member, straight from the brand's rows (UTC days)."""
    owner = {(c, s): m for c, s, m in b.links}
    refunds: dict[str, Decimal] = defaultdict(Decimal)
    for refund in b.refunds:
        refunds[refund["order_id"]] += refund["amount"]
    as_of_day = int(AS_OF.timestamp() // 86400)
    days: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for order in b.orders:
        day = int(order["ordered_at"].timestamp() // 86400)
        days[owner[(order["channel"], order["customer_key"])]][day] += order["paid_amount"] - refunds[order["order_id"]]
    summary = {}
    for member, per_day in days.items():
        ordered = sorted(per_day)
        repeat = [float(per_day[d]) for d in ordered[1:]]
        summary[member] = (len(ordered) - 1, ordered[-1] - ordered[0], as_of_day - ordered[0],
                           sum(repeat) / len(repeat) if repeat else 0.0)
    return summary


class TestCustomerLifetimeValue:
    def _brand(self) -> Brand:
        rng = np.random.default_rng(5)
        b = Brand()
        for n in range(80):  # buyers as the models describe them: own purchase rates and own typical spend
            who = b.person(f"m{n:02d}")
            first = int(rng.integers(30, 360))
            visits = int(rng.poisson(rng.gamma(2.0, 1.5)))
            days = sorted({first, *(int(d) for d in rng.integers(0, first, visits))}, reverse=True)
            typical = rng.lognormal(4.5, 0.6)
            for k, days_before in enumerate(days):
                b.order(who, f"o{n}-{k}", days_before, f"{typical * rng.gamma(6.0) / 6.0 + 1:.2f}")
        return b

    def test_fitted_once_on_the_warehouse_summary(self, warehouse: Warehouse) -> None:
        b = self._brand()
        rows = _rows(warehouse, b)
        reference = _reference_summary(b)
        members = sorted(reference)
        x, t_x, age, m = (np.array([reference[k][i] for k in members], dtype=float) for i in range(4))
        got = np.array([[rows[k]["frequency"], rows[k]["recency"], rows[k]["tenure_days"],
                         rows[k]["repeat_value"] or 0.0] for k in members])
        np.testing.assert_allclose(got, np.column_stack([x, t_x, age, m]))
        fit = clv.fit_bgnbd(x, t_x, age)
        p_alive = clv.bgnbd_p_alive(fit.params, x, t_x, age)
        np.testing.assert_allclose([rows[k]["p_alive"] for k in members], p_alive, rtol=1e-9)
        np.testing.assert_allclose([rows[k]["churn_risk"] for k in members], 1 - p_alive, rtol=1e-9)
        np.testing.assert_allclose([rows[k]["expected_purchases_365d"] for k in members],
                                   clv.bgnbd_expected_purchases(fit.params, 365.0, x, t_x, age), rtol=1e-9)
        spend = clv.fit_gamma_gamma(x, m)
        expected_spend = clv.gamma_gamma_expected_spend(spend.params, x, m)
        value = clv.clv(fit.params, x, t_x, age, expected_spend, months=12, monthly_discount_rate=0.0)
        np.testing.assert_allclose([float(rows[k]["expected_spend"]) for k in members], expected_spend, atol=0.006)
        np.testing.assert_allclose([float(rows[k]["clv"]) for k in members], value, atol=0.006)

    def test_low_p_alive_puts_repeat_buyers_at_risk(self, warehouse: Warehouse) -> None:
        config = InsightConfig(lifecycle=LifecycleConfig(at_risk_p_alive=0.9))
        rows = _rows(warehouse, self._brand(), config)
        at_risk_by_model = [r for r in rows.values() if r["frequency"] > 0 and r["p_alive"] < 0.9
                            and r["days_since_last_purchase"] <= 365]
        assert at_risk_by_model  # the data has some
        assert {r["lifecycle_stage"] for r in at_risk_by_model} == {"at_risk"}

    def test_too_few_buyers_leave_clv_empty(self, warehouse: Warehouse) -> None:
        b = Brand()
        b.order(b.person("m1"), "o1", 10, "50.00")
        row = _rows(warehouse, b)["m1"]
        assert row["p_alive"] is None and row["clv"] is None and row["lifecycle_stage"] == "new"
