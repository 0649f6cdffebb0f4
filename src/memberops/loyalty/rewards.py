"""The rewards catalogue (points mall): rewards members buy with points (and optionally cash) and their
redemption; cancelling a redemption and an item's fulfilment are in :mod:`memberops.loyalty.reward_fulfilment`.

A redemption is one piece of work inside the caller's transaction, in a savepoint, so a refused
redemption moves nothing even when the caller carries on (the demo does):

1. the member's points account is locked (:func:`memberops.loyalty.points.lock_account`): one member's
   two terminals queue here, so the per-member limits are counted against what the other committed, and
   a replayed key is looked for again after the wait;
2. the points are taken through the ledger (:func:`~memberops.loyalty.points.redeem`: nearest expiry
   first, lots recorded, never below zero);
3. the stock is taken by a conditional ``UPDATE … SET redeemed_count = redeemed_count + n WHERE
   redeemed_count + n <= stock``: members racing for the last units queue on the reward's row;
   PostgreSQL re-checks the condition once the winner commits, SQLite serialises writers;
4. coupons are issued or the benefit granted, and the redemption row records it all under its
   idempotency key (unique per workspace).

Locks are always taken in one order — member account, redemption, reward, coupon template or coupons,
benefit grant — so two requests never wait for each other in a circle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor, record
from memberops.db.base import utcnow
from memberops.db.dialect import locked
from memberops.identity.service import get_member
from memberops.ids import new_id
from memberops.loyalty import benefits, coupon_templates, coupons, points, tiers
from memberops.loyalty.benefit_models import BenefitDefinition
from memberops.loyalty.coupon_errors import (
    BenefitNotFound,
    CouponIssueLimitReached,
    CouponSoldOut,
    CouponTemplateNotFound,
    CouponTemplateUnavailable,
)
from memberops.loyalty.coupon_models import Coupon, CouponTemplate
from memberops.loyalty.coupon_rules import display_code
from memberops.loyalty.errors import IdempotencyKeyReused
from memberops.loyalty.models import PointsMovement
from memberops.loyalty.programmes import active_programme
from memberops.loyalty.reward_errors import (
    InvalidReward,
    RewardExists,
    RewardLimitReached,
    RewardNotAvailable,
    RewardNotFound,
    RewardOutOfStock,
)
from memberops.loyalty.reward_models import Reward, RewardRedemption, RewardVersion
from memberops.loyalty.reward_schemas import PeriodLimit, RewardIn, RewardOut, RewardRedemptionOut

# --- the catalogue --------------------------------------------------------------------------------------


def create_reward(session: Session, workspace: Workspace, spec: RewardIn, *, actor: Actor) -> Reward:
    """A new reward at version 1 (audited); its code is unique in the workspace."""
    if _reward_by_code(session, workspace.id, spec.code) is not None:
        raise RewardExists(spec.code)
    now = utcnow()
    reward = Reward(workspace_id=workspace.id, code=spec.code, version=1, redeemed_count=0, created_at=now,
                    updated_at=now)
    definition = _apply(session, workspace, reward, spec)
    session.add(reward)
    session.flush()
    session.add(RewardVersion(reward_id=reward.id, version=1, definition=definition, created_by=_who(actor),
                              created_at=now))
    session.flush()
    record(session, actor, "reward.create", workspace_id=workspace.id, target_type="reward", target_id=reward.id,
           detail={"code": reward.code, "kind": reward.kind, "points": reward.points, "version": 1})
    return reward


def update_reward(session: Session, workspace: Workspace, code: str, spec: RewardIn, *, actor: Actor) -> Reward:
    """Replace the reward's definition with ``spec`` (audited): a change makes a new version; redemptions
    keep the version they were made under. The stock never drops below the units redeemed."""
    reward = _lock_reward(session, get_reward(session, workspace.id, code))
    if spec.code != reward.code:
        raise InvalidReward(f"the code of reward {reward.code} cannot change", "code")
    if spec.stock is not None and spec.stock < reward.redeemed_count:
        raise InvalidReward(f"stock cannot drop below the {reward.redeemed_count} units redeemed", "stock")
    current = session.scalar(select(RewardVersion.definition).where(RewardVersion.reward_id == reward.id,
                                                                    RewardVersion.version == reward.version))
    definition = _apply(session, workspace, reward, spec)
    if definition == current:
        return reward
    changed = sorted(name for name in definition if (current or {}).get(name) != definition[name])
    reward.version += 1
    reward.updated_at = utcnow()
    session.add(RewardVersion(reward_id=reward.id, version=reward.version, definition=definition,
                              created_by=_who(actor), created_at=reward.updated_at))
    session.flush()
    record(session, actor, "reward.update", workspace_id=workspace.id, target_type="reward", target_id=reward.id,
           detail={"code": reward.code, "version": reward.version, "changed": changed})
    return reward


def _apply(session: Session, workspace: Workspace, reward: Reward, spec: RewardIn) -> dict[str, Any]:
    """Set ``reward``'s columns from ``spec``, resolving the coupon template and benefit codes; returns the
    definition as the version keeps it (the currency filled in)."""
    template_id = benefit_id = None
    if spec.coupon_template is not None:
        try:
            template_id = coupon_templates.get_template(session, workspace.id, spec.coupon_template).id
        except CouponTemplateNotFound:
            raise InvalidReward(f"no coupon template {spec.coupon_template}", "coupon_template") from None
    if spec.benefit_code is not None:
        try:
            benefit_id = benefits.get_benefit(session, workspace.id, spec.benefit_code).id
        except BenefitNotFound:
            raise InvalidReward(f"no benefit {spec.benefit_code}", "benefit_code") from None
    programme = active_programme(session, workspace.id).programme
    known = [tier.code for tier in programme.tiers]
    unknown = [tier for tier in spec.tiers if tier not in known]
    if unknown:
        raise InvalidReward(f"the programme has no tier {', '.join(unknown)} (it has: {', '.join(known) or 'none'})",
                            "tiers")
    currency = (spec.currency or programme.currency) if spec.cash_amount is not None else None
    reward.name, reward.description, reward.kind = spec.name, spec.description, spec.kind
    reward.points, reward.cash_amount, reward.currency = spec.points, spec.cash_amount, currency
    reward.stock, reward.per_member_limit = spec.stock, spec.per_member_limit
    reward.period_limit = spec.period_limit.count if spec.period_limit else None
    reward.limit_period = spec.period_limit.period if spec.period_limit else None
    reward.valid_from, reward.valid_until = spec.valid_from, spec.valid_until
    reward.tiers, reward.is_active = list(spec.tiers), spec.is_active
    reward.coupon_template_id, reward.benefit_id, reward.benefit_quantity = template_id, benefit_id, spec.benefit_quantity
    return spec.model_dump(mode="json") | {"currency": currency}


def get_reward(session: Session, workspace_id: str, code: str) -> Reward:
    """The reward whose code (or id) is ``code``."""
    reward = _reward_by_code(session, workspace_id, code)
    if reward is None:
        reward = session.get(Reward, code)
        if reward is None or reward.workspace_id != workspace_id:
            raise RewardNotFound(code)
    return reward


def list_rewards(session: Session, workspace_id: str, *, active_only: bool = False) -> Sequence[Reward]:
    query = select(Reward).where(Reward.workspace_id == workspace_id)
    if active_only:
        query = query.where(Reward.is_active.is_(True))
    return session.scalars(query.order_by(Reward.code)).all()


def reward_view(session: Session, reward: Reward) -> RewardOut:
    template = session.get(CouponTemplate, reward.coupon_template_id) if reward.coupon_template_id else None
    benefit = session.get(BenefitDefinition, reward.benefit_id) if reward.benefit_id else None
    period = PeriodLimit.model_validate({"count": reward.period_limit, "period": reward.limit_period}) \
        if reward.period_limit and reward.limit_period else None
    return RewardOut(
        id=reward.id, code=reward.code, name=reward.name, description=reward.description,
        kind=reward.kind, points=reward.points, cash_amount=reward.cash_amount,  # type: ignore[arg-type]
        currency=reward.currency, stock=reward.stock, redeemed_count=reward.redeemed_count,
        remaining_stock=None if reward.stock is None else max(reward.stock - reward.redeemed_count, 0),
        per_member_limit=reward.per_member_limit, period_limit=period, valid_from=reward.valid_from,
        valid_until=reward.valid_until, tiers=list(reward.tiers), coupon_template=template.code if template else None,
        benefit_code=benefit.code if benefit else None, benefit_quantity=reward.benefit_quantity,
        is_active=reward.is_active, version=reward.version, created_at=reward.created_at, updated_at=reward.updated_at,
    )


def _reward_by_code(session: Session, workspace_id: str, code: str) -> Reward | None:
    return session.scalar(select(Reward).where(Reward.workspace_id == workspace_id, Reward.code == code))


def _lock_reward(session: Session, reward: Reward) -> Reward:
    fresh = session.scalar(locked(select(Reward).where(Reward.id == reward.id)).execution_options(populate_existing=True))
    assert fresh is not None
    return fresh


def _who(actor: Actor) -> str:
    return f"{actor.type}:{actor.id}"[:100]


# --- availability and limits (pure) ---------------------------------------------------------------------


def period_start(now: datetime, period: str, zone: ZoneInfo) -> datetime:
    """The start (UTC) of the calendar ``period`` holding ``now`` in ``zone``: day, ISO week (Monday), month
    or year."""
    day = now.astimezone(zone).date()
    if period == "week":
        day -= timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    elif period == "year":
        day = day.replace(month=1, day=1)
    elif period != "day":
        raise ValueError(f"unknown period {period}")
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def unavailability(reward: Reward, member_tier: str | None, now: datetime) -> str | None:
    """Why ``reward`` cannot be redeemed now by a member of ``member_tier``, or ``None`` when it can."""
    if not reward.is_active:
        return "inactive"
    if reward.valid_from is not None and now < reward.valid_from:
        return "not_yet_valid"
    if reward.valid_until is not None and now >= reward.valid_until:
        return "ended"
    if reward.tiers and member_tier not in reward.tiers:
        return "tier"
    return None


# --- redeem ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardRedeemed:
    redemption: RewardRedemption
    balance: dict[str, int]
    is_replay: bool


_TAKE_STOCK = (update(Reward).where(Reward.id == bindparam("reward_id"),
                                    or_(Reward.stock.is_(None), Reward.redeemed_count + bindparam("units") <= Reward.stock))
               .values(redeemed_count=Reward.redeemed_count + bindparam("units"))
               .execution_options(synchronize_session=False))


def redeem_reward(
    session: Session, workspace: Workspace, member_id: str, reward_code: str, *, quantity: int,
    idempotency_key: str, actor: Actor, now: datetime | None = None,
) -> RewardRedeemed:
    """Redeem ``quantity`` units of the reward for the member: points through the ledger, stock taken,
    coupons issued or benefit granted, all or nothing (see the module docstring for the order and locks).

    Raises :class:`RewardNotAvailable` (inactive, outside its window, not for the member's tier),
    :class:`RewardLimitReached`, :class:`RewardOutOfStock`, :class:`~memberops.loyalty.errors.
    InsufficientPoints`, :class:`~memberops.loyalty.errors.MemberNotEnrolled`; a replay of
    ``idempotency_key`` answers the first redemption (as it stands now) and the balance it left, and the
    same key for another member, reward or quantity raises :class:`IdempotencyKeyReused`.
    """
    if quantity < 1:
        raise ValueError("a redemption takes at least one unit")
    now = now or utcnow()
    member = get_member(session, workspace.id, member_id).id
    reward = get_reward(session, workspace.id, reward_code)
    replay = _replayed(session, workspace.id, idempotency_key, reward.id, member, quantity)
    if replay is None:
        points.lock_account(session, workspace.id, member)  # the member's terminals queue here
        replay = _replayed(session, workspace.id, idempotency_key, reward.id, member, quantity)
    if replay is not None:
        movement = session.get(PointsMovement, replay.points_movement_id)
        assert movement is not None
        return RewardRedeemed(replay, points.shown(movement.outcome, active_programme(session, workspace.id)), True)
    session.refresh(reward)  # as committed by whoever redeemed it while we waited
    held = tiers.tier_of(session, workspace.id, member) if reward.tiers else None
    reason = unavailability(reward, held.tier if held else None, now)
    if reason is not None:
        raise RewardNotAvailable(reward.code, reason, **({"tiers": list(reward.tiers)} if reason == "tier" else {}))
    _check_limits(session, workspace, reward, member, quantity, now)
    if reward.stock is not None and reward.redeemed_count + quantity > reward.stock:
        raise RewardOutOfStock(reward.code, quantity, max(reward.stock - reward.redeemed_count, 0))
    redemption = RewardRedemption(
        id=new_id(), workspace_id=workspace.id, reward_id=reward.id, reward_version=reward.version, member_id=member,
        quantity=quantity, points=reward.points * quantity,
        cash_amount=reward.cash_amount * quantity if reward.cash_amount is not None else None,
        currency=reward.currency, status="completed", fulfilment_status="pending" if reward.kind == "item" else None,
        idempotency_key=idempotency_key, redeemed_at=now, coupon_ids=[],
    )
    with session.begin_nested():
        spent = points.redeem(session, workspace, member, points=redemption.points,
                              reason=f"reward {reward.code} x{quantity}", idempotency_key=f"reward:{idempotency_key}",
                              actor=actor, now=now, source_type="reward", source_id=redemption.id)
        if spent.is_replay:  # the ledger key was spent by a plain points redeem: not this request's
            raise IdempotencyKeyReused(idempotency_key)
        redemption.points_movement_id = spent.movement.id
        if coupons.rows_changed(session.execute(_TAKE_STOCK, {"reward_id": reward.id, "units": quantity})) != 1:
            session.refresh(reward)
            raise RewardOutOfStock(reward.code, quantity, max((reward.stock or 0) - reward.redeemed_count, 0))
        _deliver(session, workspace, reward, redemption, idempotency_key, now)
        session.add(redemption)
        session.flush()
    session.refresh(reward)
    return RewardRedeemed(redemption, spent.balance, False)


def _replayed(session: Session, workspace_id: str, key: str, reward_id: str, member_id: str,
              quantity: int) -> RewardRedemption | None:
    redemption = session.scalar(select(RewardRedemption).where(RewardRedemption.workspace_id == workspace_id,
                                                               RewardRedemption.idempotency_key == key)
                                .execution_options(populate_existing=True))
    if redemption is None:
        return None
    if (redemption.reward_id, redemption.member_id, redemption.quantity) != (reward_id, member_id, quantity):
        raise IdempotencyKeyReused(key)
    return redemption


def _redeemed_units(session: Session, reward_id: str, member_id: str, since: datetime | None = None) -> int:
    query = select(func.coalesce(func.sum(RewardRedemption.quantity), 0)).where(
        RewardRedemption.reward_id == reward_id, RewardRedemption.member_id == member_id,
        RewardRedemption.status == "completed")
    if since is not None:
        query = query.where(RewardRedemption.redeemed_at >= since)
    return int(session.scalar(query) or 0)


def _check_limits(session: Session, workspace: Workspace, reward: Reward, member_id: str, quantity: int,
                  now: datetime) -> None:
    """The per-member limits, counted under the member's lock (cancelled redemptions do not count)."""
    if reward.per_member_limit is not None:
        redeemed = _redeemed_units(session, reward.id, member_id)
        if redeemed + quantity > reward.per_member_limit:
            raise RewardLimitReached(reward.code, member_id, reward.per_member_limit, "total", redeemed)
    if reward.period_limit is not None and reward.limit_period is not None:
        since = period_start(now, reward.limit_period, points.zone_of(workspace))
        redeemed = _redeemed_units(session, reward.id, member_id, since)
        if redeemed + quantity > reward.period_limit:
            raise RewardLimitReached(reward.code, member_id, reward.period_limit, reward.limit_period, redeemed)


def _deliver(session: Session, workspace: Workspace, reward: Reward, redemption: RewardRedemption, key: str,
             now: datetime) -> None:
    """Issue the coupons or grant the benefit the reward gives; the coupon template's own stock and limit
    answer as the reward's."""
    if reward.kind == "coupon":
        assert reward.coupon_template_id is not None
        issued: list[str] = []
        for unit in range(1, redemption.quantity + 1):
            try:
                issued.append(coupons.issue_coupon(session, workspace.id, reward.coupon_template_id,
                                                   redemption.member_id, f"reward:{key}:{unit}", now=now).coupon.id)
            except CouponSoldOut:
                raise RewardOutOfStock(reward.code, redemption.quantity, unit - 1) from None
            except CouponIssueLimitReached as exc:
                raise RewardLimitReached(reward.code, redemption.member_id, exc.facts["limit"], "coupon template",
                                         exc.facts["limit"]) from None
            except CouponTemplateUnavailable:
                raise RewardNotAvailable(reward.code, "coupon_template_unavailable") from None
        redemption.coupon_ids = issued
    elif reward.kind == "benefit":
        definition = session.get(BenefitDefinition, reward.benefit_id)
        assert definition is not None
        granted = benefits.grant_benefit(session, workspace.id, redemption.member_id, definition,
                                         reward.benefit_quantity * redemption.quantity, f"reward:{reward.code}"[:64],
                                         f"reward:{key}", now=now)
        if granted.is_replay:
            raise IdempotencyKeyReused(key)
        redemption.benefit_grant_id = granted.grant.id


# --- reading --------------------------------------------------------------------------------------------


def member_redemptions(session: Session, workspace_id: str, member_id: str, *,
                       limit: int = 100) -> Sequence[RewardRedemption]:
    """The member's reward redemptions, newest first."""
    member = get_member(session, workspace_id, member_id)
    return session.scalars(select(RewardRedemption).where(RewardRedemption.workspace_id == workspace_id,
                                                          RewardRedemption.member_id == member.id)
                           .order_by(RewardRedemption.redeemed_at.desc(), RewardRedemption.id.desc())
                           .limit(limit)).all()


def redemption_views(session: Session, redemptions: Sequence[RewardRedemption]) -> list[RewardRedemptionOut]:
    """Redemptions with their reward's code, name and kind and the codes of the coupons they issued."""
    reward_ids = {r.reward_id for r in redemptions}
    rewards = {r.id: r for r in session.scalars(select(Reward).where(Reward.id.in_(reward_ids)))} if reward_ids else {}
    coupon_ids = [c for r in redemptions for c in r.coupon_ids]
    codes = dict(session.execute(select(Coupon.id, Coupon.code).where(Coupon.id.in_(coupon_ids))).all()) \
        if coupon_ids else {}
    return [
        RewardRedemptionOut(
            id=r.id, reward_code=rewards[r.reward_id].code, reward_name=rewards[r.reward_id].name,
            kind=rewards[r.reward_id].kind, reward_version=r.reward_version,  # type: ignore[arg-type]
            member_id=r.member_id, quantity=r.quantity, points=r.points, cash_amount=r.cash_amount,
            currency=r.currency, status=r.status, fulfilment_status=r.fulfilment_status,  # type: ignore[arg-type]
            fulfilment_note=r.fulfilment_note, coupon_codes=[display_code(codes[c]) for c in r.coupon_ids if c in codes],
            benefit_grant_id=r.benefit_grant_id, points_movement_id=r.points_movement_id,
            reversal_movement_id=r.reversal_movement_id, redeemed_at=r.redeemed_at,
            fulfilment_updated_at=r.fulfilment_updated_at, cancelled_at=r.cancelled_at, cancel_reason=r.cancel_reason,
        )
        for r in redemptions
    ]
