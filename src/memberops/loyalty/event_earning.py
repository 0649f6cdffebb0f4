"""Points for events: sign-in (with streaks), review, share, complete profile, and any type the programme
names in ``events`` (:class:`memberops.loyalty.programme.EventRule`).

:func:`earn_for_event` is the one service: the live event path calls it for each event of a rewarded type
from an enrolled member (:func:`memberops.loyalty.hooks.earn_on_events`), and so can any other domain that
rewards a happening (a referral converted) with an event key of its own. It works under the member's points
lock, like every movement: the rows it counts (caps, once per member, streaks) cannot change under it.

Joining is not an event rule: welcome points (``enrolment.welcome_points``) are granted on enrolment.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.identity.models import Identifier
from memberops.loyalty import ledger, points, tiers
from memberops.loyalty.event_models import EventEarning
from memberops.loyalty.models import Membership
from memberops.loyalty.programme import EventRule, Programme
from memberops.loyalty.programmes import active_programme


def rewarded_event_types(programme: Programme) -> frozenset[str]:
    """The event types the programme gives anything for: points (``events``) or growth value
    (``tier_rules.growth_events``, when tiers are won on growth)."""
    types = set(programme.events)
    if programme.tiers and programme.tier_rules.metric == "growth":
        types.update(programme.tier_rules.growth_events)
    return frozenset(types)


KEY_LENGTH = 180  # "event:" or "growth:event:" + the key fits the ledgers' 200-character idempotency keys


def stored_key(event_id: str) -> str:
    """``event_id`` as it is kept: a key too long for the ledger's keys becomes its SHA-256 digest."""
    if len(event_id) <= KEY_LENGTH:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()


def event_key(channel: str, event_id: str) -> str:
    """The key a live event earns under: unique within the workspace as ``(channel, event_id)`` is."""
    return stored_key(f"{channel}:{event_id}")


def earn_for_event(
    session: Session, workspace: Workspace, member_id: str, event_type: str, event_id: str, occurred_at: datetime,
    *, now: datetime | None = None,
) -> int | None:
    """Points the event earns the member under the programme's rule for ``event_type``, recorded once per
    ``event_id`` (unique in the workspace: the live path passes ``{channel}:{event_id}``; one longer than
    180 characters is kept as its digest); a replay earns
    nothing more and answers what the first earned. ``None`` when the member is not enrolled; 0 when the
    type earns no points or a rule says no (a cap reached, once per member already earned, a profile field
    missing). Growth value for the type (``tier_rules.growth_events``) is recorded too, once per event.

    Caps, once-per-member and streaks count local days in the workspace's time zone. A streak grows by one
    for the first event of a local day that follows a day with one, and pays its bonus on every
    ``streak.days``-th day in a row; events are judged as they arrive (a late event does not rewrite
    streaks already counted).
    """
    now = now or utcnow()
    event_id = stored_key(event_id)
    membership = session.scalar(select(Membership).where(Membership.workspace_id == workspace.id,
                                                         Membership.member_id == member_id))
    if membership is None:
        return None
    programme = active_programme(session, workspace.id)
    if event_type in programme.programme.tier_rules.growth_events and programme.programme.tiers \
            and programme.programme.tier_rules.metric == "growth":
        tiers.award_event_growth(session, workspace, member_id, event_type, idempotency_key=event_id,
                                 now=now, occurred_at=occurred_at)
    rule = programme.programme.events.get(event_type)
    if rule is None:
        return 0
    account = points.lock_account(session, workspace.id, member_id)
    previous = session.scalar(select(EventEarning).where(EventEarning.workspace_id == workspace.id,
                                                         EventEarning.event_key == event_id))
    if previous is not None:
        return previous.points
    points.catch_up(session, account, programme, now)
    zone = points.zone_of(workspace)
    day = occurred_at.astimezone(zone).date()
    base = rule.points if _may_earn(session, member_id, event_type, rule, day, membership) else 0
    streak, bonus = _streak(session, member_id, event_type, rule, day)
    earned = base + bonus
    movement_id: int | None = None
    if earned > 0:
        reason = f"{event_type}, {streak} days in a row" if bonus else event_type
        movement_id = points.grant(session, account, programme, points=earned, key=f"event:{event_id}", kind="earn",
                                   earned_at=occurred_at, available_at=occurred_at, source_type="event",
                                   source_id=event_id, zone=zone, reason=reason[:200], now=now).id
    session.add(EventEarning(workspace_id=workspace.id, member_id=member_id, event_type=event_type,
                             event_key=event_id, occurred_at=occurred_at, local_day=day.isoformat(), points=earned,
                             streak=streak, movement_id=movement_id, created_at=now))
    session.flush()
    return earned


def _rewarded_count(session: Session, member_id: str, event_type: str, first_day: str, end_day: str) -> int:
    """Events of the type that earned points in ``[first_day, end_day)`` (ISO dates)."""
    return int(session.scalar(select(func.count()).select_from(EventEarning).where(
        EventEarning.member_id == member_id, EventEarning.event_type == event_type, EventEarning.points > 0,
        EventEarning.local_day >= first_day, EventEarning.local_day < end_day)) or 0)


def _may_earn(session: Session, member_id: str, event_type: str, rule: EventRule, day: date,
              membership: Membership) -> bool:
    """Whether the rule's base points are due: not earned before when once per member, the day's and the
    month's counts below their caps, the profile holding the required fields."""
    if rule.once_per_member and session.scalar(select(exists().where(
            EventEarning.member_id == member_id, EventEarning.event_type == event_type, EventEarning.points > 0))):
        return False
    if rule.max_per_day is not None and _rewarded_count(
            session, member_id, event_type, day.isoformat(), (day + timedelta(days=1)).isoformat()) >= rule.max_per_day:
        return False
    if rule.max_per_month is not None:
        first = day.replace(day=1)
        if _rewarded_count(session, member_id, event_type, first.isoformat(),
                           ledger.add_months(first, 1).isoformat()) >= rule.max_per_month:
            return False
    return not rule.required_fields or set(rule.required_fields) <= _fields_held(session, member_id, membership)


def _fields_held(session: Session, member_id: str, membership: Membership) -> set[str]:
    """The profile fields the member holds: their identifier types, and ``birthday`` when one is known."""
    held = set(session.scalars(select(Identifier.type).where(Identifier.member_id == member_id).distinct()))
    if membership.birth_month is not None:
        held.add("birthday")
    return held


def _streak(session: Session, member_id: str, event_type: str, rule: EventRule, day: date) -> tuple[int, int]:
    """The member's streak with this event on ``day`` and the bonus it pays now (only the day's first event
    can pay one)."""
    if rule.streak is None:
        return 0, 0
    on_day = select(func.max(EventEarning.streak)).where(
        EventEarning.member_id == member_id, EventEarning.event_type == event_type)
    today = session.scalar(on_day.where(EventEarning.local_day == day.isoformat()))
    if today is not None:
        return int(today), 0
    before = session.scalar(on_day.where(EventEarning.local_day == (day - timedelta(days=1)).isoformat()))
    streak = int(before or 0) + 1
    return streak, rule.streak.bonus if streak % rule.streak.days == 0 else 0



# --- a profile completed ---------------------------------------------------------------------------------

COMPLETE_PROFILE = "complete_profile"


def profile_rule(programme: Programme) -> EventRule | None:
    """The programme's ``complete_profile`` rule when it names the fields a complete profile holds."""
    rule = programme.events.get(COMPLETE_PROFILE)
    return rule if rule is not None and rule.required_fields else None


def _profile_key(member_id: str) -> str:
    return f"profile-complete:{member_id}"


def earn_if_profile_complete(session: Session, workspace: Workspace, member_id: str, *,
                             now: datetime | None = None) -> int | None:
    """Points for a member whose record has just become complete (every field the ``complete_profile`` rule
    requires), as if a ``complete_profile`` event had been posted: called where records change (enrolment
    through the API, a customer record posted live, the membership job after an import). Once per member:
    under the key ``profile-complete:<member id>``, and not at all when the member already earned for an
    explicit ``complete_profile`` event. ``None`` when the programme has no such rule or the member is not
    enrolled; 0 when the profile is not complete yet (nothing recorded, so a later change can still pay)."""
    rule = profile_rule(active_programme(session, workspace.id).programme)
    if rule is None:
        return None
    membership = session.scalar(select(Membership).where(Membership.workspace_id == workspace.id,
                                                         Membership.member_id == member_id))
    if membership is None:
        return None
    if not set(rule.required_fields) <= _fields_held(session, member_id, membership):
        return 0
    if session.scalar(select(exists().where(EventEarning.member_id == member_id,
                                            EventEarning.event_type == COMPLETE_PROFILE, EventEarning.points > 0))):
        return 0
    now = now or utcnow()
    return earn_for_event(session, workspace, member_id, COMPLETE_PROFILE, _profile_key(member_id), now, now=now)


def earn_for_completed_profiles(session: Session, workspace: Workspace, *, now: datetime | None = None) -> int:
    """:func:`earn_if_profile_complete` for every enrolled member whose profile is complete and who has not
    earned for it yet (a batch import filled their records): the members are found in one query; returns
    how many earned."""
    rule = profile_rule(active_programme(session, workspace.id).programme)
    if rule is None:
        return 0
    kinds = sorted(set(rule.required_fields) - {"birthday"})
    query = select(Membership.member_id).where(Membership.workspace_id == workspace.id, ~exists().where(
        EventEarning.member_id == Membership.member_id, EventEarning.event_type == COMPLETE_PROFILE,
        EventEarning.points > 0))
    if "birthday" in rule.required_fields:
        query = query.where(Membership.birth_month.is_not(None))
    if kinds:
        holding = select(Identifier.member_id).where(Identifier.workspace_id == workspace.id,
                                                     Identifier.type.in_(kinds)).group_by(Identifier.member_id) \
            .having(func.count(Identifier.type.distinct()) == len(kinds))
        query = query.where(Membership.member_id.in_(holding))
    earned = 0
    for member_id in session.scalars(query.order_by(Membership.member_id)).all():
        earned += bool(earn_if_profile_complete(session, workspace, member_id, now=now))
    return earned
