"""Loyalty on the live path: orders earn points and refunds take them back, in the ingest request's
transaction (registered in :func:`memberops.ingest.live.default_hooks`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.identity.models import Member
from memberops.ingest.live import HookResult
from memberops.ingest.models import LiveOrder, LiveRefund
from memberops.ingest.schemas import Issue
from memberops.loyalty import enrolment, points, tiers
from memberops.loyalty.programmes import active_programme


def _workspace(session: Session, workspace_id: str) -> Workspace:
    workspace = session.get(Workspace, workspace_id)
    assert workspace is not None  # the order's foreign key guarantees it
    return workspace


def earn_on_order(session: Session, order: LiveOrder) -> HookResult | None:
    """The points the order earned its buyer, or ``None`` when the buyer is unknown or not enrolled; then,
    under the same lock, the buyer's tier is upgraded if the order qualifies them (a tier benefit the
    programme names but nobody defined is reported as a warning)."""
    earned = _earn(session, order)
    if earned is None:
        return None
    upgrade = tiers.on_order(session, _workspace(session, order.workspace_id), order)
    if upgrade is None or not upgrade.grants.missing:
        return HookResult(points=earned)
    return HookResult(points=earned, warnings=[
        Issue(field="", code="tier_benefit_not_defined",
              message=f"tier {upgrade.tier} gives benefit {code!r}, which is not defined: not granted")
        for code in upgrade.grants.missing])


def _earn(session: Session, order: LiveOrder) -> int | None:
    """The points the order earned its buyer, or ``None`` when the buyer is unknown or not earning (not
    enrolled, or their membership expired or was cancelled).

    A member marked enrolled elsewhere (a customer record posted with ``is_enrolled``, an import) gets
    their membership recorded here, on their first order. In a spend-threshold programme a buyer who never
    joined is enrolled by the order that brings their spend to the threshold, and that order earns unless
    the programme says ``crossing_order_earns: false``."""
    if order.member_id is None:
        return None
    workspace = _workspace(session, order.workspace_id)
    earned = points.earn_for_order(session, workspace, order)
    if earned is not None:
        return earned
    member = session.get(Member, order.member_id)
    if member is None:
        return None
    if member.is_enrolled and enrolment.membership_of(session, workspace.id, member.id) is None:
        enrolment.ensure_membership(session, workspace, member, channel=order.channel, now=points.utcnow())
        return points.earn_for_order(session, workspace, order)
    rules = active_programme(session, workspace.id).programme.enrolment
    if rules.mode != "spend_threshold" or rules.spend_threshold is None:
        return None
    if enrolment.join_by_spend(session, workspace, order):
        return points.earn_for_order(session, workspace, order) if rules.spend_threshold.crossing_order_earns else 0
    # a concurrent order may have enrolled the buyer while this one waited for the member's lock
    return points.earn_for_order(session, workspace, order)


def reverse_on_refund(session: Session, refund: LiveRefund, order: LiveOrder) -> HookResult | None:
    """The points the refund took back, or ``None`` when its order earned none."""
    reversed_points = points.reverse_for_refund(session, _workspace(session, order.workspace_id), refund, order)
    return None if reversed_points is None else HookResult(points=reversed_points)
