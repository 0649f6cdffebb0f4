"""The loyalty part of a member's 360° profile: membership, points, coupons, benefits, referrals and recent
reward redemptions.

:func:`loyalty_section` is display-ready and flat (one value per line of the profile card); the full
detail is behind the loyalty endpoints (``/members/{id}/points``, ``…/coupons``, ``…/benefits``,
``…/referrals``, ``…/rewards``) and :func:`points_panel` (the console's points panel on the member page).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.loyalty import benefits, coupons, points, referral_reports, rewards, tiers
from memberops.loyalty.benefits import MemberBenefit
from memberops.loyalty.coupon_schemas import CouponOut
from memberops.loyalty.enrolment import membership_of
from memberops.loyalty.errors import MemberNotEnrolled
from memberops.loyalty.models import Membership, PointsMovement
from memberops.loyalty.programmes import active_programme
from memberops.loyalty.tier_models import TierChange


def _tier_lines(session: Session, workspace_id: str, member_id: str, *, changes: int = 5) -> dict[str, Any]:
    """Since when the member holds their tier, and their last tier changes (newest first), as the card
    shows them: ``2026-11-15 bloom → blossom (upgrade)``."""
    held = tiers.tier_of(session, workspace_id, member_id)
    history = session.scalars(select(TierChange).where(TierChange.workspace_id == workspace_id,
                                                       TierChange.member_id == member_id)
                              .order_by(TierChange.id.desc()).limit(changes)).all()
    lines: dict[str, Any] = {}
    if held is not None:
        lines["tier_since"] = held.since.date().isoformat()
    if history:
        lines["tier_history"] = [f"{change.at.date().isoformat()} {change.from_tier or 'none'} → "
                                 f"{change.to_tier or 'none'} ({change.reason})" for change in history]
    return lines


def _referral_lines(session: Session, workspace: Workspace, member_id: str) -> dict[str, Any]:
    """The referral code, and what the member's referrals came to (when they made any, or were referred)."""
    summary = referral_reports.referral_summary(session, workspace, member_id, limit=0)
    lines: dict[str, Any] = {}
    if summary.code is not None:
        lines["referral_code"] = summary.code
    counts = summary.counts
    if counts["bindings"]:
        parts = [f"{counts['bindings']} referred"] + [
            f"{counts[status]} {label}" for status, label in (
                ("rewarded", "rewarded"), ("pending", "pending"), ("awaiting_purchase", "awaiting a purchase"),
                ("over_cap", "over the cap"), ("ineligible", "ineligible")) if counts[status]]
        lines["referrals"] = ", ".join(parts)
        if summary.points_earned:
            lines["referral_points"] = summary.points_earned
    if summary.referred_by is not None:
        lines["referred_by"] = summary.referred_by.referrer_member_id
    return lines

RECENT_REWARDS = 3  # reward redemptions on the card; the rest are behind /members/{id}/rewards


def loyalty_section(session: Session, workspace_id: str, member_id: str) -> dict[str, Any] | None:
    """The member's loyalty standing, or ``None`` for a person who is not a member of the programme and
    holds no coupon or benefit."""
    membership = membership_of(session, workspace_id, member_id)
    held = coupons.member_coupons(session, workspace_id, member_id)
    granted = [b for b in benefits.member_benefits(session, workspace_id, member_id) if b.remaining > 0]
    if membership is None and not held and not granted:
        return None
    section: dict[str, Any] = {}
    if membership is not None:
        workspace = session.get(Workspace, workspace_id)
        assert workspace is not None  # the membership's foreign key guarantees it
        section.update({"enrolled_at": membership.enrolled_at.date().isoformat(), "status": membership.status})
        try:
            summary = points.points_summary(session, workspace, member_id)
        except MemberNotEnrolled:  # enrolled before the points account existed: nothing earned yet
            summary = points.PointsSummary(available=0, pending=0, debt=0, expiring=[])
        if summary.tier is not None:
            section["tier"] = summary.tier
        section.update(_tier_lines(session, workspace_id, member_id))
        section.update({"points_available": summary.available, "points_pending": summary.pending})
        if summary.debt:
            section["points_debt"] = summary.debt
        if summary.expiring:
            soonest = summary.expiring[0]
            section["next_expiry"] = f"{soonest['points']} points on {soonest['expires_at'][:10]}"
        section.update(_referral_lines(session, workspace, member_id))
    if held:
        by_status = Counter(c.status for c in held)
        section["coupons"] = ", ".join(f"{count} {status}" for status, count in sorted(by_status.items()))
    if granted:
        section["benefits"] = ", ".join(f"{b.benefit.name} ×{b.remaining}" for b in granted)
    redeemed = rewards.redemption_views(session, rewards.member_redemptions(session, workspace_id, member_id,
                                                                           limit=RECENT_REWARDS))
    if redeemed:
        section["recent_rewards"] = "; ".join(
            f"{r.reward_name} ×{r.quantity} on {r.redeemed_at.date().isoformat()} "
            f"({'cancelled' if r.status == 'cancelled' else r.fulfilment_status or 'redeemed'})" for r in redeemed)
    return section


LEDGER_PAGE_SIZE = 20


@dataclass(frozen=True)
class PointsPanel:
    """Everything the console's points panel shows for one member, read in one go.

    ``summary`` is ``None`` for a person without a points account (not enrolled): no balance to show and
    nothing to adjust. ``tier`` is ``None`` when the programme has no tiers. ``ledger`` is one page of
    movements, newest first; ``next_cursor`` (a movement id) asks for the next, older page.
    """

    membership: Membership | None
    summary: points.PointsSummary | None
    tier: tiers.TierStatus | None
    ledger: Sequence[PointsMovement]
    next_cursor: int | None
    coupons: list[CouponOut]
    benefits: list[MemberBenefit]

    @property
    def has_account(self) -> bool:
        return self.summary is not None

    @property
    def tier_progress(self) -> int | None:
        """How far the member is towards the next tier, in whole percent (``None``: no next tier)."""
        if self.tier is None or not self.tier.next_threshold:
            return None
        share = self.tier.metric_value / self.tier.next_threshold * 100
        return int(max(Decimal(0), min(Decimal(100), share)))


def points_panel(session: Session, workspace: Workspace, member_id: str, *, before: int | None = None,
                 limit: int = LEDGER_PAGE_SIZE) -> PointsPanel:
    """The member's balance (available, pending, debt, what lapses when), tier and progress to the next,
    a page of the ledger (newest first, older than the movement id ``before``), coupons and benefits.

    Reads only: lots past their return window or lapsed show as the next movement will record them.
    Raises :class:`~memberops.identity.errors.MemberNotFound` for an unknown member.
    """
    held = coupons.coupon_views(session, coupons.member_coupons(session, workspace.id, member_id))
    granted = benefits.member_benefits(session, workspace.id, member_id)
    membership = membership_of(session, workspace.id, member_id)
    try:
        summary: points.PointsSummary | None = points.points_summary(session, workspace, member_id)
    except MemberNotEnrolled:
        summary = None
    status = None
    if summary is not None and active_programme(session, workspace.id).programme.tiers:
        status = tiers.tier_status(session, workspace, member_id, history_limit=10)
    movements = points.ledger_page(session, workspace.id, member_id, limit=limit, before=before)
    return PointsPanel(membership=membership, summary=summary, tier=status, ledger=movements,
                       next_cursor=movements[-1].id if len(movements) == limit else None,
                       coupons=held, benefits=granted)
