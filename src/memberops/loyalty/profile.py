"""The loyalty part of a member's 360° profile: membership, points, coupons, benefits and recent reward
redemptions at a glance.

Display-ready and flat (one value per line of the profile card); the full detail is behind the loyalty
endpoints (``/members/{id}/points``, ``…/coupons``, ``…/benefits``, ``…/rewards``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.loyalty import benefits, coupons, points, rewards
from memberops.loyalty.enrolment import membership_of
from memberops.loyalty.errors import MemberNotEnrolled

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
        section.update({"points_available": summary.available, "points_pending": summary.pending})
        if summary.debt:
            section["points_debt"] = summary.debt
        if summary.expiring:
            soonest = summary.expiring[0]
            section["next_expiry"] = f"{soonest['points']} points on {soonest['expires_at'][:10]}"
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
