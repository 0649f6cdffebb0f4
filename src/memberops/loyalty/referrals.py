"""Referrals (member-get-member): personal codes, binding a friend to a referrer, rewards and clawbacks.

Every enrolled member holds a personal code (:func:`ensure_referral_code`, called on enrolment); a channel
that records "referred by" with the referrer's member card number binds the same way, so a code is either.
A friend binds once (:func:`bind_referral`): the first binding wins, a replay of it changes nothing, another
referrer is refused. Fraud guards refuse a referrer who is the friend, shares any identifier with them
(phone, e-mail, WeChat id …) or was themself referred by the friend (directly or up the chain); a referrer
at the programme's cap for the period gets the binding recorded as ``over_cap`` and never rewarded; a friend
who bought before binding is recorded as ``ineligible``.

Rewards (:func:`reward_on_order`, a live order hook): the friend's first order after binding that pays at
least ``referrals.min_paid_amount`` grants both rewards as points lots pending through the return window
(the ledger's own pending mechanism) and/or coupons. A full refund of that order before the rewards become
available (:func:`claw_back_on_refund`) reverses both with the ledger's reversal rules (spent points from
other points, else a debt) and voids unused reward coupons, once; the friend's next qualifying order is then
the one rewarded. Every step runs with both members' points accounts locked (in member id order, so two
bindings never deadlock), and every movement has an idempotency key naming the binding and the order.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor, record
from memberops.db.base import utcnow
from memberops.errors import DomainError
from memberops.identity.models import Identifier, Member
from memberops.identity.normalise import normalise_identifier
from memberops.identity.service import get_member
from memberops.ingest.models import LiveOrder, LiveRefund
from memberops.insight.models import MemberTrait
from memberops.loyalty import coupons, ledger, points
from memberops.loyalty.coupon_models import Coupon
from memberops.loyalty.errors import MemberNotEnrolled
from memberops.loyalty.models import LoyaltyEvent, Membership, PointsMovement
from memberops.loyalty.programme import Referrals
from memberops.loyalty.programmes import ActiveProgramme, active_programme, programme_in_force
from memberops.loyalty.referral_errors import (
    AlreadyReferred,
    ReferralsDisabled,
    SelfReferral,
    UnknownReferralCode,
)
from memberops.loyalty.referral_models import ReferralBinding, ReferralCode

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read out at a till without mistakes
CODE_LENGTH = 8  # 31^8 ≈ 8.5·10^11 codes: not guessable by trying
MAX_CHAIN = 64  # how far up a referrer's own referrers the ring check looks
REWARDED_STATUSES = ("awaiting_purchase", "rewarded")  # bindings that count towards the referrer's cap


# --- codes -----------------------------------------------------------------------------------------------


def new_referral_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def is_member(session: Session, workspace_id: str, member_id: str) -> bool:
    """Whether the member is enrolled in the programme (has a membership)."""
    return session.scalar(select(Membership.id).where(Membership.workspace_id == workspace_id,
                                                      Membership.member_id == member_id)) is not None


def referral_code_of(session: Session, workspace_id: str, member_id: str) -> str | None:
    return session.scalar(select(ReferralCode.code).where(ReferralCode.workspace_id == workspace_id,
                                                          ReferralCode.member_id == member_id))


def ensure_referral_code(session: Session, workspace_id: str, member_id: str, *, now: datetime | None = None) -> str:
    """The member's personal referral code, created (random, unique in the workspace) if they have none."""
    existing = referral_code_of(session, workspace_id, member_id)
    if existing is not None:
        return existing
    while True:  # a collision is a one-in-10^11 event per code: retry with another
        code = new_referral_code()
        if session.scalar(select(ReferralCode.id).where(ReferralCode.workspace_id == workspace_id,
                                                        ReferralCode.code == code)) is None:
            break
    session.add(ReferralCode(workspace_id=workspace_id, member_id=member_id, code=code, created_at=now or utcnow()))
    session.flush()
    return code


def code_from(text: str) -> str:
    """The code in ``text``: the code itself, or a link carrying it as ``?ref=CODE``."""
    text = text.strip()
    if "ref=" in text:
        values = parse_qs(urlsplit(text).query).get("ref")
        if values:
            return values[0].strip()
    return text


def find_referrer(session: Session, workspace_id: str, code: str) -> str:
    """The enrolled member whose referral code, or member card number, ``code`` is (a link works too).

    Raises :class:`UnknownReferralCode` when nobody in the programme holds it."""
    code = code_from(code)
    member_id = session.scalar(select(ReferralCode.member_id).where(ReferralCode.workspace_id == workspace_id,
                                                                    ReferralCode.code == code.upper()))
    candidates = [member_id] if member_id is not None else []
    card = normalise_identifier("member_card_no", code) if code else None
    if not candidates and card:
        candidates = list(session.scalars(select(Identifier.member_id).where(
            Identifier.workspace_id == workspace_id, Identifier.type == "member_card_no", Identifier.value == card,
        ).order_by(Identifier.id)))
    for candidate in candidates:
        survivor = get_member(session, workspace_id, candidate).id
        if is_member(session, workspace_id, survivor):
            return survivor
    raise UnknownReferralCode()


# --- binding ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """A binding and whether this call made it (``is_replay``: the same binding was already there)."""

    binding: ReferralBinding
    is_replay: bool


def binding_of(session: Session, workspace_id: str, friend_member_id: str, *, fresh: bool = False) -> ReferralBinding | None:
    query = select(ReferralBinding).where(ReferralBinding.workspace_id == workspace_id,
                                          ReferralBinding.friend_member_id == friend_member_id)
    if fresh:  # re-read under the lock: another transaction may have changed it since it was loaded
        query = query.execution_options(populate_existing=True)
    return session.scalar(query)


def _lock_both(session: Session, workspace_id: str, *member_ids: str) -> None:
    """Lock the members' points accounts in member id order, so two transactions never wait on each other
    in a circle (A refers B while B's order rewards A)."""
    for member_id in sorted(set(member_ids)):
        points.lock_account(session, workspace_id, member_id)


def _with_absorbed(session: Session, member_id: str) -> list[str]:
    return [member_id, *session.scalars(select(Member.id).where(Member.merged_into_id == member_id))]


def shared_identifier(session: Session, workspace_id: str, member_a: str, member_b: str) -> str | None:
    """The type of an identifier (``phone``, ``email`` …) the two members both hold, or ``None``."""
    mine, theirs = aliased(Identifier), aliased(Identifier)
    return session.scalar(
        select(mine.type).join(theirs, and_(theirs.workspace_id == mine.workspace_id, theirs.type == mine.type,
                                            theirs.value == mine.value))
        .where(mine.workspace_id == workspace_id, mine.member_id.in_(_with_absorbed(session, member_a)),
               theirs.member_id.in_(_with_absorbed(session, member_b)))
        .order_by(mine.type).limit(1))


def _referred_by_friend(session: Session, workspace_id: str, friend: str, referrer: str) -> bool:
    """Whether ``referrer`` was referred by ``friend``, directly or up the chain (a referral ring)."""
    current = referrer
    for _ in range(MAX_CHAIN):
        above = session.scalar(select(ReferralBinding.referrer_member_id).where(
            ReferralBinding.workspace_id == workspace_id, ReferralBinding.friend_member_id == current))
        if above is None:
            return False
        if above == friend:
            return True
        current = above
    return False


def has_bought_before(session: Session, workspace_id: str, member_id: str, moment: datetime) -> bool:
    """Whether the member has an order before ``moment``: posted live, earning points (imported orders
    replayed by the backfill) or in the traits of the last insight run (the lake's history)."""
    if session.scalar(select(LiveOrder.id).where(LiveOrder.workspace_id == workspace_id, LiveOrder.member_id == member_id,
                                                 LiveOrder.ordered_at < moment).limit(1)) is not None:
        return True
    if session.scalar(select(PointsMovement.id).where(
            PointsMovement.member_id == member_id, PointsMovement.kind == "earn",
            PointsMovement.source_type == "order", PointsMovement.occurred_at < moment).limit(1)) is not None:
        return True
    traits = session.scalar(select(MemberTrait.traits).where(MemberTrait.workspace_id == workspace_id,
                                                             MemberTrait.member_id == member_id))
    first = (traits or {}).get("first_purchase_at")
    if not first:
        return False
    try:
        return datetime.fromisoformat(str(first)).date() < moment.date()
    except ValueError:
        return False


def period_window(rules: Referrals, moment: datetime, zone: Any) -> tuple[datetime, datetime]:
    """The cap's period (calendar month or year, in the workspace's zone) around ``moment``."""
    local = moment.astimezone(zone).date()
    if rules.cap_period == "month":
        return ledger.month_window(local, zone)
    start = datetime(local.year, 1, 1, tzinfo=zone)
    return start, datetime(local.year + 1, 1, 1, tzinfo=zone)


def _status_for_new_binding(session: Session, workspace: Workspace, rules: Referrals, friend: str, referrer: str,
                            now: datetime) -> str:
    if has_bought_before(session, workspace.id, friend, now):
        return "ineligible"
    if rules.cap_per_period is not None:
        start, end = period_window(rules, now, points.zone_of(workspace))
        made = session.scalar(select(func.count()).select_from(ReferralBinding).where(
            ReferralBinding.workspace_id == workspace.id, ReferralBinding.referrer_member_id == referrer,
            ReferralBinding.status.in_(REWARDED_STATUSES), ReferralBinding.bound_at >= start,
            ReferralBinding.bound_at < end)) or 0
        if made >= rules.cap_per_period:
            return "over_cap"
    return "awaiting_purchase"


def bind_referral(
    session: Session, workspace: Workspace, friend_member_id: str, code: str, *, source: str = "api",
    actor: Actor | None = None, now: datetime | None = None,
) -> Bound:
    """Bind the friend to the member whose referral code (or member card number) ``code`` is.

    The first binding wins: binding again to the same referrer is a replay (nothing changes), to another
    one raises :class:`AlreadyReferred`. Raises :class:`ReferralsDisabled`, :class:`UnknownReferralCode`,
    :class:`MemberNotEnrolled` (the friend), :class:`SelfReferral` (the same member, a shared identifier,
    or a referrer the friend referred). A referrer at the period's cap gets the binding ``over_cap`` (never
    rewarded); a friend who bought before is ``ineligible``. Both points accounts are locked while it
    decides, so two bindings of one friend queue and the second sees the first.
    """
    now = now or utcnow()
    programme = active_programme(session, workspace.id)
    rules = programme.programme.referrals
    if not rules.enabled:
        raise ReferralsDisabled()
    friend = get_member(session, workspace.id, friend_member_id).id
    if not is_member(session, workspace.id, friend):
        raise MemberNotEnrolled(friend)
    referrer = find_referrer(session, workspace.id, code)
    if referrer == friend:
        raise SelfReferral(friend, "the same member")
    _lock_both(session, workspace.id, friend, referrer)
    existing = binding_of(session, workspace.id, friend, fresh=True)
    if existing is not None:
        if existing.referrer_member_id == referrer:
            return Bound(existing, True)
        raise AlreadyReferred(friend, existing.bound_at.isoformat())
    shared = shared_identifier(session, workspace.id, friend, referrer)
    if shared is not None:
        raise SelfReferral(friend, f"shares a {shared} with the referrer")
    if _referred_by_friend(session, workspace.id, friend, referrer):
        raise SelfReferral(friend, "the referrer was referred by this member")
    binding = ReferralBinding(
        workspace_id=workspace.id, friend_member_id=friend, referrer_member_id=referrer, code=code_from(code)[:64],
        source=source, status=_status_for_new_binding(session, workspace, rules, friend, referrer, now),
        bound_at=now, updated_at=now)
    session.add(binding)
    session.add(LoyaltyEvent(workspace_id=workspace.id, member_id=referrer, type="referral_bound", occurred_at=now,
                             payload={"friend_member_id": friend, "status": binding.status}))
    session.flush()
    if actor is not None:
        record(session, actor, "loyalty.referral.bind", workspace_id=workspace.id, target_type="member",
               target_id=friend, detail={"referrer_member_id": referrer, "status": binding.status})
    return Bound(binding, False)


# --- rewards and clawbacks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardOutcome:
    binding: ReferralBinding
    warnings: Sequence[str] = field(default_factory=tuple)


def _order_ref(channel: str, order_id: str) -> str:
    return f"{channel}:{order_id}"


def reward_key(binding_id: int, order_ref: str, side: str) -> str:
    return f"referral:{binding_id}:{order_ref}:{side}"


def clawback_key(binding_id: int, order_ref: str, side: str) -> str:
    return f"referral-clawback:{binding_id}:{order_ref}:{side}"


def _sides(binding: ReferralBinding, rules: Referrals) -> list[tuple[str, str, int, str | None]]:
    """(side, member, points, coupon template) for the referrer and the friend."""
    return [("referrer", binding.referrer_member_id, rules.referrer_points, rules.referrer_coupon),
            ("friend", binding.friend_member_id, rules.friend_points, rules.friend_coupon)]


def reward_on_order(session: Session, workspace: Workspace, order: LiveOrder, *,
                    now: datetime | None = None) -> RewardOutcome | None:
    """Reward the referrer and the friend if ``order`` is the friend's first qualifying purchase since
    binding; ``None`` when it is not (no binding awaiting a purchase, an order from before the binding or
    under the minimum, referrals switched off). Points are pending until the return window has passed;
    a reward coupon that cannot be issued (template missing, sold out) is reported as a warning."""
    if order.member_id is None or not programme_in_force(session, workspace.id).referrals.enabled:
        return None  # read first: every live order asks, and most programmes run no referrals
    candidate = binding_of(session, workspace.id, order.member_id)
    if candidate is None or candidate.status != "awaiting_purchase":
        return None
    programme = active_programme(session, workspace.id)
    rules = programme.programme.referrals
    if not rules.enabled or order.ordered_at < candidate.bound_at or order.paid_amount < rules.min_paid_amount:
        return None
    now = now or utcnow()
    _lock_both(session, workspace.id, candidate.friend_member_id, candidate.referrer_member_id)
    binding = binding_of(session, workspace.id, order.member_id, fresh=True)
    if binding is None or binding.status != "awaiting_purchase":
        return None
    wait = rules.pending_days if rules.pending_days is not None else programme.programme.earn.pending_days
    available_at = order.ordered_at + timedelta(days=wait)
    ref = _order_ref(order.channel, order.order_id)
    warnings = []
    for side, member_id, count, template in _sides(binding, rules):
        if count:
            _grant(session, workspace, programme, member_id, count, key=reward_key(binding.id, ref, side),
                   earned_at=order.ordered_at, available_at=available_at, binding=binding, now=now)
        if template:
            try:
                coupons.issue_coupon(session, workspace.id, template, member_id, reward_key(binding.id, ref, side),
                                     now=now)
            except DomainError as exc:  # refused before anything was written: the points stand
                warnings.append(f"referral coupon {template!r} for the {side} not issued: {exc.code}")
    binding.status, binding.reward_order, binding.rewarded_at = "rewarded", ref, order.ordered_at
    binding.reward_available_at, binding.updated_at = available_at, now
    binding.referrer_points, binding.friend_points = rules.referrer_points, rules.friend_points
    session.add(LoyaltyEvent(workspace_id=workspace.id, member_id=binding.referrer_member_id, type="referral_rewarded",
                             occurred_at=now, payload={"friend_member_id": binding.friend_member_id, "order": ref,
                                                       "points": rules.referrer_points}))
    session.flush()
    return RewardOutcome(binding, tuple(warnings))


def _grant(session: Session, workspace: Workspace, programme: ActiveProgramme, member_id: str, count: int, *,
           key: str, earned_at: datetime, available_at: datetime, binding: ReferralBinding, now: datetime) -> None:
    account = points.lock_account(session, workspace.id, member_id)
    points.catch_up(session, account, programme, now)
    points.grant(session, account, programme, points=count, key=key, kind="earn", earned_at=earned_at,
                 available_at=available_at, source_type="referral", source_id=str(binding.id),
                 zone=points.zone_of(workspace), reason="referral reward", now=now)


def _movement(session: Session, workspace_id: str, key: str) -> PointsMovement | None:
    return session.scalar(select(PointsMovement).where(PointsMovement.workspace_id == workspace_id,
                                                       PointsMovement.idempotency_key == key))


def claw_back_on_refund(session: Session, workspace: Workspace, refund: LiveRefund, order: LiveOrder, *,
                        now: datetime | None = None) -> ReferralBinding | None:
    """Take both rewards back when ``refund`` completes a full refund of the rewarded order before the
    rewards became available; ``None`` when it does not apply. Points leave through the ledger's
    reversal rules; reward coupons still unused are voided (a used one stays used). Never twice: the
    binding returns to ``awaiting_purchase`` and each reversal has its own idempotency key."""
    if order.member_id is None or order.refunded_amount < order.paid_amount:
        return None
    ref = _order_ref(order.channel, order.order_id)
    candidate = binding_of(session, workspace.id, order.member_id)
    if candidate is None or candidate.status != "rewarded" or candidate.reward_order != ref:
        return None
    if candidate.reward_available_at is not None and refund.refunded_at >= candidate.reward_available_at:
        return None  # past the return window: the rewards stand
    now = now or utcnow()
    _lock_both(session, workspace.id, candidate.friend_member_id, candidate.referrer_member_id)
    binding = binding_of(session, workspace.id, order.member_id, fresh=True)
    if binding is None or binding.status != "rewarded" or binding.reward_order != ref:
        return None
    programme = active_programme(session, workspace.id)
    for side, member_id, _, _ in _sides(binding, programme.programme.referrals):
        earned = _movement(session, workspace.id, reward_key(binding.id, ref, side))
        key = clawback_key(binding.id, ref, side)
        if earned is not None and _movement(session, workspace.id, key) is None:
            account = points.lock_account(session, workspace.id, member_id)
            points.catch_up(session, account, programme, now)
            points.take_back(session, account, programme, earned, earned.points, key=key, source_type="referral",
                             source_id=str(binding.id), occurred_at=refund.refunded_at, now=now)
        # the coupon this reward issued (its issue key names the binding, the order and the side): by id, as a
        # shared code would name the member's latest coupon of that code, which may be another one
        coupon = session.scalar(select(Coupon).where(Coupon.workspace_id == workspace.id,
                                                     Coupon.issue_key == reward_key(binding.id, ref, side)))
        if coupon is not None and coupon.status == "issued":
            coupons.void_coupon_by_id(session, workspace.id, coupon.id, "referral order refunded",
                                      actor=Actor.system(), now=now)
    binding.status, binding.reward_order, binding.rewarded_at, binding.reward_available_at = (
        "awaiting_purchase", None, None, None)
    binding.referrer_points = binding.friend_points = 0
    binding.clawbacks += 1
    binding.updated_at = now
    session.add(LoyaltyEvent(workspace_id=workspace.id, member_id=binding.referrer_member_id,
                             type="referral_clawed_back", occurred_at=now,
                             payload={"friend_member_id": binding.friend_member_id, "order": ref}))
    session.flush()
    return binding
