"""Loyalty on the live path: orders earn points and refunds take them (and growth value) back, a referred
friend's first qualifying order rewards both members and its full refund claws that back, events of the
types the programme rewards earn points — in the ingest request's transaction (registered in
:func:`memberops.ingest.live.default_hooks`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.identity.models import Member
from memberops.ingest.live import HookResult, members_by_customer_key
from memberops.ingest.models import LiveOrder, LiveRefund
from memberops.ingest.schemas import EventIn, Issue, OrderItemIn
from memberops.loyalty import enrolment, event_earning, ledger, points, referrals, tiers
from memberops.loyalty.programmes import active_programme, programme_in_force


def _workspace(session: Session, workspace_id: str) -> Workspace:
    workspace = session.get(Workspace, workspace_id)
    assert workspace is not None  # the order's foreign key guarantees it
    return workspace


def order_lines(items: Sequence[OrderItemIn]) -> tuple[ledger.OrderLine, ...]:
    """An order's posted items as the earn rules read them."""
    return tuple(ledger.OrderLine(item.sku, item.category, item.quantity, item.amount) for item in items)


def earn_on_order(session: Session, order: LiveOrder, lines: Sequence[OrderItemIn] = ()) -> HookResult | None:
    """The points the order earned its buyer (its ``lines`` for category and SKU rules), or ``None`` when
    the buyer is unknown or not enrolled; then, under the same lock, the buyer's tier is upgraded if the
    order qualifies them (a tier benefit the programme names but nobody defined is reported as a warning)."""
    earned = _earn(session, order, order_lines(lines))
    if earned is None:
        return None
    upgrade = tiers.on_order(session, _workspace(session, order.workspace_id), order)
    if upgrade is None or not upgrade.grants.missing:
        return HookResult(points=earned)
    return HookResult(points=earned, warnings=[
        Issue(field="", code="tier_benefit_not_defined",
              message=f"tier {upgrade.tier} gives benefit {code!r}, which is not defined: not granted")
        for code in upgrade.grants.missing])


def _enrolled_elsewhere(session: Session, workspace: Workspace, member_id: str, channel: str) -> bool:
    """A member marked enrolled elsewhere (a customer record posted with ``is_enrolled``, an import) gets
    their membership recorded now; ``False`` when the member is not enrolled at all."""
    if not session.scalar(_IS_ENROLLED, {"member_id": member_id}):  # every non-member's order asks: keep it light
        return False
    member = session.get(Member, member_id)
    assert member is not None
    enrolment.ensure_membership(session, workspace, member, channel=channel, now=points.utcnow())
    return True


_IS_ENROLLED = select(Member.is_enrolled).where(Member.id == bindparam("member_id"))


def _earn(session: Session, order: LiveOrder, lines: Sequence[ledger.OrderLine]) -> int | None:
    """The points the order earned its buyer, or ``None`` when the buyer is unknown or not earning (not
    enrolled, or their membership expired or was cancelled).

    A member marked enrolled elsewhere gets their membership recorded here, on their first order. In a
    spend-threshold programme a buyer who never joined is enrolled by the order that brings their spend to
    the threshold, and that order earns unless the programme says ``crossing_order_earns: false``."""
    if order.member_id is None:
        return None
    workspace = _workspace(session, order.workspace_id)
    earned = points.earn_for_order(session, workspace, order, lines=lines)
    if earned is not None:
        return earned
    if _enrolled_elsewhere(session, workspace, order.member_id, order.channel):
        return points.earn_for_order(session, workspace, order, lines=lines)
    rules = active_programme(session, workspace.id).programme.enrolment
    if rules.mode != "spend_threshold" or rules.spend_threshold is None:
        return None
    if enrolment.join_by_spend(session, workspace, order):
        if not rules.spend_threshold.crossing_order_earns:
            return 0
        return points.earn_for_order(session, workspace, order, lines=lines)
    # a concurrent order may have enrolled the buyer while this one waited for the member's lock
    return points.earn_for_order(session, workspace, order, lines=lines)


def reverse_on_refund(session: Session, refund: LiveRefund, order: LiveOrder) -> HookResult | None:
    """The points the refund took back, or ``None`` when its order earned none; the order's growth value
    is taken back in the same proportion (never twice; a lower tier waits for the evaluation), and the
    refund counts against the order's imported twin for spend and order-count tiers."""
    workspace = _workspace(session, order.workspace_id)
    reversed_points = points.reverse_for_refund(session, workspace, refund, order)
    tiers.reverse_growth_for_refund(session, workspace, refund, order)
    tiers.count_refund_for_tiers(session, workspace.id, refund)
    return None if reversed_points is None else HookResult(points=reversed_points)


def reward_referral_on_order(
    session: Session, order: LiveOrder, lines: Sequence[OrderItemIn] = (),
) -> HookResult | None:
    """Referral rewards when the order is a referred friend's first qualifying purchase (see
    :func:`memberops.loyalty.referrals.reward_on_order`); a reward coupon not issued is a warning. The
    order's ``points_earned`` stays the buyer's purchase points."""
    if order.member_id is None:
        return None
    outcome = referrals.reward_on_order(session, _workspace(session, order.workspace_id), order)
    if outcome is None or not outcome.warnings:
        return None
    return HookResult(warnings=[Issue(field="", code="referral_coupon_not_issued", message=warning)
                                for warning in outcome.warnings])


def claw_back_referral_on_refund(session: Session, refund: LiveRefund, order: LiveOrder) -> HookResult | None:
    """Referral rewards taken back when the refund fully refunds the rewarded order within its window."""
    if order.member_id is not None:
        referrals.claw_back_on_refund(session, _workspace(session, order.workspace_id), refund, order)
    return None


def earn_on_events(session: Session, workspace: Workspace, events: Sequence[EventIn]) -> list[HookResult | None]:
    """Points (and growth value) for the events of the types the programme rewards, each for its known,
    enrolled member (:func:`memberops.loyalty.event_earning.earn_for_event`, keyed ``{channel}:{event_id}``).

    The programme is read once for the batch without writing anything; events of other types, and
    anonymous ones, cost a set lookup each and touch no loyalty table."""
    results: list[HookResult | None] = [None] * len(events)
    rewarded = event_earning.rewarded_event_types(programme_in_force(session, workspace.id))
    if not rewarded:
        return results
    wanted = [index for index, event in enumerate(events) if event.type in rewarded and event.customer_key]
    if not wanted:
        return results
    workspace = _workspace(session, workspace.id)  # this session's copy, as the order hooks read it
    members = members_by_customer_key(session, workspace.id,
                                      {(events[i].channel, str(events[i].customer_key)) for i in wanted})
    for index in wanted:
        event = events[index]
        member_id = members.get((event.channel, str(event.customer_key)))
        if member_id is None:
            continue
        key = event_earning.event_key(event.channel, event.event_id)
        earned = event_earning.earn_for_event(session, workspace, member_id, event.type, key, event.occurred_at)
        if earned is None and _enrolled_elsewhere(session, workspace, member_id, event.channel):
            earned = event_earning.earn_for_event(session, workspace, member_id, event.type, key, event.occurred_at)
        if earned is not None:
            results[index] = HookResult(points=earned)
    return results
