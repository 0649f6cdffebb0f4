"""Enrolment: a person joins the programme, by the programme's ``enrolment.mode``.

- ``free``: ``POST /api/v1/members`` enrols.
- ``paid``: the same request with a ``payment`` covering the fee opens the first term
  (:mod:`memberops.loyalty.memberships` keeps terms, renewals, cancellation and expiry).
- ``spend_threshold``: a known person is enrolled by the live order that brings their counted spend in the
  window to the threshold (:func:`join_by_spend`, called by the order hook); the request enrols only a
  person whose spend already reaches it.

The person is resolved through OneID's live path (:func:`memberops.identity.service.resolve_customer`),
then a :class:`Membership` and the member's points account are recorded, with the welcome gift: points,
and optionally a coupon and a benefit, each under the key ``welcome:<member id>`` so it is given once per
member, however often they join. Enrolling a person whose membership is active returns the same member
and membership and changes nothing; a person whose membership expired or was cancelled joins again (a
new paid term; no second welcome gift).

Joining locks the member row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serialises writers) and reads
the membership again under it, so two orders crossing the spend threshold at once enrol the member once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.db.dialect import insert_many, locked_parent, reserve_ids
from memberops.errors import DomainError
from memberops.identity.models import Member
from memberops.identity.normalise import IDENTIFIER_TYPES, normalise_identifier
from memberops.identity.service import resolve_customer
from memberops.ingest.models import LiveOrder
from memberops.loyalty import event_earning, ledger, memberships, points
from memberops.loyalty.errors import EnrolmentNeedsIdentifier, SpendThresholdNotReached
from memberops.loyalty.memberships import ACTIVE, Payment, membership_of
from memberops.loyalty.models import LoyaltyEvent, Membership, PointsAccount, PointsLot, PointsMovement
from memberops.loyalty.programme import SpendThreshold
from memberops.loyalty.programmes import ActiveProgramme, active_programme
from memberops.loyalty.referral_models import ReferralCode
from memberops.loyalty.referrals import Bound, bind_referral, ensure_referral_code, new_referral_code

__all__ = ["Enrolled", "Joining", "enrol", "ensure_membership", "ensure_memberships", "join_by_spend", "membership_of", "record_channel_enrolment",
           "sync_enrolment"]


@dataclass(frozen=True)
class Enrolled:
    member: Member
    membership: Membership
    is_new_member: bool
    is_new_record: bool
    is_new_enrolment: bool
    warnings: tuple[str, ...] = field(default=())  # a welcome coupon or benefit that could not be given
    referral: Bound | None = None  # the friend's binding to ``referrer_code``, when one was given
    referral_problem: DomainError | None = None  # why ``referrer_code`` was not bound (the enrolment stands)


def enrolment_source_id(identifiers: Mapping[str, str | None]) -> str:
    """The customer record an enrolment without a channel ``source_id`` files under: a digest of its
    strongest identifier, so enrolling the same person twice finds the same record (and no identifier is
    written out in clear as a key)."""
    for type_ in IDENTIFIER_TYPES:
        raw = identifiers.get(type_)
        value = normalise_identifier(type_, raw) if raw else None
        if value:
            return "enrol-" + hashlib.sha256(f"{type_}:{value}".encode()).hexdigest()[:40]
    raise EnrolmentNeedsIdentifier()


def _lock_member(session: Session, member_id: str) -> Member:
    member = session.scalar(locked_parent(select(Member).where(Member.id == member_id))
                            .execution_options(populate_existing=True))
    assert member is not None
    return member


def enrol(
    session: Session, workspace: Workspace, *, channel: str, source_id: str | None,
    identifiers: Mapping[str, str | None], attributes: Mapping[str, Any] | None = None,
    birthday: date | None = None, payment: Payment | None = None, referrer_code: str | None = None,
    now: datetime | None = None,
) -> Enrolled:
    """Enrol the person these identifiers (or this channel record) belong to; idempotent per person.

    Raises :class:`~memberops.loyalty.errors.PaymentRequired` when the programme is paid and ``payment`` is
    missing or short, :class:`SpendThresholdNotReached` when members join by spending and this person has not
    spent enough yet. With ``referrer_code`` the member is then bound to that referrer
    (:func:`referrals.bind_referral`); a code refused (unknown, self-referral, already referred, referrals
    off) leaves the enrolment made and says why in ``referral_problem``."""
    now = now or utcnow()
    resolution = resolve_customer(
        session, workspace, channel=channel, source_id=source_id or enrolment_source_id(identifiers),
        identifiers=identifiers, attributes=attributes,
    )
    member = _lock_member(session, resolution.member.id)
    membership = membership_of(session, workspace.id, member.id)
    if membership is not None and membership.status == ACTIVE:
        if resolution.is_new_record:  # a member's new record may complete their profile
            event_earning.earn_if_profile_complete(session, workspace, member.id, now=now)
        return _referred(session, workspace, referrer_code, now, Enrolled(
            member, membership, resolution.is_new_member, resolution.is_new_record, False))
    programme = active_programme(session, workspace.id)
    rules = programme.programme.enrolment
    if rules.mode == "paid":
        memberships.check_payment(programme.programme, payment)
    elif rules.mode == "spend_threshold":
        assert rules.spend_threshold is not None
        spend = counted_spend(session, workspace.id, member.id, rules.spend_threshold, until=now)
        if spend < rules.spend_threshold.amount:
            raise SpendThresholdNotReached(spend, rules.spend_threshold.amount, rules.spend_threshold.window_days)
    membership, warnings = _join(session, workspace, member, programme, existing=membership, channel=channel, now=now,
                                 birth_month=birthday.month if birthday else None, payment=payment)
    event_earning.earn_if_profile_complete(session, workspace, member.id, now=now)
    return _referred(session, workspace, referrer_code, now, Enrolled(
        member, membership, resolution.is_new_member, resolution.is_new_record, True, warnings))


def _referred(session: Session, workspace: Workspace, referrer_code: str | None, now: datetime,
              enrolled: Enrolled) -> Enrolled:
    if not referrer_code:
        return enrolled
    try:
        referral = bind_referral(session, workspace, enrolled.member.id, referrer_code, source="enrolment", now=now)
    except DomainError as exc:  # decided before anything was written
        return replace(enrolled, referral_problem=exc)
    return replace(enrolled, referral=referral)


def ensure_membership(
    session: Session, workspace: Workspace, member: Member, *, channel: str, now: datetime,
    birth_month: int | None = None,
) -> Membership:
    """The member's membership, recorded (with the points account and the welcome gift) if missing: for a
    member a channel or an import declared enrolled. In a paid programme their first term is recorded
    without a fee (the channel vouches for it) and lapses like any other."""
    existing = membership_of(session, workspace.id, member.id)
    if existing is not None:
        return existing
    membership, _ = _join(session, workspace, member, active_programme(session, workspace.id), existing=None,
                          channel=channel, now=now, birth_month=birth_month, payment=None)
    return membership


@dataclass(frozen=True)
class Joining:
    """A member a channel or an import declared enrolled, as of ``joined_at`` (see :func:`ensure_memberships`)."""

    member_id: str
    joined_at: datetime
    birth_month: int | None = None


def ensure_memberships(session: Session, workspace: Workspace, joinings: Sequence[Joining], *, channel: str) -> int:
    """:func:`ensure_membership` for many members at once, with the same resulting rows: the members' state
    read in a few queries, and their memberships, points accounts, referral codes, ``member_enrolled``
    events and welcome points (movement and lot) written in a few bulk statements, in member id order.
    Returns how many memberships it recorded; a member with any membership is left as they are, so a rerun
    changes nothing.

    The members' rows are locked first (as :func:`enrol` does), and the membership's unique key makes a
    member enrolled meanwhile fail the transaction rather than join twice. What the bulk path does not
    cover goes through :func:`ensure_membership` member by member: a paid programme (a first term each), a
    welcome coupon or benefit, and a member whose existing points account carries a debt."""
    if not joinings:
        return 0
    by_member = {joining.member_id: joining for joining in joinings}
    ids = sorted(by_member)
    members = {member.id: member for member in session.scalars(
        locked_parent(select(Member).where(Member.id.in_(ids))).order_by(Member.id))}
    have = set(session.scalars(select(Membership.member_id).where(
        Membership.workspace_id == workspace.id, Membership.member_id.in_(ids))))
    todo = [member_id for member_id in ids if member_id not in have and member_id in members]
    if not todo:
        return 0
    programme = active_programme(session, workspace.id)
    rules = programme.programme.enrolment
    accounts = {account.member_id: account for account in session.scalars(select(PointsAccount).where(
        PointsAccount.workspace_id == workspace.id, PointsAccount.member_id.in_(todo)))}
    one_by_one = [member_id for member_id in todo if rules.mode == "paid" or rules.welcome_coupon
                  or rules.welcome_benefit or (member_id in accounts and accounts[member_id].debt > 0)]
    for member_id in one_by_one:
        joining = by_member[member_id]
        ensure_membership(session, workspace, members[member_id], channel=channel, now=joining.joined_at,
                          birth_month=joining.birth_month)
    bulk = [by_member[member_id] for member_id in todo if member_id not in set(one_by_one)]
    if bulk:
        _join_many(session, workspace, programme, bulk, accounts, channel=channel)
    return len(todo)


def _join_many(session: Session, workspace: Workspace, programme: ActiveProgramme, joinings: list[Joining],
               accounts: dict[str, PointsAccount], *, channel: str) -> None:
    """:func:`_join` for new members of a free or spend-threshold programme, in bulk (see
    :func:`ensure_memberships`)."""
    rules = programme.programme.enrolment
    ids = [joining.member_id for joining in joinings]
    at = [joining.joined_at for joining in joinings]
    insert_many(session, insert(Membership), {
        "member_id": ids, "birth_month": [joining.birth_month for joining in joinings], "enrolled_at": at,
    }, {"workspace_id": workspace.id, "programme_version": programme.version, "status": ACTIVE, "channel": channel,
        "ends_at": None, "auto_renew": False, "cancelled_at": None, "renewal_requested_for": None})
    members = cast(Table, Member.__table__)
    session.connection().execute(
        update(members).where(members.c.id == bindparam("member")).values(is_enrolled=True,
                                                                          enrolled_at=bindparam("joined")),
        [{"member": member_id, "joined": joined} for member_id, joined in zip(ids, at, strict=True)])
    # the welcome points, for members not given them already
    welcome = rules.welcome_points
    given = set(session.scalars(select(PointsMovement.idempotency_key).where(
        PointsMovement.workspace_id == workspace.id,
        PointsMovement.idempotency_key.in_([f"welcome:{member_id}" for member_id in ids])))) if welcome else set()
    gifted = [joining for joining in joinings if welcome and f"welcome:{joining.member_id}" not in given]
    gift_at = {joining.member_id: joining.joined_at for joining in gifted}
    opened = [member_id for member_id in ids if member_id not in accounts]
    wall_clock = utcnow()
    insert_many(session, insert(PointsAccount), {
        "member_id": opened, "available": [welcome if member_id in gift_at else 0 for member_id in opened],
        "updated_at": [gift_at.get(member_id, wall_clock) for member_id in opened],
    }, {"workspace_id": workspace.id, "pending": 0, "debt": 0})
    for member_id, account in accounts.items():
        if member_id in gift_at:
            account.available += welcome
            account.updated_at = gift_at[member_id]
    _referral_codes(session, workspace.id, joinings)
    insert_many(session, insert(LoyaltyEvent), {
        "member_id": ids, "occurred_at": at,
    }, {"workspace_id": workspace.id, "type": "member_enrolled",
        "payload": {"channel": channel, "programme_version": programme.version, "mode": rules.mode, "rejoined": False}})
    movement_ids = reserve_ids(session, cast(Table, PointsMovement.__table__), len(gifted))
    balance = {member_id: (account.available, account.pending, account.debt) for member_id, account in accounts.items()}
    insert_many(session, insert(PointsMovement), {
        "id": movement_ids, "member_id": [joining.member_id for joining in gifted],
        "idempotency_key": [f"welcome:{joining.member_id}" for joining in gifted],
        "source_id": [joining.member_id for joining in gifted],
        "outcome": [dict(zip(("available", "pending", "debt"), balance.get(joining.member_id, (welcome, 0, 0)),
                             strict=True)) for joining in gifted],
        "occurred_at": [joining.joined_at for joining in gifted], "created_at": [joining.joined_at for joining in gifted],
    }, {"workspace_id": workspace.id, "kind": "earn", "points": welcome, "available_delta": welcome,
        "pending_delta": 0, "debt_delta": 0, "source_type": "enrolment", "reason": "welcome", "actor": "",
        "programme_version": programme.version, "reverses_id": None})
    zone = points.zone_of(workspace)
    insert_many(session, insert(PointsLot), {
        "member_id": [joining.member_id for joining in gifted], "movement_id": movement_ids,
        "earned_at": [joining.joined_at for joining in gifted], "available_at": [joining.joined_at for joining in gifted],
        "expires_at": [ledger.expires_at(programme.programme.expiry, joining.joined_at, zone) for joining in gifted],
    }, {"workspace_id": workspace.id, "points": welcome, "remaining": welcome, "state": "available",
        "warned_at": None, "origin_lot_id": None})
    session.flush()  # the existing accounts' balances
    for member_id in ids:  # the session's copies of the members are stale now
        member = session.get(Member, member_id)
        if member is not None:
            session.expire(member)


def _referral_codes(session: Session, workspace_id: str, joinings: list[Joining]) -> None:
    """:func:`ensure_referral_code` for each of ``joinings`` who has none, dated from their join."""
    ids = [joining.member_id for joining in joinings]
    have = set(session.scalars(select(ReferralCode.member_id).where(ReferralCode.workspace_id == workspace_id,
                                                                    ReferralCode.member_id.in_(ids))))
    wanting = [joining for joining in joinings if joining.member_id not in have]
    codes = [new_referral_code() for _ in wanting]
    while True:  # a collision (with a stored code or within the batch) is rare: draw those again
        taken = set(session.scalars(select(ReferralCode.code).where(ReferralCode.workspace_id == workspace_id,
                                                                    ReferralCode.code.in_(codes))))
        seen: set[str] = set()
        clashes = 0
        for index, code in enumerate(codes):
            if code in taken or code in seen:
                codes[index] = new_referral_code()
                clashes += 1
            seen.add(codes[index])
        if not clashes:
            break
    insert_many(session, insert(ReferralCode), {
        "member_id": [joining.member_id for joining in wanting], "code": codes,
        "created_at": [joining.joined_at for joining in wanting]}, {"workspace_id": workspace_id})


def record_channel_enrolment(session: Session, workspace: Workspace, member: Member, *, channel: str,
                             joined_at: datetime | None = None) -> Membership:
    """A channel's customer record says the person is a member (``is_enrolled``): their membership is
    recorded now (see :func:`ensure_membership`), and the member's flag set to what the membership says — a
    member whose membership expired stays not enrolled until they renew."""
    now = utcnow()
    membership = ensure_membership(session, workspace, member, channel=channel,
                                   now=min(joined_at, now) if joined_at is not None else now)
    memberships.keep_in_step(session, membership)
    return membership


def _join(
    session: Session, workspace: Workspace, member: Member, programme: ActiveProgramme, *,
    existing: Membership | None, channel: str, now: datetime, birth_month: int | None, payment: Payment | None,
) -> tuple[Membership, tuple[str, ...]]:
    rules = programme.programme.enrolment
    if existing is None:
        membership = Membership(
            workspace_id=workspace.id, member_id=member.id, programme_version=programme.version, status=ACTIVE,
            channel=channel, birth_month=birth_month, enrolled_at=now,
            auto_renew=rules.paid.auto_renew if rules.mode == "paid" and rules.paid is not None else False)
        session.add(membership)
        session.flush()
    else:  # joining again after an expiry or a cancellation: the join date is the new one
        membership = existing
        membership.status, membership.cancelled_at, membership.ends_at = ACTIVE, None, None
        membership.enrolled_at, membership.programme_version = now, programme.version
        if birth_month is not None:
            membership.birth_month = birth_month
    if rules.mode == "paid":
        memberships.add_term(session, programme.programme, membership, kind="join", starts_at=now, payment=payment,
                             now=now)
    memberships.keep_in_step(session, membership)
    account = session.scalar(select(PointsAccount).where(PointsAccount.workspace_id == workspace.id,
                                                         PointsAccount.member_id == member.id))
    if account is None:
        account = points.open_account(session, workspace.id, member.id)
    ensure_referral_code(session, workspace.id, member.id, now=now)
    session.add(LoyaltyEvent(workspace_id=workspace.id, member_id=member.id, type="member_enrolled",
                             occurred_at=now, payload={"channel": channel, "programme_version": programme.version,
                                                       "mode": rules.mode, "rejoined": existing is not None}))
    warnings = _welcome_gift(session, workspace, programme, member.id, account, now)
    session.flush()
    return membership, warnings


def _welcome_gift(session: Session, workspace: Workspace, programme: ActiveProgramme, member_id: str,
                  account: PointsAccount, now: datetime) -> tuple[str, ...]:
    """Welcome points, coupon and benefit, each once per member (key ``welcome:<member id>``). A coupon or
    benefit that cannot be given (not defined, sold out, archived) is reported, not fatal: the person has
    joined all the same."""
    from memberops.loyalty.benefits import grant_benefit
    from memberops.loyalty.coupons import issue_coupon

    rules = programme.programme.enrolment
    key = f"welcome:{member_id}"
    if rules.welcome_points and session.scalar(select(PointsMovement.id).where(
            PointsMovement.workspace_id == workspace.id, PointsMovement.idempotency_key == key)) is None:
        points.grant(session, account, programme, points=rules.welcome_points, key=key, kind="earn", earned_at=now,
                     available_at=now, source_type="enrolment", source_id=member_id, zone=points.zone_of(workspace),
                     reason="welcome", now=now)
    warnings: list[str] = []
    if rules.welcome_coupon:
        try:
            issue_coupon(session, workspace.id, rules.welcome_coupon, member_id, key, now=now)
        except DomainError as exc:
            warnings.append(f"welcome coupon {rules.welcome_coupon!r} not issued: {exc.code}")
    if rules.welcome_benefit:
        try:
            grant_benefit(session, workspace.id, member_id, rules.welcome_benefit, rules.welcome_benefit_quantity,
                          "welcome", key, now=now)
        except DomainError as exc:
            warnings.append(f"welcome benefit {rules.welcome_benefit!r} not granted: {exc.code}")
    return tuple(warnings)


# --- joining by spending ----------------------------------------------------------------------------------


def counted_spend(session: Session, workspace_id: str, member_id: str, rules: SpendThreshold, *,
                  until: datetime) -> Decimal:
    """What counts towards the threshold: the member's live orders placed in the ``window_days`` up to and
    including ``until``, paid amounts net of refunds (less shipping with ``paid_excluding_shipping``)."""
    amount = LiveOrder.paid_amount - LiveOrder.refunded_amount
    if rules.counts == "paid_excluding_shipping":
        amount = amount - func.coalesce(LiveOrder.shipping_amount, 0)
    total = session.scalar(select(func.coalesce(func.sum(amount), 0)).where(
        LiveOrder.workspace_id == workspace_id, LiveOrder.member_id == member_id,
        LiveOrder.ordered_at > until - timedelta(days=rules.window_days), LiveOrder.ordered_at <= until))
    return max(Decimal(str(total or 0)), Decimal(0))


def join_by_spend(session: Session, workspace: Workspace, order: LiveOrder, *, now: datetime | None = None) -> bool:
    """Enrol the order's buyer when the programme joins by spending and this order brings their counted
    spend (in the ``window_days`` up to their newest order) to the threshold; ``True`` when it did. A
    member with any membership (one who left included) is left as they are: spending enrols only people
    who never joined.

    Under the member's lock the membership is read again: of two orders crossing the threshold at once, the
    second finds the membership the first recorded (PostgreSQL reads what committed while it waited), so
    the member is enrolled once, and the second order's spend counts the first's."""
    programme = active_programme(session, workspace.id)
    rules = programme.programme.enrolment
    if rules.mode != "spend_threshold" or rules.spend_threshold is None or order.member_id is None:
        return False
    member = _lock_member(session, order.member_id)
    if membership_of(session, workspace.id, member.id) is not None:
        return False
    # the window ends at the buyer's newest order: an order placed earlier but recorded later (two
    # terminals at once, an offline till) still sees the orders recorded before it
    newest = session.scalar(select(func.max(LiveOrder.ordered_at)).where(
        LiveOrder.workspace_id == workspace.id, LiveOrder.member_id == member.id))
    until = max(order.ordered_at, newest) if newest is not None else order.ordered_at
    spend = counted_spend(session, workspace.id, member.id, rules.spend_threshold, until=until)
    if spend < rules.spend_threshold.amount:
        return False
    now = now or utcnow()
    _join(session, workspace, member, programme, existing=None, channel=order.channel,
          now=min(order.ordered_at, now), birth_month=None, payment=None)
    return True


# --- keeping Member.is_enrolled in step ---------------------------------------------------------------------


@dataclass(frozen=True)
class EnrolmentSync:
    memberships_recorded: int
    flags_set: int
    flags_cleared: int
    profiles_completed: int = 0  # members paid for a profile an import completed


def sync_enrolment(session: Session, workspace: Workspace, *, now: datetime | None = None) -> EnrolmentSync:
    """Make ``Member.is_enrolled`` agree with the memberships (see :mod:`memberops.loyalty.memberships`):
    a member a channel record flagged enrolled without a membership gets one (dated from their flag);
    every other flag is set to whether the member's membership is active. Absorbed members are left out.
    Members whose records an import completed earn for it (:func:`event_earning.earn_for_completed_profiles`).
    Running it again changes nothing."""
    now = now or utcnow()
    has_membership = select(Membership.member_id).where(Membership.workspace_id == workspace.id)
    unrecorded = session.scalars(select(Member).where(
        Member.workspace_id == workspace.id, Member.is_enrolled.is_(True), Member.merged_into_id.is_(None),
        ~Member.id.in_(has_membership)).order_by(Member.id)).all()
    ensure_memberships(session, workspace, [Joining(member.id, member.enrolled_at or now) for member in unrecorded],
                       channel="import")
    active = select(Membership.member_id).where(Membership.workspace_id == workspace.id, Membership.status == ACTIVE)
    set_ = session.execute(update(Member).where(
        Member.workspace_id == workspace.id, Member.is_enrolled.is_(False), Member.id.in_(active))
        .values(is_enrolled=True).execution_options(synchronize_session="fetch"))
    cleared = session.execute(update(Member).where(
        Member.workspace_id == workspace.id, Member.is_enrolled.is_(True), ~Member.id.in_(active))
        .values(is_enrolled=False).execution_options(synchronize_session="fetch"))
    session.flush()
    completed = event_earning.earn_for_completed_profiles(session, workspace, now=now)
    return EnrolmentSync(len(unrecorded), int(set_.rowcount or 0), int(cleared.rowcount or 0),  # type: ignore[attr-defined]
                         completed)
