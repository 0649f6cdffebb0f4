"""Loyalty endpoints: enrolment, a member's points (balance, ledger, redeem, adjust), the programme and
the points liability.

Writes that a point of sale makes (enrol, redeem, adjust) queue for the store like live ingestion does
(one writer at a time on SQLite, a few at a time on PostgreSQL; see ``ingest.api._ingest_slot``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.api.deps import Caller, SessionDep, Writer, require_scope, writer
from memberops.api.errors import problem_responses
from memberops.db.base import utcnow
from memberops.identity import service as identity
from memberops.identity.errors import InvalidIdentifier, MemberNotFound
from memberops.identity.schemas import MemberOut
from memberops.ingest.api import IngestSlot
from memberops.ingest.live import customer_attributes
from memberops.loyalty import enrolment, expiry, memberships, points, programmes, tiers
from memberops.loyalty.errors import (
    EnrolmentNeedsIdentifier,
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidProgramme,
    MemberNotEnrolled,
    MembershipNotActive,
    MembershipNotRenewable,
    PaymentReferenceReused,
    PaymentRequired,
    SpendThresholdNotReached,
    UnknownTier,
)
from memberops.loyalty.programme import Programme, programme_document, programme_from_dict
from memberops.loyalty.referral_schemas import ReferralProblemOut, binding_out
from memberops.loyalty.schemas import (
    AdjustIn,
    BalanceOut,
    CancelIn,
    EnrolIn,
    EnrolmentOut,
    LedgerPage,
    LiabilityOut,
    MembershipChangeOut,
    MembershipDetailOut,
    MembershipOut,
    MovementOut,
    MovementResultOut,
    NextTierOut,
    PointsOut,
    RedeemIn,
    RenewIn,
    TermOut,
    TierChangeOut,
    TierOut,
    TierSetIn,
)

router = APIRouter(tags=["loyalty"])
AUTH_ERRORS = (AuthenticationFailed, MissingScope)
LoyaltyCaller = Annotated[Caller, Depends(require_scope("loyalty"))]
ReadCaller = Annotated[Caller, Depends(require_scope("read"))]
AdminCaller = Annotated[Caller, Depends(require_scope("admin"))]
T = TypeVar("T")


async def _run(is_only_writer: bool, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """As the store's only writer (SQLite) in the event loop's thread, else in the threadpool."""
    if is_only_writer:
        return function(*args, **kwargs)
    return await run_in_threadpool(function, *args, **kwargs)


def _member_id(session: SessionDep, caller: Caller, member_id: str) -> str:
    return identity.get_member(session, caller.workspace.id, member_id).id


@router.post(
    "/members", response_model=EnrolmentOut, status_code=201, tags=["members"],
    responses={200: {"description": "already enrolled (idempotent replay)", "model": EnrolmentOut},
               **problem_responses(*AUTH_ERRORS, InvalidIdentifier, EnrolmentNeedsIdentifier, PaymentRequired,
                                   PaymentReferenceReused, SpendThresholdNotReached)},
)
async def enrol_member(
    body: EnrolIn, is_only_writer: IngestSlot, session: SessionDep, response: Response,
    caller: Annotated[Caller, Depends(require_scope("loyalty", "ingest"))],
) -> EnrolmentOut:
    """Enrol a person in the loyalty programme (scope ``loyalty``; ``ingest`` keys are accepted too).

    The person is found by ``channel`` + ``source_id`` or by their identifiers, else created. Enrolling
    the same person again answers ``200`` with the same member and changes nothing. A paid programme needs
    ``payment`` (``422 payment_required`` without it or when it is short); a spend-threshold programme
    enrols only a person whose spend reaches the threshold (``409 spend_threshold_not_reached``). A
    ``referrer_code`` binds the member to that referrer (``referral``); a code refused is told in
    ``referral_problem``.
    """
    payment = None if body.payment is None else memberships.Payment(
        body.payment.amount, body.payment.reference, body.payment.currency)
    enrolled = await _run(
        is_only_writer, enrolment.enrol, session, caller.workspace, channel=body.channel, source_id=body.source_id,
        identifiers=body.identifiers(), attributes=customer_attributes(body), birthday=body.birthday,
        payment=payment,
        referrer_code=body.referrer_code,
    )
    if not enrolled.is_new_enrolment:
        response.status_code = 200
    problem = enrolled.referral_problem
    return EnrolmentOut(
        member_id=enrolled.member.id, member=MemberOut.model_validate(enrolled.member),
        membership=MembershipOut.model_validate(enrolled.membership), is_new_member=enrolled.is_new_member,
        is_duplicate=not enrolled.is_new_enrolment, warnings=list(enrolled.warnings),
        referral=None if enrolled.referral is None else binding_out(enrolled.referral.binding, utcnow()),
        referral_problem=None if problem is None else ReferralProblemOut(code=problem.code, detail=problem.message),
    )


def _membership_detail(session: SessionDep, caller: Caller, membership: Any) -> MembershipDetailOut:
    programme = programmes.active_programme(session, caller.workspace.id).programme
    return MembershipDetailOut(
        **MembershipOut.model_validate(membership).model_dump(), member_id=membership.member_id,
        mode=programme.enrolment.mode, lapses_at=memberships.lapses_at(programme, membership),
        terms=[TermOut.model_validate(t) for t in memberships.terms_of(session, membership.id)])


def _change(session: SessionDep, caller: Caller, change: memberships.MembershipChange) -> MembershipChangeOut:
    return MembershipChangeOut(membership=_membership_detail(session, caller, change.membership),
                               term=None if change.term is None else TermOut.model_validate(change.term),
                               is_replay=change.is_replay)


@router.get("/members/{member_id}/membership", response_model=MembershipDetailOut, tags=["members"],
            responses=problem_responses(*AUTH_ERRORS, MemberNotFound, MemberNotEnrolled))
def get_membership(member_id: str, session: SessionDep, caller: ReadCaller) -> MembershipDetailOut:
    """The member's membership: status, join date, the paid term's end and when it lapses, and every term,
    renewal and cancellation."""
    membership = memberships.get_membership(session, caller.workspace.id, _member_id(session, caller, member_id))
    return _membership_detail(session, caller, membership)


def _renew(session: SessionDep, caller: Caller, member_id: str, body: RenewIn) -> MembershipChangeOut:
    payment = memberships.Payment(body.payment.amount, body.payment.reference, body.payment.currency)
    return _change(session, caller, memberships.renew(session, caller.workspace, _member_id(session, caller, member_id),
                                                      payment))


@router.post("/members/{member_id}/membership/renew", response_model=MembershipChangeOut, tags=["members"],
             responses=problem_responses(*AUTH_ERRORS, MemberNotFound, MemberNotEnrolled, MembershipNotRenewable,
                                         PaymentRequired, PaymentReferenceReused))
async def renew_membership(
    member_id: str, body: RenewIn, is_only_writer: IngestSlot, session: SessionDep, caller: LoyaltyCaller,
) -> MembershipChangeOut:
    """Renew a paid membership: from the current term's end while it runs (or is in its grace days), else
    from now. A replayed ``payment.reference`` answers the first renewal and changes nothing."""
    return await _run(is_only_writer, _renew, session, caller, member_id, body)


def _cancel(session: SessionDep, caller: Caller, member_id: str, body: CancelIn) -> MembershipChangeOut:
    return _change(session, caller, memberships.cancel(session, caller.workspace,
                                                       _member_id(session, caller, member_id), reason=body.reason))


@router.post("/members/{member_id}/membership/cancel", response_model=MembershipChangeOut, tags=["members"],
             responses=problem_responses(*AUTH_ERRORS, MemberNotFound, MemberNotEnrolled, MembershipNotActive))
async def cancel_membership(
    member_id: str, body: CancelIn, is_only_writer: IngestSlot, session: SessionDep, caller: LoyaltyCaller,
) -> MembershipChangeOut:
    """Cancel the membership. ``cancellation_refund: pro_rata`` ends it now and refunds the unused part of
    the fees (``term.refund``); ``none`` keeps it to the end of its term. Cancelling again changes nothing."""
    return await _run(is_only_writer, _cancel, session, caller, member_id, body)


MEMBER_ERRORS = (*AUTH_ERRORS, MemberNotFound, MemberNotEnrolled)


@router.get("/members/{member_id}/points", response_model=PointsOut, responses=problem_responses(*MEMBER_ERRORS))
def get_points(member_id: str, session: SessionDep, caller: ReadCaller) -> PointsOut:
    """The member's available and pending points, what lapses when, and their tier."""
    summary = points.points_summary(session, caller.workspace, _member_id(session, caller, member_id))
    return PointsOut(available=summary.available, pending=summary.pending, debt=summary.debt,
                     expiring=summary.expiring, tier=summary.tier)  # type: ignore[arg-type]


def _tier_out(status: tiers.TierStatus) -> TierOut:
    following = None if status.next_tier is None else NextTierOut(
        tier=status.next_tier, threshold=status.next_threshold, missing=status.missing)  # type: ignore[arg-type]
    return TierOut(tier=status.tier, name=status.name, since=status.since, metric=status.metric,
                   metric_value=status.metric_value, window_start=status.window.start, window_end=status.window.end,
                   next_tier=following, history=[TierChangeOut.model_validate(c) for c in status.history])


@router.get("/members/{member_id}/tier", response_model=TierOut, responses=problem_responses(*MEMBER_ERRORS))
def get_tier(member_id: str, session: SessionDep, caller: ReadCaller) -> TierOut:
    """The member's tier, since when, the qualifying metric in the current window, the next tier and what
    it still needs, and the tier history (newest first)."""
    return _tier_out(tiers.tier_status(session, caller.workspace, _member_id(session, caller, member_id)))


def _set_tier(session: SessionDep, caller: Caller, member_id: str, body: TierSetIn) -> TierOut:
    member = _member_id(session, caller, member_id)
    tiers.set_tier(session, caller.workspace, member, body.tier, reason=body.reason, actor=caller.actor)
    return _tier_out(tiers.tier_status(session, caller.workspace, member))


@router.post("/members/{member_id}/tier", response_model=TierOut,
             responses=problem_responses(*MEMBER_ERRORS, UnknownTier))
async def set_tier(
    member_id: str, body: TierSetIn, is_only_writer: IngestSlot, session: SessionDep, caller: AdminCaller,
) -> TierOut:
    """Set the member's tier by hand (scope ``admin``), with a reason: recorded in the tier history as
    ``manual`` and audited. ``422 unknown_tier`` for a code the programme does not have."""
    return await _run(is_only_writer, _set_tier, session, caller, member_id, body)


@router.get("/members/{member_id}/points/ledger", response_model=LedgerPage,
            responses=problem_responses(*AUTH_ERRORS, MemberNotFound))
def get_ledger(
    member_id: str, session: SessionDep, caller: ReadCaller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, before: Annotated[int | None, Query(ge=1)] = None,
) -> LedgerPage:
    """The member's points movements, newest first; page with ``before``=``next_cursor``."""
    movements = points.ledger_page(session, caller.workspace.id, _member_id(session, caller, member_id),
                                   limit=limit, before=before)
    return LedgerPage(items=[MovementOut.model_validate(m) for m in movements],
                      next_cursor=movements[-1].id if len(movements) == limit else None)


def _movement(result: points.MovementResult) -> MovementResultOut:
    return MovementResultOut(movement=MovementOut.model_validate(result.movement),
                             balance=BalanceOut(**result.balance), is_replay=result.is_replay)


def _redeem(session: Session, caller: Caller, member_id: str, body: RedeemIn) -> MovementResultOut:
    return _movement(points.redeem(session, caller.workspace, member_id, points=body.points, reason=body.reason,
                                   idempotency_key=body.idempotency_key, actor=caller.actor, resolve_member=True))


@router.post("/members/{member_id}/points/redeem", response_model=MovementResultOut,
             responses=problem_responses(*MEMBER_ERRORS, InsufficientPoints, IdempotencyKeyReused))
async def redeem_points(
    member_id: str, body: RedeemIn, write: Annotated[Writer, Depends(writer("loyalty"))],
) -> MovementResultOut:
    """Spend points (nearest to lapsing first). ``409 insufficient_points`` when the available balance is
    smaller; a replayed ``idempotency_key`` answers the first outcome and moves nothing."""
    return await write(_redeem, member_id, body)


def _adjust(session: Session, caller: Caller, member_id: str, body: AdjustIn) -> MovementResultOut:
    return _movement(points.adjust(session, caller.workspace, _member_id(session, caller, member_id),
                                   points=body.points, reason=body.reason, idempotency_key=body.idempotency_key,
                                   actor=caller.actor))


@router.post("/members/{member_id}/points/adjust", response_model=MovementResultOut,
             responses=problem_responses(*MEMBER_ERRORS, InsufficientPoints, IdempotencyKeyReused))
async def adjust_points(
    member_id: str, body: AdjustIn, write: Annotated[Writer, Depends(writer("admin"))],
) -> MovementResultOut:
    """An operator's correction (scope ``admin``): ``+N`` is available at once, ``-N`` takes points away.
    Audited with its reason."""
    return await write(_adjust, member_id, body)


@router.get("/loyalty/programme", responses=problem_responses(*AUTH_ERRORS))
def get_programme(session: SessionDep, caller: ReadCaller) -> dict[str, Any]:
    """The programme in force and its version."""
    active = programmes.active_programme(session, caller.workspace.id)
    return {"version": active.version, "programme": programme_document(active.programme)}


@router.put("/loyalty/programme", responses=problem_responses(*AUTH_ERRORS, InvalidProgramme))
def put_programme(body: dict[str, Any], session: SessionDep, caller: AdminCaller) -> dict[str, Any]:
    """Replace the programme (scope ``admin``): validated, saved as a new version, audited."""
    programme: Programme = programme_from_dict(body)
    active = programmes.save_programme(session, caller.workspace, programme, actor=caller.actor)
    return {"version": active.version, "programme": programme_document(active.programme)}


@router.get("/loyalty/liability", response_model=LiabilityOut, responses=problem_responses(*AUTH_ERRORS))
def get_liability(session: SessionDep, caller: ReadCaller) -> LiabilityOut:
    """Outstanding points × point value, by the month they lapse in."""
    report = expiry.points_liability(session, caller.workspace)
    return LiabilityOut.model_validate(report, from_attributes=True)
