"""Reading referrals: a member's code, who referred them and the friends they referred; the top referrers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.identity.service import get_member
from memberops.loyalty.errors import MemberNotEnrolled
from memberops.loyalty.referral_models import ReferralBinding, ReferralCode
from memberops.loyalty.referrals import binding_of, is_member, referral_code_of


def shown_status(binding: ReferralBinding, now: datetime) -> str:
    """``pending`` for rewards still inside the return window, else the stored status."""
    if binding.status == "rewarded" and binding.reward_available_at is not None and binding.reward_available_at > now:
        return "pending"
    return binding.status


@dataclass(frozen=True)
class ReferralSummary:
    member_id: str
    code: str | None
    referred_by: ReferralBinding | None
    counts: dict[str, int]  # bindings, awaiting_purchase, pending, rewarded, over_cap, ineligible
    points_earned: int  # as referrer, pending included
    friends: list[ReferralBinding]


def referral_summary(session: Session, workspace: Workspace, member_id: str, *, limit: int = 100,
                     now: datetime | None = None) -> ReferralSummary:
    """The member's code, who referred them, and the friends they referred (newest first, ``limit`` of
    them) with counts by status. Raises :class:`MemberNotEnrolled` for a person outside the programme."""
    now = now or utcnow()
    member = get_member(session, workspace.id, member_id).id
    if not is_member(session, workspace.id, member):
        raise MemberNotEnrolled(member)
    counts = {"bindings": 0, "awaiting_purchase": 0, "pending": 0, "rewarded": 0, "over_cap": 0, "ineligible": 0}
    earned = 0
    waiting = case((ReferralBinding.reward_available_at > now, 1), else_=0)  # one expression: grouped by as selected
    rows = session.execute(select(
        ReferralBinding.status, waiting, func.count(), func.coalesce(func.sum(ReferralBinding.referrer_points), 0),
    ).where(ReferralBinding.workspace_id == workspace.id, ReferralBinding.referrer_member_id == member).group_by(
        ReferralBinding.status, waiting)).all()
    for status, is_waiting, count, referrer_points in rows:
        shown = "pending" if status == "rewarded" and is_waiting == 1 else status
        counts[shown] = counts.get(shown, 0) + int(count)
        counts["bindings"] += int(count)
        earned += int(referrer_points) if status == "rewarded" else 0
    friends = list(session.scalars(select(ReferralBinding).where(
        ReferralBinding.workspace_id == workspace.id, ReferralBinding.referrer_member_id == member,
    ).order_by(ReferralBinding.bound_at.desc(), ReferralBinding.id.desc()).limit(limit)))
    return ReferralSummary(member, referral_code_of(session, workspace.id, member),
                           binding_of(session, workspace.id, member), counts, earned, friends)


@dataclass(frozen=True)
class ReferrerLine:
    member_id: str
    code: str | None
    bindings: int
    rewarded: int  # rewards granted (pending included)
    over_cap: int
    ineligible: int
    points: int


def referrers_report(session: Session, workspace_id: str, *, limit: int = 20) -> list[ReferrerLine]:
    """The referrers with the most friends bound, with what became of the bindings (one query)."""
    def having(status: str) -> Any:
        return func.sum(case((ReferralBinding.status == status, 1), else_=0))

    query = (
        select(ReferralBinding.referrer_member_id, ReferralCode.code, func.count(), having("rewarded"),
               having("over_cap"), having("ineligible"),
               func.coalesce(func.sum(ReferralBinding.referrer_points), 0))
        .outerjoin(ReferralCode, and_(ReferralCode.workspace_id == ReferralBinding.workspace_id,
                                      ReferralCode.member_id == ReferralBinding.referrer_member_id))
        .where(ReferralBinding.workspace_id == workspace_id)
        .group_by(ReferralBinding.referrer_member_id, ReferralCode.code)
        .order_by(func.count().desc(), ReferralBinding.referrer_member_id).limit(limit)
    )
    return [ReferrerLine(member_id, code, int(count), int(won or 0), int(capped or 0), int(late or 0), int(total or 0))
            for member_id, code, count, won, capped, late, total in session.execute(query)]
