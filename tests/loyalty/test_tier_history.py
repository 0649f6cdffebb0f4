"""Imported history counts toward tiers (issue 6, "Tiers"), on every store: the points backfill records the
lake's orders for spend and order-count tiers (and growth value when the tiers count growth), each order
once however often it runs or however the order also arrives live, refunds netted; a merged member's orders
posted live count for the member that absorbed them."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.loyalty import tiers
from memberops.loyalty.backfill import backfill_points
from memberops.loyalty.tier_models import GrowthMovement, QualifyingOrder
from memberops.runtime import Context
from tests.loyalty.factories import enrol, post_order, post_refund, set_programme
from tests.loyalty.test_backfill import JOINED, NOW, PROGRAMME, _lake_brand
from tests.loyalty.test_merge import _merge
from tests.loyalty.test_tiers import history, tier

# In the 12 months up to NOW the imported history holds the member-day order (200), the birthday order (300,
# 150 of it refunded) and the recent one (50): spend 400 over 3 orders; the plain order (120) is older.
TIERS = {
    "spend": [{"code": "silver", "name": "Silver", "threshold": "300"},
              {"code": "gold", "name": "Gold", "threshold": "1000"}],
    "orders": [{"code": "silver", "name": "Silver", "threshold": "3"},
               {"code": "gold", "name": "Gold", "threshold": "4"}],
    "growth": [{"code": "silver", "name": "Silver", "threshold": "300"},
               {"code": "gold", "name": "Gold", "threshold": "1000"}],
}
IN_WINDOW = {"spend": Decimal(400), "orders": Decimal(3), "growth": Decimal(400)}


def _imported_member(context: Context, workspace: Workspace, metric: str) -> str:
    with context.store.transaction() as session:
        set_programme(session, workspace, **PROGRAMME, tiers=TIERS[metric],
                      tier_rules={"metric": metric, "window": "rolling_12_months"})
        member_id = enrol(session, workspace, "imported", now=JOINED)
    _lake_brand(workspace, "imported", member_id, "i-").write(context.settings.lake_path)
    return member_id


def _metric(context: Context, workspace: Workspace, member_id: str, now: datetime = NOW) -> Decimal:
    with context.store.read() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        return tiers.tier_status(session, ws, member_id, now=now).metric_value


def _evaluate(context: Context, workspace: Workspace, as_of: datetime = NOW) -> tiers.TierRun:
    with context.store.transaction() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        return tiers.evaluate_tiers(session, ws, as_of=as_of)


class TestImportedOrdersQualify:
    @pytest.mark.parametrize("metric", ["spend", "orders", "growth"])
    def test_imported_orders_in_the_window_place_the_member_once(
            self, context: Context, workspace: Workspace, metric: str) -> None:
        member_id = _imported_member(context, workspace, metric)
        assert _metric(context, workspace, member_id) == 0  # imported, not yet backfilled: nothing counts

        summary = backfill_points(context, workspace, now=NOW)
        assert summary.tier_orders == 5  # every order of the member, the one before enrolment too
        assert _metric(context, workspace, member_id) == IN_WINDOW[metric]
        run = _evaluate(context, workspace)
        assert run.by_tier == {"silver": 1} and tier(context, workspace, member_id) == "silver"
        assert history(context, member_id) == [(None, "silver", "upgrade")]

    @pytest.mark.parametrize("metric", ["spend", "orders", "growth"])
    def test_a_rerun_and_a_live_repost_count_nothing_twice(
            self, context: Context, workspace: Workspace, metric: str) -> None:
        member_id = _imported_member(context, workspace, metric)
        backfill_points(context, workspace, now=NOW)
        backfill_points(context, workspace, now=NOW)
        with context.store.transaction() as session:  # the POS posts the recent order (and a refund) again live
            post_order(session, workspace, "i-recent", customer_key="imported", paid="50.00",
                       ordered_at=datetime(2026, 11, 18, 3, 0, tzinfo=NOW.tzinfo))
            post_refund(session, workspace, "i-r-bd-2", order_id="i-birthday", amount="50.00",
                        refunded_at=datetime(2026, 6, 2, tzinfo=NOW.tzinfo))
        assert _metric(context, workspace, member_id) == IN_WINDOW[metric]
        with context.store.read() as session:
            assert session.scalar(select(func.count()).select_from(QualifyingOrder)) == 5
            growth = session.scalar(select(func.coalesce(func.sum(GrowthMovement.value), 0)))
        # growth: 120 + 200 + 300 + 50 earned from enrolment on, 150 taken back by the two refunds
        assert growth == (520 if metric == "growth" else 0)
        _evaluate(context, workspace)
        assert _evaluate(context, workspace).upgraded == 0 and tier(context, workspace, member_id) == "silver"

    def test_refunds_net_out_and_a_full_refund_drops_the_order(self, context: Context, workspace: Workspace) -> None:
        member_id = _imported_member(context, workspace, "spend")
        backfill_points(context, workspace, now=NOW)
        with context.store.transaction() as session:  # the rest of the birthday order refunded live
            post_order(session, workspace, "i-birthday", customer_key="imported", paid="300.00",
                       ordered_at=datetime(2026, 5, 20, 3, 0, tzinfo=NOW.tzinfo))
            post_refund(session, workspace, "i-r-bd-3", order_id="i-birthday", amount="300.00",
                        refunded_at=datetime(2026, 6, 3, tzinfo=NOW.tzinfo))
        assert _metric(context, workspace, member_id) == Decimal(250)  # 200 + 50: the birthday order is gone
        # the live post upgraded the member (the birthday order then half refunded: 400); the evaluation now
        # finds 250 and takes the tier back
        assert _evaluate(context, workspace, utcnow()).by_tier == {}
        assert tier(context, workspace, member_id) is None
        assert history(context, member_id)[-1] == ("silver", None, "downgrade")


class TestMergedSpend:
    def test_the_absorbed_members_live_orders_count_for_the_survivor(
            self, context: Context, workspace: Workspace) -> None:
        ordered_at = utcnow() - timedelta(days=30)
        with context.store.transaction() as session:
            set_programme(session, workspace, tiers=TIERS["spend"], tier_rules={"metric": "spend"})
            a = enrol(session, workspace, "c1", phone="13800138001")
            post_order(session, workspace, "o1", customer_key="c1", paid="200.00", ordered_at=ordered_at)
            b = enrol(session, workspace, "c2", phone="13900139002")
            post_order(session, workspace, "o2", customer_key="c2", paid="250.00", ordered_at=ordered_at)
        assert (tier(context, workspace, a), tier(context, workspace, b)) == (None, None)
        _merge(context, workspace)
        assert tier(context, workspace, a) == "silver"  # 450 at once, on the merge
        assert _metric(context, workspace, a, utcnow()) == Decimal(450)
        with context.store.transaction() as session:  # B's order refunded after the merge: nets for A
            post_refund(session, workspace, "r2", order_id="o2", amount="200.00", refunded_at=utcnow())
        assert _metric(context, workspace, a, utcnow()) == Decimal(250)
        run = _evaluate(context, workspace, utcnow())
        assert run.by_tier == {} and tier(context, workspace, a) is None
