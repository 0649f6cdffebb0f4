"""The demo brand's loyalty programme: its rules, who joined, their points for past orders, coupons, benefits.

The generator gives each channel record the moment its person joined the brand's membership
(``joined_at``; prospects and buyers who never joined have none). :func:`setup_demo_loyalty` makes the
demo programme the active one, enrols every member with a joined record as of their earliest join (birth
month from their records), replays their imported orders (with their lines, for the category rule),
refunds and app sign-ins and shares through the points ledger
(:mod:`memberops.loyalty.backfill`), then issues the demo coupons to a sample of members (some redeemed)
and grants the demo benefits. Every step is keyed, so running it again changes nothing.

The programme leaves tiers out; a ``tiers`` block joins :data:`DEMO_PROGRAMME` when tiers exist.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.db.base import utcnow
from memberops.identity.models import Member
from memberops.lake.engine import Warehouse
from memberops.loyalty import benefits, coupon_templates, coupons, enrolment
from memberops.loyalty.backfill import BackfillSummary, backfill_points
from memberops.loyalty.benefit_schemas import BenefitDefinitionIn
from memberops.loyalty.coupon_schemas import CouponTemplateIn
from memberops.loyalty.models import Membership
from memberops.loyalty.programme import programme_from_dict
from memberops.loyalty.programmes import save_programme
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


@dataclass(frozen=True)
class DemoLoyaltySummary:
    programme_version: int
    enrolled: int  # memberships recorded by this run
    members: int  # memberships in all
    backfill: BackfillSummary
    coupons_issued: int
    coupons_redeemed: int
    benefits_granted: int
    seconds: float


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
    """Record a membership (welcome points included) for each joined member, as of their join."""
    enrolled = 0
    for start in range(0, len(people), chunk):
        part = {row["member_id"]: row for row in people[start:start + chunk]}
        with context.store.transaction() as session:
            ws = session.get(Workspace, workspace.id)
            assert ws is not None
            have = set(session.scalars(select(Membership.member_id).where(
                Membership.workspace_id == ws.id, Membership.member_id.in_(list(part)))).all())
            members = session.scalars(select(Member).where(
                Member.id.in_([m for m in part if m not in have]), Member.merged_into_id.is_(None))).all()
            for member in sorted(members, key=lambda m: m.id):
                row = part[member.id]
                enrolment.ensure_membership(session, ws, member, channel="import", now=_utc(row["joined_at"]),
                                            birth_month=row["birthday"].month if row["birthday"] else None)
                enrolled += 1
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
            for member_id, code in wanted[start:start + 1_000]:
                result = coupons.issue_coupon(session, workspace.id, code, member_id, f"demo:{code}:{member_id}",
                                              now=now)
                issued += not result.is_replay
                coupon = result.coupon
                if code == "SPEND300-50" and coupon.status == "issued" and _sampled(member_id, "redeem", 3):
                    coupons.redeem_coupon(session, workspace.id, coupon.unique_code or "", coupons.OrderContext(
                        member_id=member_id, channel="pos", amount=Decimal("358.00"),
                        order_key=coupons.OrderContext.key_for("pos", None, f"demo-redeem:{coupon.id}")), now=now)
                    redeemed += 1
    return issued, redeemed


def grant_demo_benefits(context: Context, workspace: Workspace, *, now: datetime) -> int:
    """Queue-skip passes and free alterations for a sample of members; returns grants made by this run."""
    granted = 0
    with context.store.transaction() as session:
        members = session.scalars(select(Membership.member_id).where(
            Membership.workspace_id == workspace.id).order_by(Membership.member_id)).all()
        for member_id in members:
            for code, quantity, one_in in (("queue-skip", 2, 10), ("free-alteration", 1, 15)):
                if _sampled(member_id, code, one_in):
                    result = benefits.grant_benefit(session, workspace.id, member_id, code, quantity, "demo",
                                                    f"demo:{code}:{member_id}", now=now)
                    granted += not result.is_replay
    return granted


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
    issued, redeemed = issue_demo_coupons(context, workspace, now=now)
    granted = grant_demo_benefits(context, workspace, now=now)
    with context.store.read() as session:
        members = len(session.scalars(select(Membership.member_id).where(Membership.workspace_id == workspace.id)).all())
    return DemoLoyaltySummary(version, enrolled, members, backfill, issued, redeemed, granted,
                              time.perf_counter() - started)
