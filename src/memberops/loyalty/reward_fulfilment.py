"""After a reward redemption: cancelling it (points back through the ledger, stock returned, unused coupons
voided, an unused benefit grant ended) and moving an item's fulfilment forward. The redemption itself and the
catalogue are in :mod:`memberops.loyalty.rewards`; the lock order is the one its docstring gives (member
account, redemption, reward, coupons, benefit grant).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor, record
from memberops.db.base import utcnow
from memberops.db.dialect import locked
from memberops.loyalty import coupons, points
from memberops.loyalty.benefit_models import BenefitGrant
from memberops.loyalty.coupon_errors import CouponNotVoidable
from memberops.loyalty.models import PointsMovement
from memberops.loyalty.reward_errors import (
    FulfilmentNotAllowed,
    RewardRedemptionNotCancellable,
    RewardRedemptionNotFound,
)
from memberops.loyalty.reward_models import Reward, RewardRedemption

_RETURN_STOCK = (update(Reward).where(Reward.id == bindparam("reward_id"))
                 .values(redeemed_count=Reward.redeemed_count - bindparam("units"))
                 .execution_options(synchronize_session=False))


# --- cancel and fulfil ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cancelled:
    redemption: RewardRedemption
    points_returned: int
    is_replay: bool


def get_redemption(session: Session, workspace_id: str, redemption_id: str) -> RewardRedemption:
    redemption = session.get(RewardRedemption, redemption_id)
    if redemption is None or redemption.workspace_id != workspace_id:
        raise RewardRedemptionNotFound(redemption_id)
    return redemption


def _lock_redemption(session: Session, redemption_id: str) -> RewardRedemption:
    fresh = session.scalar(locked(select(RewardRedemption).where(RewardRedemption.id == redemption_id))
                           .execution_options(populate_existing=True))
    assert fresh is not None
    return fresh


def cancel_redemption(session: Session, workspace: Workspace, redemption_id: str, *, reason: str, actor: Actor,
                      now: datetime | None = None) -> Cancelled:
    """Undo a redemption (audited): its points come back through a ``reverse`` movement of the ledger
    (:func:`~memberops.loyalty.points.return_redeemed`), its units back to the stock, its unused coupons
    are voided and its unused benefit grant ended. Cancelling again changes nothing and answers the same.

    Raises :class:`RewardRedemptionNotCancellable` when an issued coupon was redeemed (or lapsed unused),
    the benefit was used, or the item was shipped or collected.
    """
    now = now or utcnow()
    found = get_redemption(session, workspace.id, redemption_id)
    points.lock_account(session, workspace.id, found.member_id)
    redemption = _lock_redemption(session, found.id)
    if redemption.status == "cancelled":
        reversal = session.get(PointsMovement, redemption.reversal_movement_id)
        return Cancelled(redemption, reversal.points if reversal else 0, True)
    if redemption.fulfilment_status in ("shipped", "collected"):
        raise RewardRedemptionNotCancellable(redemption.id, f"the item was {redemption.fulfilment_status}")
    movement = session.get(PointsMovement, redemption.points_movement_id)
    assert movement is not None
    with session.begin_nested():
        session.execute(_RETURN_STOCK, {"reward_id": redemption.reward_id, "units": redemption.quantity})
        for coupon_id in redemption.coupon_ids:
            try:
                coupons.void_coupon_by_id(session, workspace.id, coupon_id, "reward redemption cancelled",
                                          actor=actor, now=now)
            except CouponNotVoidable as exc:
                if exc.facts["status"] == "voided":  # withdrawn already (by an operator): nothing to take back
                    continue
                raise RewardRedemptionNotCancellable(redemption.id, f"its coupon is {exc.facts['status']}") from None
        if redemption.benefit_grant_id is not None:
            grant = session.scalar(locked(select(BenefitGrant).where(BenefitGrant.id == redemption.benefit_grant_id))
                                   .execution_options(populate_existing=True))
            assert grant is not None
            if grant.consumed > 0:
                raise RewardRedemptionNotCancellable(redemption.id, "its benefit was used")
            grant.valid_until = now  # ended: no use can be taken from it from now on
        returned = points.return_redeemed(session, workspace, movement, idempotency_key=f"reward-cancel:{redemption.id}",
                                          reason=f"reward redemption cancelled: {reason}"[:500], actor=actor,
                                          source_type="reward", source_id=redemption.id, now=now)
        redemption.status, redemption.cancelled_at, redemption.cancel_reason = "cancelled", now, reason[:200]
        redemption.reversal_movement_id = returned.movement.id
        session.flush()
        record(session, actor, "reward_redemption.cancel", workspace_id=workspace.id, target_type="reward_redemption",
               target_id=redemption.id, detail={"reason": reason[:200], "points_returned": returned.movement.points,
                                                "quantity": redemption.quantity})
    return Cancelled(redemption, returned.movement.points, False)


# An item's fulfilment moves forward only: what each status may become.
FULFILMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"shipped", "collected"}),
    "shipped": frozenset({"collected"}),
    "collected": frozenset(),
}


def set_fulfilment(session: Session, workspace_id: str, redemption_id: str,
                   status: Literal["shipped", "collected"], *, note: str = "", actor: Actor,
                   now: datetime | None = None) -> RewardRedemption:
    """Move an item redemption's fulfilment forward (audited); setting the status it already has changes
    nothing. Raises :class:`FulfilmentNotAllowed` for any other move (backwards, a cancelled redemption, a
    reward that is not an item)."""
    get_redemption(session, workspace_id, redemption_id)
    redemption = _lock_redemption(session, redemption_id)
    current = redemption.fulfilment_status
    if redemption.status == "completed" and current == status:
        return redemption
    if redemption.status != "completed" or current is None or status not in FULFILMENT_TRANSITIONS[current]:
        raise FulfilmentNotAllowed(redemption.id, current if redemption.status == "completed" else "cancelled",
                                   status)
    redemption.fulfilment_status = status
    redemption.fulfilment_note = note[:200] or redemption.fulfilment_note
    redemption.fulfilment_updated_at = now or utcnow()
    session.flush()
    record(session, actor, "reward_redemption.fulfilment", workspace_id=workspace_id, target_type="reward_redemption",
           target_id=redemption.id, detail={"from": current, "to": status})
    return redemption
