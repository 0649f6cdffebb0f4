"""Referrals over HTTP: bind a friend to a referrer's code, a member's referrals, the top referrers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.api.deps import Caller, SessionDep, require_scope
from memberops.api.errors import problem_responses
from memberops.db.base import utcnow
from memberops.identity.errors import MemberNotFound
from memberops.ingest.api import IngestSlot
from memberops.loyalty import referral_reports, referrals
from memberops.loyalty.api import _run
from memberops.loyalty.errors import MemberNotEnrolled
from memberops.loyalty.referral_errors import (
    AlreadyReferred,
    ReferralsDisabled,
    SelfReferral,
    UnknownReferralCode,
)
from memberops.loyalty.referral_schemas import (
    ReferralBindIn,
    ReferralBoundOut,
    ReferralCounts,
    ReferralsOut,
    ReferrerOut,
    binding_out,
)

router = APIRouter(tags=["loyalty"])
AUTH_ERRORS = (AuthenticationFailed, MissingScope)
BIND_ERRORS = (*AUTH_ERRORS, MemberNotFound, MemberNotEnrolled, ReferralsDisabled, UnknownReferralCode,
               AlreadyReferred, SelfReferral)


def _bind(session: SessionDep, caller: Caller, member_id: str, body: ReferralBindIn) -> referrals.Bound:
    return referrals.bind_referral(session, caller.workspace, member_id, body.code, actor=caller.actor)


@router.post("/members/{member_id}/referral", response_model=ReferralBoundOut, status_code=201,
             responses={200: {"description": "this binding existed already (replay)", "model": ReferralBoundOut},
                        **problem_responses(*BIND_ERRORS)})
async def bind_referral(
    member_id: str, body: ReferralBindIn, is_only_writer: IngestSlot, session: SessionDep, response: Response,
    caller: Annotated[Caller, Depends(require_scope("loyalty"))],
) -> ReferralBoundOut:
    """Bind the member (the friend) to the referrer whose code, member card number or `?ref=` link this is.

    The first binding wins: the same binding again answers ``200`` and changes nothing; another referrer
    ``409 already_referred``. ``409 self_referral`` when the referrer is the friend, shares an identifier
    with them (phone, e-mail …) or was referred by them. A referrer at the programme's cap gets the
    binding recorded with ``status: over_cap`` (``is_rewardable: false``); a friend who already bought is
    ``ineligible``."""
    bound = await _run(is_only_writer, _bind, session, caller, member_id, body)
    if bound.is_replay:
        response.status_code = 200
    return ReferralBoundOut(binding=binding_out(bound.binding, utcnow()), is_replay=bound.is_replay)


@router.get("/members/{member_id}/referrals", response_model=ReferralsOut,
            responses=problem_responses(*AUTH_ERRORS, MemberNotFound, MemberNotEnrolled))
def get_referrals(
    member_id: str, session: SessionDep, caller: Annotated[Caller, Depends(require_scope("read"))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ReferralsOut:
    """The member's referral code, who referred them, counts of the friends they referred by status
    (awaiting purchase, pending, rewarded, over the cap, ineligible) and those friends, newest first."""
    now = utcnow()
    summary = referral_reports.referral_summary(session, caller.workspace, member_id, limit=limit, now=now)
    return ReferralsOut(
        member_id=summary.member_id, code=summary.code,
        referred_by=None if summary.referred_by is None else binding_out(summary.referred_by, now),
        counts=ReferralCounts(**summary.counts), points_earned=summary.points_earned,
        friends=[binding_out(binding, now) for binding in summary.friends])


@router.get("/loyalty/referrals", response_model=list[ReferrerOut], responses=problem_responses(*AUTH_ERRORS))
def get_referrers(
    session: SessionDep, caller: Annotated[Caller, Depends(require_scope("read"))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[ReferrerOut]:
    """The referrers with the most friends bound, and what became of those bindings."""
    return [ReferrerOut.model_validate(line, from_attributes=True)
            for line in referral_reports.referrers_report(session, caller.workspace.id, limit=limit)]
