"""The periodic points run and the liability report.

:func:`run_expiry` brings every member's ledger up to the clock — pending lots past their return window
become available, lapsed lots expire — and warns (a ``points_expiring`` loyalty event, for journeys)
about lots lapsing within the programme's warning window. Each member is handled under their balance
lock, exactly as a redemption would be, so the run and the point of sale never spend the same lot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.db.dialect import utc_year_month
from memberops.loyalty.models import LoyaltyEvent, PointsAccount, PointsLot, PointsMovement
from memberops.loyalty.points import catch_up, lock_account
from memberops.loyalty.programmes import active_programme


@dataclass
class ExpiryRun:
    as_of: datetime
    members: int = 0
    released_points: int = 0
    expired_points: int = 0
    warned_members: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def run_expiry(session: Session, workspace: Workspace, *, as_of: datetime | None = None) -> ExpiryRun:
    """Release, expire and warn for every member of ``workspace`` as of ``as_of`` (default: now)."""
    as_of = as_of or utcnow()
    run = ExpiryRun(as_of=as_of)
    programme = active_programme(session, workspace.id)
    due = session.scalars(select(PointsLot.member_id).where(
        PointsLot.workspace_id == workspace.id, PointsLot.remaining > 0,
        or_(and_(PointsLot.state == "pending", PointsLot.available_at <= as_of), PointsLot.expires_at <= as_of),
    ).distinct().order_by(PointsLot.member_id)).all()
    first_movement = session.scalar(select(func.max(PointsMovement.id)).where(
        PointsMovement.workspace_id == workspace.id)) or 0
    for member_id in due:
        catch_up(session, lock_account(session, workspace.id, member_id), programme, as_of)
    run.members = len(due)
    for kind, points in session.execute(
        select(PointsMovement.kind, func.sum(PointsMovement.points)).where(
            PointsMovement.workspace_id == workspace.id, PointsMovement.id > first_movement)
        .group_by(PointsMovement.kind)
    ):
        run.kinds[kind] = int(points or 0)
    run.released_points = run.kinds.get("release", 0)
    run.expired_points = run.kinds.get("expire", 0)
    run.warned_members = warn_expiring(session, workspace, as_of=as_of,
                                       days=programme.programme.expiry.warning_days)
    return run


def warn_expiring(session: Session, workspace: Workspace, *, as_of: datetime, days: int) -> int:
    """A ``points_expiring`` event per member holding points that lapse within ``days``, once per lot;
    returns how many members were warned."""
    if days <= 0:
        return 0
    lots = session.scalars(select(PointsLot).where(
        PointsLot.workspace_id == workspace.id, PointsLot.remaining > 0, PointsLot.warned_at.is_(None),
        PointsLot.expires_at > as_of, PointsLot.expires_at <= as_of + timedelta(days=days),
    ).order_by(PointsLot.member_id, PointsLot.expires_at)).all()
    by_member: dict[str, list[PointsLot]] = {}
    for lot in lots:
        by_member.setdefault(lot.member_id, []).append(lot)
    for member_id, member_lots in by_member.items():
        first = min(lot.expires_at for lot in member_lots if lot.expires_at is not None)
        session.add(LoyaltyEvent(workspace_id=workspace.id, member_id=member_id, type="points_expiring",
                                 occurred_at=as_of, payload={
                                     "points": sum(lot.remaining for lot in member_lots),
                                     "first_expires_at": first.isoformat(),
                                     "lot_ids": [lot.id for lot in member_lots]}))
        for lot in member_lots:
            lot.warned_at = as_of
    session.flush()
    return len(by_member)


# --- liability -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiabilityMonth:
    month: str | None
    points: int
    value: Decimal


@dataclass(frozen=True)
class Liability:
    programme_version: int
    point_value: Decimal
    currency: str
    points: int
    value: Decimal
    debt_points: int
    by_expiry_month: list[LiabilityMonth]


CENT = Decimal("0.01")


def points_liability(session: Session, workspace: Workspace, *, as_of: datetime | None = None) -> Liability:
    """Outstanding points (available and pending, not lapsed) × the programme's point value, by the UTC
    month they lapse in; debts are reported beside it, not netted."""
    as_of = as_of or utcnow()
    programme = active_programme(session, workspace.id)
    month = utc_year_month(session, PointsLot.expires_at)
    rows = session.execute(
        select(month, func.sum(PointsLot.remaining)).where(
            PointsLot.workspace_id == workspace.id, PointsLot.remaining > 0,
            or_(PointsLot.expires_at.is_(None), PointsLot.expires_at > as_of),
        ).group_by(month).order_by(month)
    ).all()
    value = programme.programme.point_value
    months = [LiabilityMonth(m, int(p or 0), (Decimal(int(p or 0)) * value).quantize(CENT)) for m, p in rows]
    months.sort(key=lambda m: (m.month is None, m.month or ""))
    total = sum(m.points for m in months)
    debt = int(session.scalar(select(func.coalesce(func.sum(PointsAccount.debt), 0)).where(
        PointsAccount.workspace_id == workspace.id)) or 0)
    return Liability(programme.version, value, programme.programme.currency, total,
                     (Decimal(total) * value).quantize(CENT), debt, months)
