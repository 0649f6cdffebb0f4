"""Loyalty on a OneID merge: when member B is absorbed into member A (batch resolution, which also applies
an operator's ``POST /api/v1/identity/merge`` decision), B's loyalty state moves to A in the run's
transaction.

- **Membership**: A keeps one. With only B's, it becomes A's; with both, the better one (active over
  expired over cancelled, then the later end) gives the status and term, the earlier join date stays, and
  B's terms are kept under A's membership.
- **Points**: under both members' locks (in member id order), B's ledger is caught up with the clock, then
  a ``transfer_out`` movement empties B's lots and balance (debt included) and a ``transfer_in`` movement
  gives A a lot for each of B's lots, with the same points, state, earning date and expiry
  (``origin_lot_id`` names the lot it came from, so a later refund of B's order reverses from A). Their
  idempotency keys name B and B's last movement: a replayed merge finds B empty and moves nothing.
  A's debt (or B's) is then settled from A's available points.
- **Coupons and benefit grants** held by B become A's; **the tier**: A keeps the higher of the two, and is
  upgraded at once when the value now A's reaches a higher tier (:func:`memberops.loyalty.tiers.on_merge`;
  both recorded in A's tier history, naming B).
- **Growth value** earned by B becomes A's, each movement keeping its date (so it counts in the windows it
  was earned in), and so do B's imported orders as spend and order tiers count them; B's orders posted live
  keep B's id (facts are not rewritten) and count for A through ``merged_into_id``; **reward redemptions** made by B become A's, so the per-member limits count them.
- **Referrals**: friends B referred become A's (the referrer's counts and cap follow); B's own binding as a
  friend becomes A's unless A has one (a friend is bound once: A's stands, B's stays recorded on B). A
  binding that would make A their own referrer (A referred B, or B referred A) stays where it is.

Every move is an ``UPDATE`` of the rows still naming B, so a replayed merge finds none and moves nothing.

A split after a merge (B revived by a later run) does not move anything back: B starts with an empty
account and no membership (they may enrol again; no second welcome gift), and the points stay with A,
where an operator can adjust them by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.identity.models import Member
from memberops.identity.service import survivors
from memberops.loyalty import memberships, points, tiers
from memberops.loyalty.benefit_models import BenefitGrant
from memberops.loyalty.coupon_models import Coupon
from memberops.loyalty.models import (
    LoyaltyEvent,
    Membership,
    MembershipTerm,
    PointsAccount,
    PointsLot,
    PointsMovement,
)
from memberops.loyalty.programmes import ActiveProgramme, active_programme
from memberops.loyalty.referral_models import ReferralBinding
from memberops.loyalty.reward_models import RewardRedemption
from memberops.loyalty.tier_models import GrowthMovement, QualifyingOrder

CHUNK = 5_000


@dataclass
class MergeTransfer:
    members: int = 0  # absorbed members whose state moved
    memberships: int = 0
    points: int = 0
    lots: int = 0
    coupons: int = 0
    benefit_grants: int = 0
    growth_movements: int = 0
    referral_bindings: int = 0
    reward_redemptions: int = 0


def _better(a: Membership, b: Membership) -> Membership:
    far = datetime.max.timestamp()

    def rank(m: Membership) -> tuple[int, float]:
        return memberships.STATUSES.index(m.status) if m.status in memberships.STATUSES else 9, \
            -(m.ends_at.timestamp() if m.ends_at is not None else far)

    return b if rank(b) < rank(a) else a


def _move_membership(session: Session, workspace_id: str, absorbed: str, survivor: str) -> bool:
    gone = memberships.membership_of(session, workspace_id, absorbed)
    if gone is None:
        return False
    kept = memberships.membership_of(session, workspace_id, survivor)
    if kept is None:
        gone.member_id = survivor
        session.execute(update(MembershipTerm).where(MembershipTerm.membership_id == gone.id)
                        .values(member_id=survivor))
        kept = gone
    else:
        if _better(kept, gone) is gone:
            kept.status, kept.ends_at, kept.cancelled_at = gone.status, gone.ends_at, gone.cancelled_at
            kept.auto_renew, kept.renewal_requested_for = gone.auto_renew, gone.renewal_requested_for
        kept.enrolled_at = min(kept.enrolled_at, gone.enrolled_at)
        kept.birth_month = kept.birth_month or gone.birth_month
        session.execute(update(MembershipTerm).where(MembershipTerm.membership_id == gone.id)
                        .values(membership_id=kept.id, member_id=survivor))
        session.delete(gone)
    session.flush()
    memberships.keep_in_step(session, kept)
    member = session.get(Member, absorbed)
    if member is not None and member.is_enrolled:
        member.is_enrolled = False
    return True


def _account(session: Session, workspace_id: str, member_id: str) -> PointsAccount | None:
    return session.scalar(points._ACCOUNT, {"workspace_id": workspace_id, "member_id": member_id})


def _move_points(session: Session, workspace: Workspace, programme: ActiveProgramme, absorbed: str, survivor: str,
                 now: datetime, summary: MergeTransfer) -> None:
    # lock both balance rows in one order (member id), so two merges touching the same members never deadlock
    accounts = {member_id: _account(session, workspace.id, member_id) for member_id in sorted((absorbed, survivor))}
    source = accounts[absorbed]
    if source is None:
        return
    points.catch_up(session, source, programme, now)
    session.flush()
    if source.available == 0 and source.pending == 0 and source.debt == 0:
        return
    target = accounts[survivor] or points.open_account(session, workspace.id, survivor)
    points.catch_up(session, target, programme, now)
    last = session.scalar(select(func.max(PointsMovement.id)).where(PointsMovement.member_id == absorbed))
    key = f"merge:{absorbed}:{last}"
    if points._existing(session, workspace.id, f"{key}:out") is not None:
        return
    lots = session.scalars(select(PointsLot).where(PointsLot.member_id == absorbed, PointsLot.remaining > 0)
                           .order_by(PointsLot.id)).all()
    carried = [(lot, lot.remaining) for lot in lots]
    available, pending, debt = source.available, source.pending, source.debt
    size = available + pending + debt
    points._record(session, source, kind="transfer_out", points=size, key=f"{key}:out", available=-available,
                   pending=-pending, debt=-debt, taken=carried, source_type="merge", source_id=survivor,
                   reason="merged into another member", version=programme.version, now=now)
    arrived = points._record(session, target, kind="transfer_in", points=size, key=f"{key}:in", available=available,
                             pending=pending, debt=debt, source_type="merge", source_id=absorbed,
                             reason="merged from another member", version=programme.version, now=now)
    session.flush()
    for lot, count in carried:
        session.add(PointsLot(
            workspace_id=workspace.id, member_id=survivor, movement_id=arrived.id, points=count, remaining=count,
            state=lot.state, earned_at=lot.earned_at, available_at=lot.available_at, expires_at=lot.expires_at,
            warned_at=lot.warned_at, origin_lot_id=lot.id))
    session.flush()
    points.settle_debt(session, target, programme, after=arrived, now=now)
    summary.points += available + pending
    summary.lots += len(carried)


def _repoint(session: Session, statement: Any) -> int:
    return int(session.execute(statement.execution_options(synchronize_session=False)).rowcount or 0)  # type: ignore[attr-defined]


def _move_referrals(session: Session, workspace_id: str, absorbed: str, survivor: str) -> int:
    """B's friends become A's; B's own binding as a friend becomes A's when A has none (see the module)."""
    moved = _repoint(session, update(ReferralBinding).where(
        ReferralBinding.workspace_id == workspace_id, ReferralBinding.referrer_member_id == absorbed,
        ReferralBinding.friend_member_id != survivor).values(referrer_member_id=survivor))
    has_own = session.scalar(select(ReferralBinding.id).where(ReferralBinding.workspace_id == workspace_id,
                                                              ReferralBinding.friend_member_id == survivor))
    if has_own is None:
        moved += _repoint(session, update(ReferralBinding).where(
            ReferralBinding.workspace_id == workspace_id, ReferralBinding.friend_member_id == absorbed,
            ReferralBinding.referrer_member_id != survivor).values(friend_member_id=survivor))
    return moved


def transfer_loyalty(session: Session, workspace: Workspace, absorbed: str, survivor: str, *,
                     now: datetime | None = None, summary: MergeTransfer | None = None) -> MergeTransfer:
    """Move ``absorbed``'s membership, points (lots keep their expiry), coupons, benefit grants, growth value,
    referral bindings, reward redemptions and tier to
    ``survivor`` (see the module docstring). Moving an absorbed member that holds nothing changes nothing."""
    now = now or utcnow()
    summary = summary or MergeTransfer()
    programme = active_programme(session, workspace.id)
    before = (summary.memberships, summary.points, summary.coupons, summary.benefit_grants, summary.lots,
              summary.growth_movements, summary.referral_bindings, summary.reward_redemptions)
    if _move_membership(session, workspace.id, absorbed, survivor):
        summary.memberships += 1
    _move_points(session, workspace, programme, absorbed, survivor, now, summary)
    summary.coupons += int(session.execute(update(Coupon).where(Coupon.workspace_id == workspace.id,
                                                                Coupon.member_id == absorbed)
                                           .values(member_id=survivor)).rowcount or 0)  # type: ignore[attr-defined]
    summary.benefit_grants += int(session.execute(update(BenefitGrant).where(
        BenefitGrant.workspace_id == workspace.id, BenefitGrant.member_id == absorbed)
        .values(member_id=survivor)).rowcount or 0)  # type: ignore[attr-defined]
    summary.growth_movements += _repoint(session, update(GrowthMovement).where(
        GrowthMovement.workspace_id == workspace.id, GrowthMovement.member_id == absorbed).values(member_id=survivor))
    # imported orders count for the survivor's spend and order tiers (live orders keep the absorbed id: the
    # tier metric follows merged_into_id to them, tiers.qualifying_orders)
    _repoint(session, update(QualifyingOrder).where(
        QualifyingOrder.workspace_id == workspace.id, QualifyingOrder.member_id == absorbed).values(member_id=survivor))
    summary.referral_bindings += _move_referrals(session, workspace.id, absorbed, survivor)
    summary.reward_redemptions += _repoint(session, update(RewardRedemption).where(
        RewardRedemption.workspace_id == workspace.id, RewardRedemption.member_id == absorbed)
        .values(member_id=survivor))
    if _account(session, workspace.id, survivor) is None \
            and memberships.membership_of(session, workspace.id, survivor) is not None:
        points.open_account(session, workspace.id, survivor)  # an upgrade moves under the member's points lock
    tiers.on_merge(session, workspace, programme, absorbed, survivor, now=now)
    after = (summary.memberships, summary.points, summary.coupons, summary.benefit_grants, summary.lots,
             summary.growth_movements, summary.referral_bindings, summary.reward_redemptions)
    if after != before:
        summary.members += 1
        session.add(LoyaltyEvent(workspace_id=workspace.id, member_id=survivor, type="member_merged", occurred_at=now,
                                 payload={"absorbed_member_id": absorbed,
                                          **{name: a - b for name, a, b in zip(
                                              ("memberships", "points", "coupons", "benefit_grants", "lots",
                                               "growth_movements", "referral_bindings", "reward_redemptions"),
                                              after, before, strict=True)}}))
    session.flush()
    return summary


def absorb_merged_members(session: Session, workspace: Workspace, absorbed: Mapping[str, str] | None = None, *,
                          now: datetime | None = None) -> MergeTransfer:
    """Move the loyalty state of absorbed members to the members that absorbed them, following merge
    chains to the final survivor. ``absorbed`` (absorbed id → survivor id) names the members a resolution
    run just merged; without it every absorbed member still holding loyalty state is found (the daily
    membership job's repair). Idempotent."""
    summary = MergeTransfer()
    ws = session.get(Workspace, workspace.id) or workspace
    holders = or_(  # only absorbed members holding something cost a transfer (most merged people never joined)
        Member.id.in_(select(Membership.member_id).where(Membership.workspace_id == ws.id)),
        Member.id.in_(select(PointsAccount.member_id).where(
            PointsAccount.workspace_id == ws.id,
            (PointsAccount.available != 0) | (PointsAccount.pending != 0) | (PointsAccount.debt != 0))),
        Member.id.in_(select(Coupon.member_id).where(Coupon.workspace_id == ws.id)),
        Member.id.in_(select(BenefitGrant.member_id).where(BenefitGrant.workspace_id == ws.id)),
        Member.id.in_(select(GrowthMovement.member_id).where(GrowthMovement.workspace_id == ws.id)),
        Member.id.in_(select(ReferralBinding.referrer_member_id).where(ReferralBinding.workspace_id == ws.id)),
        Member.id.in_(select(ReferralBinding.friend_member_id).where(ReferralBinding.workspace_id == ws.id)),
        Member.id.in_(select(RewardRedemption.member_id).where(RewardRedemption.workspace_id == ws.id)),
    )
    absorbed_members = select(Member.id).where(Member.workspace_id == ws.id, Member.merged_into_id.is_not(None), holders)
    if absorbed is None:
        ids = list(session.scalars(absorbed_members.order_by(Member.id)).all())
    else:
        named = sorted(absorbed)
        ids = sorted(member_id for start in range(0, len(named), CHUNK) for member_id in session.scalars(
            absorbed_members.where(Member.id.in_(named[start:start + CHUNK]))))
    if not ids:
        return summary
    final = survivors(session, ws.id, ids)
    for member_id in ids:
        survivor = final.get(member_id)
        if survivor is not None and survivor != member_id:
            transfer_loyalty(session, ws, member_id, survivor, now=now, summary=summary)
    return summary
