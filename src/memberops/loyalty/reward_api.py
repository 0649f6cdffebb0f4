"""The rewards catalogue over HTTP: rewards (``/rewards``), a member's redemptions and redeeming
(``/members/{member_id}/rewards…``), cancelling and fulfilling a redemption (``/reward-redemptions/{id}…``).

Redeem and cancel queue for the store like the points endpoints do (``loyalty.api``): one writer at a time
on SQLite, a few at a time on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.api.deps import Caller, SessionDep, require_scope
from memberops.api.errors import problem_responses
from memberops.identity.errors import MemberNotFound
from memberops.ingest.api import IngestSlot
from memberops.loyalty import reward_fulfilment, rewards
from memberops.loyalty.coupon_api import require_any_scope
from memberops.loyalty.errors import IdempotencyKeyReused, InsufficientPoints, MemberNotEnrolled
from memberops.loyalty.reward_errors import (
    FulfilmentNotAllowed,
    InvalidReward,
    RewardExists,
    RewardLimitReached,
    RewardNotAvailable,
    RewardNotFound,
    RewardOutOfStock,
    RewardRedemptionNotCancellable,
    RewardRedemptionNotFound,
)
from memberops.loyalty.reward_schemas import (
    CancelRedemptionIn,
    CancelRedemptionOut,
    FulfilmentIn,
    RedeemRewardIn,
    RedeemRewardOut,
    RewardIn,
    RewardOut,
    RewardRedemptionOut,
    RewardRedemptionPage,
)
from memberops.loyalty.schemas import BalanceOut

router = APIRouter(tags=["rewards"])
AUTH_ERRORS = (AuthenticationFailed, MissingScope)
LoyaltyCaller = Annotated[Caller, Depends(require_scope("loyalty"))]
AdminCaller = Annotated[Caller, Depends(require_scope("admin"))]
ReaderCaller = Annotated[Caller, Depends(require_any_scope("loyalty", "read"))]
T = TypeVar("T")


async def _run(is_only_writer: bool, function: Callable[..., T], *args: Any) -> T:
    """As the store's only writer (SQLite) in the event loop's thread, else in the threadpool."""
    if is_only_writer:
        return function(*args)
    return await run_in_threadpool(function, *args)


# --- the catalogue --------------------------------------------------------------------------------------


@router.get("/rewards", response_model=list[RewardOut], responses=problem_responses(*AUTH_ERRORS))
def list_rewards(session: SessionDep, caller: ReaderCaller,
                 active_only: Annotated[bool, Query(description="only rewards that are active")] = False,
                 ) -> list[RewardOut]:
    """The catalogue, by code, with the stock left."""
    return [rewards.reward_view(session, r) for r in rewards.list_rewards(session, caller.workspace.id,
                                                                         active_only=active_only)]


@router.post("/rewards", response_model=RewardOut, status_code=201,
             responses=problem_responses(*AUTH_ERRORS, RewardExists, InvalidReward))
def create_reward(body: RewardIn, session: SessionDep, caller: AdminCaller) -> RewardOut:
    """A new reward (version 1, audited)."""
    return rewards.reward_view(session, rewards.create_reward(session, caller.workspace, body, actor=caller.actor))


@router.get("/rewards/{code}", response_model=RewardOut, responses=problem_responses(*AUTH_ERRORS, RewardNotFound))
def get_reward(code: str, session: SessionDep, caller: ReaderCaller) -> RewardOut:
    return rewards.reward_view(session, rewards.get_reward(session, caller.workspace.id, code))


@router.put("/rewards/{code}", response_model=RewardOut,
            responses=problem_responses(*AUTH_ERRORS, RewardNotFound, InvalidReward))
def put_reward(code: str, body: RewardIn, session: SessionDep, caller: AdminCaller) -> RewardOut:
    """Replace a reward's definition (audited): a change makes a new version; redemptions keep theirs.
    ``is_active: false`` stops redemptions; the stock never drops below what was redeemed."""
    return rewards.reward_view(session, rewards.update_reward(session, caller.workspace, code, body,
                                                              actor=caller.actor))


# --- redeeming ------------------------------------------------------------------------------------------


def _redeem(session: SessionDep, caller: Caller, member_id: str, reward_code: str, body: RedeemRewardIn,
            response: Response) -> RedeemRewardOut:
    done = rewards.redeem_reward(session, caller.workspace, member_id, reward_code, quantity=body.quantity,
                                 idempotency_key=body.idempotency_key, actor=caller.actor)
    if done.is_replay:
        response.status_code = 200
    return RedeemRewardOut(redemption=rewards.redemption_views(session, [done.redemption])[0],
                           balance=BalanceOut(**done.balance), is_replay=done.is_replay)


@router.post("/members/{member_id}/rewards/{reward_code}/redeem", response_model=RedeemRewardOut, status_code=201,
             responses={200: {"description": "a replay of the idempotency key: the redemption made then"},
                        **problem_responses(*AUTH_ERRORS, MemberNotFound, RewardNotFound, MemberNotEnrolled,
                                            InsufficientPoints, RewardOutOfStock, RewardLimitReached,
                                            RewardNotAvailable, IdempotencyKeyReused)})
async def redeem_reward(member_id: str, reward_code: str, body: RedeemRewardIn, is_only_writer: IngestSlot,
                        session: SessionDep, caller: LoyaltyCaller, response: Response) -> RedeemRewardOut:
    """Redeem a reward for points (and its cash part, which the caller collects): points taken nearest to
    lapsing first, stock taken, the coupon issued or the benefit granted — all or nothing. 409 with
    ``insufficient_points``, ``reward_out_of_stock``, ``reward_limit_reached`` or ``reward_not_available``
    (``facts.reason``: inactive, not_yet_valid, ended, tier); a replayed ``idempotency_key`` answers 200 with
    the first redemption and moves nothing."""
    return await _run(is_only_writer, _redeem, session, caller, member_id, reward_code, body, response)


@router.get("/members/{member_id}/rewards", response_model=RewardRedemptionPage,
            responses=problem_responses(*AUTH_ERRORS, MemberNotFound))
def member_rewards(member_id: str, session: SessionDep, caller: ReaderCaller,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> RewardRedemptionPage:
    """The member's reward redemptions, newest first."""
    return RewardRedemptionPage(items=rewards.redemption_views(
        session, rewards.member_redemptions(session, caller.workspace.id, member_id, limit=limit)))


@router.get("/reward-redemptions/{redemption_id}", response_model=RewardRedemptionOut,
            responses=problem_responses(*AUTH_ERRORS, RewardRedemptionNotFound))
def get_redemption(redemption_id: str, session: SessionDep, caller: ReaderCaller) -> RewardRedemptionOut:
    return rewards.redemption_views(session, [reward_fulfilment.get_redemption(session, caller.workspace.id, redemption_id)])[0]


def _cancel(session: SessionDep, caller: Caller, redemption_id: str, body: CancelRedemptionIn) -> CancelRedemptionOut:
    done = reward_fulfilment.cancel_redemption(session, caller.workspace, redemption_id, reason=body.reason, actor=caller.actor)
    return CancelRedemptionOut(redemption=rewards.redemption_views(session, [done.redemption])[0],
                               points_returned=done.points_returned, is_replay=done.is_replay)


@router.post("/reward-redemptions/{redemption_id}/cancel", response_model=CancelRedemptionOut,
             responses=problem_responses(*AUTH_ERRORS, RewardRedemptionNotFound, RewardRedemptionNotCancellable))
async def cancel_redemption(redemption_id: str, body: CancelRedemptionIn, is_only_writer: IngestSlot,
                            session: SessionDep, caller: LoyaltyCaller) -> CancelRedemptionOut:
    """Cancel a redemption (scope ``loyalty`` or ``admin``; audited): points back through a reversal in the
    ledger, units back to the stock, an unused coupon voided, an unused benefit grant ended. Cancelling
    again answers the same; 409 ``reward_redemption_not_cancellable`` once the coupon or benefit was used
    or the item shipped or collected."""
    return await _run(is_only_writer, _cancel, session, caller, redemption_id, body)


@router.post("/reward-redemptions/{redemption_id}/fulfilment", response_model=RewardRedemptionOut,
             responses=problem_responses(*AUTH_ERRORS, RewardRedemptionNotFound, FulfilmentNotAllowed))
def fulfil_redemption(redemption_id: str, body: FulfilmentIn, session: SessionDep,
                      caller: LoyaltyCaller) -> RewardRedemptionOut:
    """Record an item's fulfilment (scope ``loyalty`` or ``admin``; audited): ``pending`` → ``shipped`` →
    ``collected``, or straight to ``collected``; the status it already has answers unchanged."""
    redemption = reward_fulfilment.set_fulfilment(session, caller.workspace.id, redemption_id, body.status, note=body.note,
                                        actor=caller.actor)
    return rewards.redemption_views(session, [redemption])[0]
