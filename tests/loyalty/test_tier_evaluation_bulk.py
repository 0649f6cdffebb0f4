"""The set-based tier evaluation against the member-by-member one, on every store (issue 6, "Loyalty
engine"): 120 members with varied enrolment dates, held tiers, orders, refunds and growth, in a non-UTC
zone; both evaluations must leave the same tiers, history, events and benefit grants; and a second
evaluation at the same time changes nothing."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.ingest.models import LiveOrder
from memberops.loyalty import benefits, tiers
from memberops.loyalty.benefit_models import BenefitGrant
from memberops.loyalty.benefit_schemas import BenefitDefinitionIn
from memberops.loyalty.models import LoyaltyEvent, Membership
from memberops.loyalty.tier_models import GrowthMovement, MemberTier, TierChange
from memberops.runtime import Context
from tests.loyalty.factories import enrol, set_programme

AS_OF = datetime.fromisoformat("2026-03-10T05:30:00+00:00")
MEMBERS = 120  # enough for every path; each store runs the member-by-member reference too


class _Rollback(Exception):
    pass


def seed(context: Context, workspace: Workspace, *, window: str, metric: str) -> Workspace:
    rng = random.Random(f"{window}-{metric}")
    low, high = ("1", "3") if metric == "orders" else ("500", "1000")
    with context.store.transaction() as session:
        session.get_one(Workspace, workspace.id).timezone = "Asia/Shanghai"
        set_programme(session, workspace, tiers=[
            {"code": "silver", "name": "Silver", "threshold": low},
            {"code": "gold", "name": "Gold", "threshold": high, "benefits": [{"code": "lounge", "quantity": 2}]},
        ], tier_rules={"window": window, "metric": metric, "keep_ratio": "0.5", "grace_months": 1})
        benefits.define_benefit(session, workspace.id, BenefitDefinitionIn(code="lounge", name="Lounge pass",
                                                                           category="other"), actor=Actor.cli())
        members = [enrol(session, workspace, f"c{i}") for i in range(MEMBERS)]
        start = AS_OF - timedelta(days=3 * 365)
        ids = {m: i for m, i in session.execute(select(Membership.member_id, Membership.id))}
        session.execute(update(Membership), [
            {"id": ids[m], "enrolled_at": start + timedelta(minutes=rng.randrange(3 * 365 * 24 * 60))}
            for m in members])
        held = [{"workspace_id": workspace.id, "member_id": m, "tier": rng.choice(["silver", "gold", "gold", "bronze"]),
                 "since": AS_OF - timedelta(days=rng.randrange(1, 900)), "programme_version": 1, "updated_at": AS_OF}
                for m in members if rng.random() < 0.6]
        session.execute(insert(MemberTier), held)
        orders, growth = [], []
        for index, member in enumerate(members):
            for n in range(rng.randrange(0, 7)):
                when = AS_OF - timedelta(minutes=rng.randrange(-40 * 24 * 60, 30 * 31 * 24 * 60))
                paid = Decimal(rng.randrange(5000, 60000)) / 100
                refunded = rng.choice([Decimal(0), Decimal(0), paid, (paid / 3).quantize(Decimal("0.01"))])
                orders.append({"workspace_id": workspace.id, "channel": "pos", "order_id": f"o{index}-{n}",
                               "customer_key": f"c{index}", "member_id": member, "ordered_at": when,
                               "paid_amount": paid, "refunded_amount": refunded, "received_at": when})
                growth.append({"workspace_id": workspace.id, "member_id": member, "value": int(paid) - int(refunded),
                               "source_type": "order", "source_id": f"pos:o{index}-{n}",
                               "idempotency_key": f"growth:order:pos:o{index}-{n}", "occurred_at": when,
                               "created_at": when})
        session.execute(insert(LiveOrder), orders)
        session.execute(insert(GrowthMovement), growth)
        return session.get_one(Workspace, workspace.id)


def snapshot(session: Session, run: tiers.TierRun) -> dict[str, Any]:
    return {
        "run": (run.members, run.upgraded, run.downgraded, run.kept, run.benefits_granted, run.by_tier,
                run.missing_benefits),
        "tiers": sorted(tuple(r) for r in session.execute(select(MemberTier.member_id, MemberTier.tier, MemberTier.since,
                                               MemberTier.programme_version)).all()),
        "history": [tuple(r) for r in session.execute(select(
            TierChange.member_id, TierChange.from_tier, TierChange.to_tier, TierChange.reason, TierChange.period,
            TierChange.metric_value, TierChange.actor, TierChange.note, TierChange.programme_version,
            TierChange.at).order_by(TierChange.id)).all()],
        "events": [(m, p, at) for m, p, at in session.execute(select(
            LoyaltyEvent.member_id, LoyaltyEvent.payload, LoyaltyEvent.occurred_at)
            .where(LoyaltyEvent.type == "tier_changed").order_by(LoyaltyEvent.id))],
        "grants": [tuple(r) for r in session.execute(select(
            BenefitGrant.member_id, BenefitGrant.benefit_id, BenefitGrant.quantity, BenefitGrant.consumed,
            BenefitGrant.source, BenefitGrant.grant_key, BenefitGrant.valid_from, BenefitGrant.valid_until,
            BenefitGrant.granted_at).order_by(BenefitGrant.id)).all()],
    }


def per_member(context: Context, workspace: Workspace, as_of: datetime) -> dict[str, Any]:
    """The member-by-member result, rolled back."""
    seen: dict[str, Any] = {}
    with pytest.raises(_Rollback), context.store.transaction() as session:
        seen.update(snapshot(session, tiers.evaluate_tiers_per_member(session, workspace, as_of=as_of)))
        raise _Rollback
    return seen


def set_based(context: Context, workspace: Workspace, as_of: datetime) -> dict[str, Any]:
    with context.store.transaction() as session:
        return snapshot(session, tiers.evaluate_tiers(session, workspace, as_of=as_of))


@pytest.mark.parametrize(("window", "metric"), [("anniversary", "spend"), ("calendar_year", "orders"),
                                                ("rolling_12_months", "growth")])
def test_the_set_based_evaluation_writes_what_the_per_member_one_does_and_only_once(
        context: Context, workspace: Workspace, window: str, metric: str) -> None:
    workspace = seed(context, workspace, window=window, metric=metric)
    later = AS_OF + timedelta(days=300)  # a new benefit period for every window rule
    changes = {"upgrade": 0, "downgrade": 0, "keep": 0}
    for as_of in (AS_OF, later):  # the second evaluation finds the first one's tiers, keeps and grants
        expected = per_member(context, workspace, as_of)
        got = set_based(context, workspace, as_of)
        assert got == expected
        for name, count in zip(changes, got["run"][1:4], strict=True):
            changes[name] += count
    again = set_based(context, workspace, later)  # evaluating twice at one time changes nothing more
    assert again["run"][1:5] == (0, 0, 0, 0)  # no upgrade, downgrade, keep or grant
    assert {k: v for k, v in again.items() if k != "run"} == {k: v for k, v in got.items() if k != "run"}
    assert got["run"][4] > 0  # the later evaluation granted the benefits of a new period
    assert changes["upgrade"] > 0 and changes["downgrade"] > 0  # the data exercises the rules
    assert changes["keep"] > 0 or window == "rolling_12_months"
