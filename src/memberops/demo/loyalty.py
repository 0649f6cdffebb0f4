"""The demo brand's loyalty programme: its rules, who joined, their points for past orders, coupons, benefits.

The generator gives each channel record the moment its person joined the brand's membership
(``joined_at``; prospects and buyers who never joined have none). :func:`setup_demo_loyalty` makes the
demo programme the active one, enrols every member with a joined record as of their earliest join (birth
month from their records), replays their imported orders (with their lines, for the category rule),
refunds and app sign-ins and shares through the points ledger (:mod:`memberops.loyalty.backfill`), binds
the referrals the channels recorded (a record's ``referrer_code``, the referrer's member card) and rewards
the friends' first qualifying purchases (:mod:`memberops.loyalty.referral_import`), then issues the demo
coupons to a sample of members (some redeemed), grants the demo benefits, and opens the rewards catalogue
(points mall) where a few members redeem their points. Last, the tier evaluation
(:func:`memberops.loyalty.tiers.evaluate_tiers`) places every member by their spend over the last 12 months,
the imported orders included (the backfill records them for the tiers), and gives each tier's benefits.
Every step is keyed, so running it again changes nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.db.base import utcnow
from memberops.errors import DomainError
from memberops.identity.models import Member
from memberops.lake.engine import Warehouse
from memberops.loyalty import benefits, coupon_templates, coupons, enrolment, reward_fulfilment, rewards
from memberops.loyalty.backfill import BackfillSummary, backfill_points
from memberops.loyalty.benefit_schemas import BenefitDefinitionIn
from memberops.loyalty.coupon_schemas import CouponTemplateIn
from memberops.loyalty.models import Membership, PointsAccount
from memberops.loyalty.programme import programme_from_dict
from memberops.loyalty.programmes import save_programme
from memberops.loyalty.referral_import import RecordedReferralsSummary, bind_recorded_referrals
from memberops.loyalty.reward_schemas import RewardIn
from memberops.loyalty.tiers import TierRun, evaluate_tiers
from memberops.runtime import Context

# 1 point per yuan paid, double on the 8th of each month (member day), ×1.5 in the birthday month, newborn
# gift boxes ×2 (the brand's recruiting category), 100 welcome points, 12 months rolling expiry, points
# pending through a 7-day return window; 1 point for the day's first app sign-in and 20 more on every
# 7th day in a row, 2 points for a share (at most 3 a day).
DEMO_PROGRAMME: dict[str, Any] = {
    "name": "Demo brand club",
    "currency": "CNY",
    "point_value": "0.01",
    "enrolment": {"mode": "free", "welcome_points": 100},
    "earn": {
        "points_per_unit": "1", "basis": "paid", "rounding": "floor", "pending_days": 7,
        "member_days": [{"day_of_month": 8, "multiplier": "2"}],
        "birthday_month_multiplier": "1.5", "stacking": "max",
        "category_rules": {"newborn_gift": {"multiplier": "2"}},
    },
    "events": {
        "sign_in": {"points": 1, "max_per_day": 1, "streak": {"days": 7, "bonus": 20}},
        "share": {"points": 2, "max_per_day": 3},
    },
    "expiry": {"policy": "rolling_months", "months": 12, "warning_days": 30},
    # four tiers by spend over the last 12 months (a baby-products brand's club: every member starts as a
    # Sprout; of the demo's buyers of the last year about a quarter reach Bloom or higher, one in thirteen
    # Blossom or higher, one in eighty Golden Acorn). Higher tiers earn more points per yuan and get the demo benefits each year; a
    # tier is kept with 80% of its threshold, a downgrade waits a month.
    "tiers": [
        {"code": "sprout", "name": "Sprout", "threshold": "0"},
        {"code": "bloom", "name": "Bloom", "threshold": "800", "earn_multiplier": "1.2",
         "benefits": [{"code": "free-alteration", "quantity": 1}]},
        {"code": "blossom", "name": "Blossom", "threshold": "2000", "earn_multiplier": "1.5",
         "benefits": [{"code": "free-alteration", "quantity": 2}, {"code": "queue-skip", "quantity": 2}]},
        {"code": "golden", "name": "Golden Acorn", "threshold": "5000", "earn_multiplier": "2",
         "benefits": [{"code": "free-alteration", "quantity": 4}, {"code": "queue-skip", "quantity": 6}]},
    ],
    "tier_rules": {"metric": "spend", "window": "rolling_12_months", "keep_ratio": "0.8", "grace_months": 1},
    # invite a friend: 200 points to the referrer, 100 to the friend on the friend's first purchase of 99
    # or more (pending through the return window), at most 10 rewarded friends per referrer per month
    "referrals": {"enabled": True, "referrer_points": 200, "friend_points": 100, "min_paid_amount": "99",
                  "cap_per_period": 10, "cap_period": "month"},
}

DEMO_COUPONS: tuple[dict[str, Any], ...] = (
    {"code": "SPEND300-50", "name": "Spend 300, get 50 off", "per_member_limit": 1,
     "terms": {"kind": "threshold", "threshold": "300", "amount_off": "50", "valid_days": 60}},
    {"code": "BIRTHDAY-10", "name": "Birthday month: 10% off", "per_member_limit": 1,
     "terms": {"kind": "percent_off", "percent_off": "10", "max_discount": "200", "valid_days": 31}},
    {"code": "FREE-SHIPPING", "name": "Free shipping", "per_member_limit": 1,
     "terms": {"kind": "free_shipping", "max_discount": "20", "valid_days": 30}},
)
DEMO_BENEFITS: tuple[dict[str, Any], ...] = (
    {"code": "queue-skip", "name": "Queue-skip pass at the flagship store", "category": "queue_skip",
     "valid_days": 365},
    {"code": "free-alteration", "name": "Free alteration of baby clothing", "category": "free_alteration",
     "valid_days": 180},
)

# The points mall: two gifts (one with a cash part), a coupon from a demo template, a benefit.
DEMO_REWARDS: tuple[dict[str, Any], ...] = (
    {"code": "TOTE-BAG", "name": "Canvas tote bag", "kind": "item", "points": 800, "stock": 500,
     "per_member_limit": 2},
    {"code": "BABY-BLANKET", "name": "Organic cotton baby blanket", "kind": "item", "points": 2000,
     "cash_amount": "39.00", "stock": 100, "per_member_limit": 1},
    {"code": "SHIPPING-COUPON", "name": "Free shipping coupon", "kind": "coupon", "points": 300,
     "coupon_template": "FREE-SHIPPING", "period_limit": {"count": 1, "period": "month"}},
    {"code": "QUEUE-SKIP", "name": "Queue-skip pass", "kind": "benefit", "points": 500, "benefit_code": "queue-skip"},
)
DEMO_MALL_VISITORS = 100  # members who try a reward (about a quarter have the points): a few seconds of `demo`


@dataclass(frozen=True)
class DemoLoyaltySummary:
    programme_version: int
    enrolled: int  # memberships recorded by this run
    members: int  # memberships in all
    backfill: BackfillSummary
    referrals: RecordedReferralsSummary
    coupons_issued: int
    coupons_redeemed: int
    benefits_granted: int
    rewards_redeemed: int
    seconds: float
    tiers: TierRun | None = None  # the evaluation after the backfill: members by tier


def joined_members(warehouse: Warehouse, workspace_id: str) -> list[dict[str, Any]]:
    """Each member with a joined channel record: the earliest ``joined_at`` and a known ``birthday``."""
    records = warehouse.table("identity_records")
    records = records.filter(records.workspace_id == workspace_id, records.joined_at.notnull())
    identity_map = warehouse.table("identity_map")
    links = identity_map.filter(identity_map.workspace_id == workspace_id).select("channel", "source_id", "member_id")
    joined = records.select("channel", "source_id", "joined_at", "birthday").join(links, ["channel", "source_id"])
    per_member = joined.group_by("member_id").aggregate(joined_at=joined.joined_at.min(),
                                                        birthday=joined.birthday.max())
    return warehouse.to_pyarrow(per_member.order_by("member_id")).to_pylist()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def enrol_joined(context: Context, workspace: Workspace, people: Sequence[dict[str, Any]], *,
                 chunk: int = 1_000) -> int:
    """Record a membership (welcome points included) for each joined member, as of their join, a chunk of
    members at a time in bulk (:func:`enrolment.ensure_memberships`)."""
    enrolled = 0
    for start in range(0, len(people), chunk):
        part = {row["member_id"]: row for row in people[start:start + chunk]}
        with context.store.transaction() as session:
            ws = session.get(Workspace, workspace.id)
            assert ws is not None
            current = session.scalars(select(Member.id).where(
                Member.id.in_(list(part)), Member.merged_into_id.is_(None))).all()
            enrolled += enrolment.ensure_memberships(session, ws, [
                enrolment.Joining(member_id, _utc(part[member_id]["joined_at"]),
                                  part[member_id]["birthday"].month if part[member_id]["birthday"] else None)
                for member_id in current], channel="import")
    return enrolled


def _sampled(member_id: str, salt: str, one_in: int) -> bool:
    """A stable sample of members (the same members on every run, whatever their order)."""
    return int(hashlib.sha256(f"{salt}:{member_id}".encode()).hexdigest()[:8], 16) % one_in == 0


def issue_demo_coupons(context: Context, workspace: Workspace, *, now: datetime) -> tuple[int, int]:
    """The demo coupon templates, issued to a sample of members (birthday coupons to members whose birthday
    month it is), a third of the threshold coupons redeemed; returns (issued, redeemed) by this run."""
    issued = redeemed = 0
    actor = Actor.system()
    with context.store.transaction() as session:
        templates = {template.code for template in coupon_templates.list_templates(session, workspace.id)}
        defined = {benefit.code for benefit in benefits.list_benefits(session, workspace.id)}
        for spec in DEMO_COUPONS:
            if spec["code"] not in templates:
                coupon_templates.create_template(session, workspace.id, CouponTemplateIn.model_validate(spec),
                                                 actor=actor)
        for spec in DEMO_BENEFITS:
            if spec["code"] not in defined:
                benefits.define_benefit(session, workspace.id, BenefitDefinitionIn.model_validate(spec), actor=actor)
        members = session.execute(select(Membership.member_id, Membership.birth_month).where(
            Membership.workspace_id == workspace.id).order_by(Membership.member_id)).all()
    wanted = [(member_id, code) for member_id, birth_month in members for code, chosen in (
        ("SPEND300-50", _sampled(member_id, "spend", 4)),
        ("BIRTHDAY-10", birth_month == now.month),
        ("FREE-SHIPPING", _sampled(member_id, "shipping", 6)),
    ) if chosen]
    for start in range(0, len(wanted), 1_000):
        with context.store.transaction() as session:
            part = wanted[start:start + 1_000]
            results: dict[tuple[str, str], coupons.Issued] = {}  # each template's issues in bulk (coupons.issue_coupons), then the redemptions in turn
            for spec in DEMO_COUPONS:
                chosen = [member_id for member_id, code in part if code == spec["code"]]
                results.update(zip(((member_id, spec["code"]) for member_id in chosen), coupons.issue_coupons(
                    session, workspace.id, spec["code"], [(m, f"demo:{spec['code']}:{m}") for m in chosen], now=now),
                    strict=True))
            for member_id, code in part:
                result = results[(member_id, code)]
                issued += not result.is_replay
                coupon = result.coupon
                if code == "SPEND300-50" and coupon.status == "issued" and _sampled(member_id, "redeem", 3):
                    coupons.redeem_coupon(session, workspace.id, coupon.unique_code or "", coupons.OrderContext(
                        member_id=member_id, channel="pos", amount=Decimal("358.00"),
                        order_key=coupons.OrderContext.key_for("pos", None, f"demo-redeem:{coupon.id}")), now=now)
                    redeemed += 1
    return issued, redeemed


def grant_demo_benefits(context: Context, workspace: Workspace, *, now: datetime) -> int:
    """Queue-skip passes and free alterations for a sample of members, each benefit in one bulk grant
    (:func:`benefits.grant_benefits`); returns grants made by this run."""
    granted = 0
    with context.store.transaction() as session:
        members = session.scalars(select(Membership.member_id).where(
            Membership.workspace_id == workspace.id).order_by(Membership.member_id)).all()
        for code, quantity, one_in in (("queue-skip", 2, 10), ("free-alteration", 1, 15)):
            granted += benefits.grant_benefits(session, workspace.id, code, [
                benefits.GrantRequest(member_id, quantity, f"demo:{code}:{member_id}")
                for member_id in members if _sampled(member_id, code, one_in)], "demo", now=now).made
    return granted


def open_demo_mall(context: Context, workspace: Workspace, *, now: datetime) -> int:
    """The demo rewards, and a sample of members each trying one: those with the points redeem it (some
    gifts already shipped or collected); returns the redemptions made by this run."""
    actor = Actor.system()
    redeemed = 0
    with context.store.transaction() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        have = {reward.code for reward in rewards.list_rewards(session, ws.id)}
        for spec in DEMO_REWARDS:
            if spec["code"] not in have:
                rewards.create_reward(session, ws, RewardIn.model_validate(spec), actor=actor)
        # The same members and rewards on every run (chosen without looking at balances that redeeming moves),
        # so a second run finds each redemption by its key and makes none.
        accounts = session.scalars(select(PointsAccount.member_id).where(PointsAccount.workspace_id == ws.id)
                                   .order_by(PointsAccount.member_id)).all()
        chosen = [member_id for member_id in accounts if _sampled(member_id, "mall", 3)][:DEMO_MALL_VISITORS]
        for member_id in chosen:
            # A coupon only for members the demo gave no free-shipping coupon (the template allows one each).
            offered = [spec for spec in DEMO_REWARDS
                       if spec["kind"] != "coupon" or not _sampled(member_id, "shipping", 6)]
            first = offered[int(hashlib.sha256(member_id.encode()).hexdigest()[:4], 16) % len(offered)]
            # Their pick, else the dearest cheaper one they can afford: balances only fall between runs, so a
            # second run stops at the same reward, now a replay.
            for spec in [first, *sorted((o for o in offered if o["points"] < first["points"]),
                                        key=lambda o: -o["points"])]:
                try:
                    done = rewards.redeem_reward(session, ws, member_id, spec["code"], quantity=1,
                                                 idempotency_key=f"demo:reward:{spec['code']}:{member_id}",
                                                 actor=actor, now=now)
                except DomainError:  # too few points for this one (or its stock is gone)
                    continue
                redeemed += not done.is_replay
                if spec["kind"] == "item" and _sampled(member_id, "fulfil", 2):
                    status: Literal["shipped", "collected"] = \
                        "collected" if _sampled(member_id, "collect", 2) else "shipped"
                    reward_fulfilment.set_fulfilment(session, ws.id, done.redemption.id, status, actor=actor, now=now)
                break
    return redeemed


def setup_demo_loyalty(context: Context, workspace: Workspace, *, now: datetime | None = None) -> DemoLoyaltySummary:
    """The demo programme, its members, their points for past orders, coupons and benefits (see the module)."""
    started = time.perf_counter()
    now = now or utcnow()
    with context.store.transaction() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        version = save_programme(session, ws, programme_from_dict(DEMO_PROGRAMME), actor=Actor.system()).version
    people = joined_members(context.warehouse(), workspace.id)
    enrolled = enrol_joined(context, workspace, people)
    backfill = backfill_points(context, workspace, now=now)
    referred = bind_recorded_referrals(context, workspace, now=now)
    issued, redeemed = issue_demo_coupons(context, workspace, now=now)
    granted = grant_demo_benefits(context, workspace, now=now)
    mall = open_demo_mall(context, workspace, now=now)
    with context.store.transaction() as session:  # the tier benefits are defined by now (issue_demo_coupons)
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        ranked = evaluate_tiers(session, ws, as_of=now)
    with context.store.read() as session:
        members = len(session.scalars(select(Membership.member_id).where(Membership.workspace_id == workspace.id)).all())
    return DemoLoyaltySummary(version, enrolled, members, backfill, referred, issued, redeemed, granted, mall,
                              time.perf_counter() - started, ranked)
