"""A membership's life: its term (paid programmes), renewals, cancellation, expiry, and the one notion of
"enrolled".

**One notion of enrolled.** The :class:`~memberops.loyalty.models.Membership` row is the record; a member is
enrolled exactly when their membership's ``status`` is ``active``. ``Member.is_enrolled`` (and
``enrolled_at``) is a copy of that answer for the tables that read members (search, KPIs): every loyalty
write that changes a membership sets it in the same transaction (:func:`keep_in_step`), and the daily
membership job repairs what other paths flagged (:func:`memberops.loyalty.enrolment.sync_enrolment`).

**Paid terms.** A paid join or renewal records a :class:`MembershipTerm` row with the fee and the payment
reference, which is its idempotency key: a replayed reference answers the first outcome. A renewal made
while the membership is still running (or in its grace days) starts where the current term ends, so
nothing is lost by renewing early; one made later starts a fresh term now. A member earns while the
membership is ``active`` and the order falls before the term's end plus the grace days.

**Cancellation.** ``cancellation_refund: pro_rata`` ends the membership at once and refunds the unused part
of every fee paid; ``none`` stops renewal and keeps the membership until its term ends, when the daily job
marks it ``cancelled``. Free and spend-threshold memberships have no term: a cancellation ends them at once.

Every change locks the membership row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serialises writers),
so a renewal and a cancellation of one member queue instead of interleaving.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.db.dialect import locked
from memberops.identity.models import Member
from memberops.loyalty.errors import (
    MemberNotEnrolled,
    MembershipNotActive,
    MembershipNotRenewable,
    PaymentReferenceReused,
    PaymentRequired,
)
from memberops.loyalty.ledger import add_months
from memberops.loyalty.models import LoyaltyEvent, Membership, MembershipTerm
from memberops.loyalty.programme import Programme
from memberops.loyalty.programmes import active_programme

ACTIVE, EXPIRED, CANCELLED = "active", "expired", "cancelled"
STATUSES = (ACTIVE, EXPIRED, CANCELLED)  # best first: a merge keeps the better of two memberships
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Payment:
    """A payment for a join or renewal; ``reference`` (the payment system's id) is its idempotency key."""

    amount: Decimal
    reference: str
    currency: str | None = None


@dataclass(frozen=True)
class MembershipChange:
    """A renewal's or cancellation's outcome; ``is_replay`` when it had been done before (nothing changed)."""

    membership: Membership
    term: MembershipTerm | None
    is_replay: bool


# --- rules ------------------------------------------------------------------------------------------------


def fee_currency(programme: Programme) -> str:
    paid = programme.enrolment.paid
    return paid.currency if paid is not None and paid.currency else programme.currency


def lapses_at(programme: Programme, membership: Membership) -> datetime | None:
    """When the membership stops earning: its term's end plus the grace days (none after a cancellation);
    ``None`` for an open-ended (free or spend-threshold) membership."""
    if membership.ends_at is None:
        return None
    if membership.cancelled_at is not None:
        return membership.ends_at
    paid = programme.enrolment.paid
    return membership.ends_at + timedelta(days=paid.grace_days if paid is not None else 0)


def is_earning(programme: Programme, membership: Membership, at: datetime) -> bool:
    """Whether an order placed at ``at`` earns: the membership is active and ``at`` is before it lapses."""
    if membership.status != ACTIVE:
        return False
    end = lapses_at(programme, membership)
    return end is None or at < end


def term_end(starts_at: datetime, months: int) -> datetime:
    """``months`` calendar months after ``starts_at`` (clamped to the month's last day), same time of day."""
    return datetime.combine(add_months(starts_at.date(), months), starts_at.timetz())


def check_payment(programme: Programme, payment: Payment | None) -> None:
    """Raise :class:`PaymentRequired` unless ``payment`` covers the fee in the fee's currency."""
    paid = programme.enrolment.paid
    assert paid is not None
    currency = fee_currency(programme)
    if payment is None:
        raise PaymentRequired(paid.fee, currency)
    if payment.currency is not None and payment.currency != currency:
        raise PaymentRequired(paid.fee, currency, payment.amount, payment.currency)
    if payment.amount < paid.fee:
        raise PaymentRequired(paid.fee, currency, payment.amount)


def pro_rata_refund(terms: Sequence[MembershipTerm], at: datetime) -> Decimal:
    """The unused part of every fee paid for time after ``at``, rounded down to the cent."""
    refund = Decimal(0)
    for term in terms:
        if term.kind == "cancellation" or term.fee <= 0 or term.ends_at <= at:
            continue
        length = (term.ends_at - term.starts_at).total_seconds()
        unused = (term.ends_at - max(term.starts_at, at)).total_seconds()
        if length > 0:
            refund += term.fee * Decimal(str(unused)) / Decimal(str(length))
    return refund.quantize(CENT, rounding=ROUND_DOWN)


# --- reading ----------------------------------------------------------------------------------------------


def membership_of(session: Session, workspace_id: str, member_id: str) -> Membership | None:
    return session.scalar(select(Membership).where(
        Membership.workspace_id == workspace_id, Membership.member_id == member_id))


def terms_of(session: Session, membership_id: int) -> Sequence[MembershipTerm]:
    return session.scalars(select(MembershipTerm).where(MembershipTerm.membership_id == membership_id)
                           .order_by(MembershipTerm.id)).all()


def get_membership(session: Session, workspace_id: str, member_id: str) -> Membership:
    membership = membership_of(session, workspace_id, member_id)
    if membership is None:
        raise MemberNotEnrolled(member_id)
    return membership


def _locked_membership(session: Session, workspace_id: str, member_id: str) -> Membership:
    membership = session.scalar(locked(select(Membership).where(
        Membership.workspace_id == workspace_id, Membership.member_id == member_id))
        .execution_options(populate_existing=True))
    if membership is None:
        raise MemberNotEnrolled(member_id)
    return membership


# --- writing ----------------------------------------------------------------------------------------------


def keep_in_step(session: Session, membership: Membership) -> None:
    """Copy the membership's answer to ``Member.is_enrolled`` / ``enrolled_at`` (see the module docstring)."""
    member = session.get(Member, membership.member_id)
    if member is None:
        return
    is_enrolled = membership.status == ACTIVE
    if member.is_enrolled != is_enrolled:
        member.is_enrolled = is_enrolled
    if member.enrolled_at != membership.enrolled_at:
        member.enrolled_at = membership.enrolled_at


def _event(session: Session, membership: Membership, type_: str, at: datetime, **payload: object) -> None:
    session.add(LoyaltyEvent(workspace_id=membership.workspace_id, member_id=membership.member_id, type=type_,
                             occurred_at=at, payload=payload))


def _replayed_term(session: Session, workspace_id: str, key: str, *, member_id: str, kind: str,
                   amount: Decimal | None) -> MembershipTerm | None:
    term = session.scalar(select(MembershipTerm).where(MembershipTerm.workspace_id == workspace_id,
                                                       MembershipTerm.idempotency_key == key))
    if term is None:
        return None
    if term.member_id != member_id or term.kind != kind or (amount is not None and term.fee != amount):
        raise PaymentReferenceReused(key.removeprefix("payment:"))
    return term


def add_term(
    session: Session, programme: Programme, membership: Membership, *, kind: str, starts_at: datetime,
    payment: Payment | None, now: datetime,
) -> MembershipTerm:
    """Record a paid term of ``kind`` (``join`` | ``renewal``) from ``starts_at`` and extend the membership to
    its end. Without a payment (a member a channel declared, an import) the term is recorded with no fee.
    Raises :class:`PaymentReferenceReused` when the reference paid for something else."""
    paid = programme.enrolment.paid
    assert paid is not None
    key = f"payment:{payment.reference}" if payment is not None else f"{kind}:{membership.id}:{starts_at.isoformat()}"
    _replayed_term(session, membership.workspace_id, key, member_id=membership.member_id, kind=kind,
                   amount=payment.amount if payment is not None else Decimal(0))  # raises when used elsewhere
    term = MembershipTerm(
        workspace_id=membership.workspace_id, membership_id=membership.id, member_id=membership.member_id, kind=kind,
        starts_at=starts_at, ends_at=term_end(starts_at, paid.term_months),
        fee=payment.amount if payment is not None else Decimal(0), refund=Decimal(0), currency=fee_currency(programme),
        payment_reference=payment.reference if payment is not None else "", idempotency_key=key, created_at=now)
    session.add(term)
    membership.ends_at = term.ends_at
    session.flush()
    return term


def renew(session: Session, workspace: Workspace, member_id: str, payment: Payment, *,
          now: datetime | None = None) -> MembershipChange:
    """Renew a paid membership with ``payment``: from the current term's end when it is still running or in
    its grace days, else from now (the membership is active again either way). A replayed payment reference
    answers the first renewal and changes nothing.

    Raises :class:`MemberNotEnrolled`, :class:`MembershipNotRenewable` (the programme is not paid),
    :class:`PaymentRequired` (short, or another currency) and :class:`PaymentReferenceReused`."""
    now = now or utcnow()
    programme = active_programme(session, workspace.id).programme
    membership = _locked_membership(session, workspace.id, member_id)
    replay = _replayed_term(session, workspace.id, f"payment:{payment.reference}", member_id=member_id,
                            kind="renewal", amount=payment.amount)
    if replay is not None:
        return MembershipChange(membership, replay, True)
    if programme.enrolment.mode != "paid":
        raise MembershipNotRenewable(member_id, programme.enrolment.mode)
    check_payment(programme, payment)
    end = lapses_at(programme, membership)
    # still running (or in its grace days): the new term follows on, so renewing early loses nothing
    starts_at = membership.ends_at if (membership.status == ACTIVE and membership.ends_at is not None
                                       and end is not None and now < end) else now
    term = add_term(session, programme, membership, kind="renewal", starts_at=starts_at, payment=payment, now=now)
    membership.status = ACTIVE
    membership.cancelled_at = None
    keep_in_step(session, membership)
    _event(session, membership, "membership_renewed", now, ends_at=term.ends_at.isoformat(), fee=str(term.fee))
    session.flush()
    return MembershipChange(membership, term, False)


def cancel(session: Session, workspace: Workspace, member_id: str, *, reason: str = "",
           now: datetime | None = None) -> MembershipChange:
    """Cancel the membership (see the module docstring for when it ends and what is refunded). Cancelling
    again answers the first cancellation (``is_replay``) and changes nothing; an expired membership raises
    :class:`MembershipNotActive`."""
    now = now or utcnow()
    programme = active_programme(session, workspace.id).programme
    membership = _locked_membership(session, workspace.id, member_id)
    if membership.cancelled_at is not None or membership.status == CANCELLED:
        last = session.scalar(select(MembershipTerm).where(
            MembershipTerm.membership_id == membership.id, MembershipTerm.kind == "cancellation")
            .order_by(MembershipTerm.id.desc()).limit(1))
        return MembershipChange(membership, last, True)
    if membership.status != ACTIVE:
        raise MembershipNotActive(member_id, membership.status)
    paid = programme.enrolment.paid
    at_term_end = (membership.ends_at is not None and membership.ends_at > now
                   and (paid is None or paid.cancellation_refund == "none"))
    refund = Decimal(0) if at_term_end else pro_rata_refund(terms_of(session, membership.id), now)
    term = MembershipTerm(
        workspace_id=workspace.id, membership_id=membership.id, member_id=member_id, kind="cancellation",
        starts_at=now, ends_at=max(membership.ends_at or now, now), fee=Decimal(0), refund=refund,
        currency=fee_currency(programme), payment_reference=reason[:200],
        idempotency_key=f"cancel:{membership.id}:{now.isoformat()}", created_at=now)
    session.add(term)
    membership.cancelled_at = now
    membership.auto_renew = False
    if not at_term_end:
        membership.status = CANCELLED
        membership.ends_at = now
    keep_in_step(session, membership)
    _event(session, membership, "membership_cancelled", now, refund=str(refund), at_term_end=at_term_end)
    session.flush()
    return MembershipChange(membership, term, False)


@dataclass(frozen=True)
class MembershipRun:
    as_of: datetime
    expired: int
    cancelled: int
    renewals_requested: int


def expire_memberships(session: Session, workspace: Workspace, *, as_of: datetime | None = None) -> MembershipRun:
    """The daily membership run as of ``as_of``: a ``membership_renewal_due`` event (once per term) for
    auto-renewing memberships whose term has ended, for the payment system to renew them; memberships past
    their term and grace days become ``expired``, those cancelled at term end ``cancelled``; the members stop
    being enrolled (and earning). Running it again as of the same time changes nothing."""
    as_of = as_of or utcnow()
    programme = active_programme(session, workspace.id).programme
    paid = programme.enrolment.paid
    grace = timedelta(days=paid.grace_days if paid is not None else 0)
    running = (Membership.workspace_id == workspace.id, Membership.status == ACTIVE, Membership.ends_at.is_not(None))
    due = session.scalars(select(Membership).where(
        *running, Membership.auto_renew.is_(True), Membership.cancelled_at.is_(None), Membership.ends_at <= as_of,
        (Membership.renewal_requested_for.is_(None)) | (Membership.renewal_requested_for != Membership.ends_at),
    ).order_by(Membership.id)).all()
    for membership in due:
        assert membership.ends_at is not None
        membership.renewal_requested_for = membership.ends_at
        _event(session, membership, "membership_renewal_due", as_of, ends_at=membership.ends_at.isoformat())
    lapsed = session.scalars(select(Membership).where(
        *running, ((Membership.cancelled_at.is_(None)) & (Membership.ends_at <= as_of - grace))
        | ((Membership.cancelled_at.is_not(None)) & (Membership.ends_at <= as_of)),
    ).order_by(Membership.id)).all()
    counts = {EXPIRED: 0, CANCELLED: 0}
    for membership in lapsed:
        membership.status = CANCELLED if membership.cancelled_at is not None else EXPIRED
        counts[membership.status] += 1
        _event(session, membership, f"membership_{membership.status}", as_of,
               ends_at=membership.ends_at.isoformat() if membership.ends_at else None)
    if lapsed:
        session.execute(update(Member).where(Member.id.in_([m.member_id for m in lapsed]))
                        .values(is_enrolled=False).execution_options(synchronize_session="fetch"))
    session.flush()
    return MembershipRun(as_of, counts[EXPIRED], counts[CANCELLED], len(due))
