"""Enrolment: a person joins the programme. Free enrolment today (the programme's ``enrolment.mode``).

The person is resolved through OneID's live path (:func:`memberops.identity.service.resolve_customer`),
then a :class:`Membership` and the member's points account are recorded, with the welcome points the
programme grants. Enrolling the same person again returns the same member and membership.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.errors import DomainError
from memberops.identity.models import Member
from memberops.identity.normalise import IDENTIFIER_TYPES, normalise_identifier
from memberops.identity.service import resolve_customer
from memberops.loyalty import points
from memberops.loyalty.errors import EnrolmentNeedsIdentifier
from memberops.loyalty.models import LoyaltyEvent, Membership
from memberops.loyalty.programmes import active_programme
from memberops.loyalty.referrals import Bound, bind_referral, ensure_referral_code


@dataclass(frozen=True)
class Enrolled:
    member: Member
    membership: Membership
    is_new_member: bool
    is_new_record: bool
    is_new_enrolment: bool
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


def enrol(
    session: Session, workspace: Workspace, *, channel: str, source_id: str | None,
    identifiers: Mapping[str, str | None], attributes: Mapping[str, Any] | None = None,
    birthday: date | None = None, referrer_code: str | None = None, now: datetime | None = None,
) -> Enrolled:
    """Enrol the person these identifiers (or this channel record) belong to; idempotent per person.

    With ``referrer_code`` the member is then bound to that referrer (:func:`referrals.bind_referral`); a
    code refused (unknown, self-referral, already referred, referrals off) leaves the enrolment made and
    says why in ``referral_problem``."""
    now = now or utcnow()
    resolution = resolve_customer(
        session, workspace, channel=channel, source_id=source_id or enrolment_source_id(identifiers),
        identifiers=identifiers, is_enrolled=True, attributes=attributes,
    )
    member = resolution.member
    membership = membership_of(session, workspace.id, member.id)
    is_new = membership is None
    if membership is None:
        membership = ensure_membership(session, workspace, member, channel=channel, now=now,
                                       birth_month=birthday.month if birthday else None)
    referral = problem = None
    if referrer_code:
        try:
            referral = bind_referral(session, workspace, member.id, referrer_code, source="enrolment", now=now)
        except DomainError as exc:  # decided before anything was written
            problem = exc
    return Enrolled(member, membership, resolution.is_new_member, resolution.is_new_record, is_new, referral, problem)


def membership_of(session: Session, workspace_id: str, member_id: str) -> Membership | None:
    return session.scalar(select(Membership).where(
        Membership.workspace_id == workspace_id, Membership.member_id == member_id))


def ensure_membership(
    session: Session, workspace: Workspace, member: Member, *, channel: str, now: datetime,
    birth_month: int | None = None,
) -> Membership:
    """The member's membership, recorded (with the points account, a personal referral code and the welcome
    points) if missing."""
    existing = membership_of(session, workspace.id, member.id)
    if existing is not None:
        return existing
    programme = active_programme(session, workspace.id)
    membership = Membership(workspace_id=workspace.id, member_id=member.id, programme_version=programme.version,
                            status="active", channel=channel, birth_month=birth_month, enrolled_at=now)
    session.add(membership)
    if not member.is_enrolled:
        member.is_enrolled = True
        member.enrolled_at = now
    account = points.open_account(session, workspace.id, member.id)
    ensure_referral_code(session, workspace.id, member.id, now=now)
    session.add(LoyaltyEvent(workspace_id=workspace.id, member_id=member.id, type="member_enrolled",
                             occurred_at=now, payload={"channel": channel, "programme_version": programme.version}))
    welcome = programme.programme.enrolment.welcome_points
    if welcome:
        points.grant(session, account, programme, points=welcome, key=f"welcome:{member.id}", kind="earn",
                     earned_at=now, available_at=now, source_type="enrolment", source_id=member.id,
                     zone=points.zone_of(workspace), reason="welcome", now=now)
    session.flush()
    return membership
