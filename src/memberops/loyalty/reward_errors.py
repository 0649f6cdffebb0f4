"""Rewards catalogue errors, each with a stable ``code``; ``api/errors.py`` maps them to statuses.

``insufficient_points`` and ``idempotency_key_reused`` are the ledger's own
(:mod:`memberops.loyalty.errors`)."""

from __future__ import annotations

from memberops.errors import Conflict, Invalid, NotFound


class RewardNotFound(NotFound):
    code = "reward_not_found"

    def __init__(self, reward: str) -> None:
        super().__init__(f"no reward {reward}", reward=reward)


class RewardExists(Conflict):
    code = "reward_exists"

    def __init__(self, reward: str) -> None:
        super().__init__(f"a reward {reward} exists already", reward=reward)


class InvalidReward(Invalid):
    code = "invalid_reward"

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, field=field)


class RewardNotAvailable(Conflict):
    """The reward cannot be redeemed by this member now; ``reason``: ``inactive``, ``not_yet_valid``,
    ``ended`` or ``tier`` (the member's tier is not among the reward's)."""

    code = "reward_not_available"

    def __init__(self, reward: str, reason: str, **facts: object) -> None:
        super().__init__(f"reward {reward} cannot be redeemed: {reason.replace('_', ' ')}", reward=reward,
                         reason=reason, **facts)
        self.reason = reason


class RewardOutOfStock(Conflict):
    code = "reward_out_of_stock"

    def __init__(self, reward: str, requested: int, remaining: int) -> None:
        super().__init__(f"reward {reward} has {remaining} left, {requested} requested", reward=reward,
                         requested=requested, remaining=remaining)


class RewardLimitReached(Conflict):
    """The member has redeemed as many units as the reward allows (``period``: ``total`` or the period)."""

    code = "reward_limit_reached"

    def __init__(self, reward: str, member_id: str, limit: int, period: str, redeemed: int) -> None:
        super().__init__(f"the member may redeem {limit} of {reward} ({period}) and has redeemed {redeemed}",
                         reward=reward, member_id=member_id, limit=limit, period=period, redeemed=redeemed)


class RewardRedemptionNotFound(NotFound):
    code = "reward_redemption_not_found"

    def __init__(self, redemption_id: str) -> None:
        super().__init__(f"no reward redemption {redemption_id}", redemption_id=redemption_id)


class RewardRedemptionNotCancellable(Conflict):
    """What the redemption gave has been used (the coupon redeemed, the benefit consumed) or the item has
    left the store (shipped, collected)."""

    code = "reward_redemption_not_cancellable"

    def __init__(self, redemption_id: str, reason: str) -> None:
        super().__init__(f"the redemption cannot be cancelled: {reason}", redemption_id=redemption_id, reason=reason)


class FulfilmentNotAllowed(Conflict):
    code = "fulfilment_not_allowed"

    def __init__(self, redemption_id: str, current: str | None, wanted: str) -> None:
        super().__init__(f"fulfilment cannot go from {current or 'none'} to {wanted}", redemption_id=redemption_id,
                         current=current, wanted=wanted)
