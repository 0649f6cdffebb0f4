"""Tiers in the state store: the qualifying metric over a window, upgrades on the live path, downgrades at
evaluation, manual changes, growth value, and the benefits a tier gives.

Every change of a member's tier happens with the member's ``points_account`` row locked (the lock every
points movement takes; on the live path the order's earning already holds it), so an order's upgrade and
an evaluation never interleave for one member. Upgrades happen as soon as an order qualifies; downgrades
only in :func:`evaluate_tiers`, which applies the keep-tier bar and the grace period. Each change appends a
history row and a ``tier_changed`` loyalty event (for journeys); a tier's benefits are granted once per
member, tier and period (the grant's idempotency key), however often the order or the evaluation is
replayed. The window and qualification arithmetic is in :mod:`memberops.loyalty.tier_rules`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    MetaData,
    Select,
    String,
    Subquery,
    Table,
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.orm import Session, aliased

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor, record
from memberops.db.base import UTCDateTime, utcnow
from memberops.db.dialect import (
    create_temporary,
    drop_temporary,
    insert_many,
    locked,
)
from memberops.identity.models import Member
from memberops.ingest.models import LiveOrder, LiveRefund
from memberops.loyalty import ledger, tier_rules
from memberops.loyalty.benefit_models import BenefitGrant
from memberops.loyalty.benefits import GrantRequest, _benefit_by_code, grant_benefit, grant_benefits
from memberops.loyalty.errors import MemberNotEnrolled, UnknownTier
from memberops.loyalty.models import LoyaltyEvent, Membership, PointsAccount
from memberops.loyalty.points import lock_account, zone_of
from memberops.loyalty.programme import Tier
from memberops.loyalty.programmes import ActiveProgramme, active_programme
from memberops.loyalty.tier_models import GrowthMovement, MemberTier, QualifyingOrder, TierChange


def tier_of(session: Session, workspace_id: str, member_id: str) -> MemberTier | None:
    return session.scalar(select(MemberTier).where(MemberTier.workspace_id == workspace_id,
                                                   MemberTier.member_id == member_id))


# --- growth value ----------------------------------------------------------------------------------------


def award_growth(session: Session, workspace_id: str, member_id: str, *, value: int, source_type: str,
                 source_id: str, idempotency_key: str, occurred_at: datetime) -> bool:
    """Record ``value`` growth earned; ``False`` (and nothing recorded) when the key was seen before or the
    value is not positive."""
    if value <= 0:
        return False
    seen = session.scalar(select(GrowthMovement.id).where(GrowthMovement.workspace_id == workspace_id,
                                                          GrowthMovement.idempotency_key == idempotency_key))
    if seen is not None:
        return False
    session.add(GrowthMovement(workspace_id=workspace_id, member_id=member_id, value=value, source_type=source_type,
                               source_id=source_id[:200], idempotency_key=idempotency_key[:200],
                               occurred_at=occurred_at, created_at=utcnow()))
    session.flush()
    return True


def award_event_growth(session: Session, workspace: Workspace, member_id: str, event: str, *, idempotency_key: str,
                       now: datetime | None = None, occurred_at: datetime | None = None) -> int:
    """The growth the programme gives for ``event`` (``tier_rules.growth_events``), recorded once per key
    as of ``occurred_at`` (default: now); then the member is upgraded if that qualifies them. Returns the
    growth recorded (0 on a replay)."""
    now = now or utcnow()
    programme = active_programme(session, workspace.id)
    value = programme.programme.tier_rules.growth_events.get(event, 0)
    lock_account(session, workspace.id, member_id)
    if not award_growth(session, workspace.id, member_id, value=value, source_type="event", source_id=event,
                        idempotency_key=f"growth:event:{idempotency_key}", occurred_at=occurred_at or now):
        return 0
    upgrade_if_qualified(session, workspace, member_id, now=now, programme=programme)
    return value


def reverse_growth_for_refund(session: Session, workspace: Workspace, refund: LiveRefund, order: LiveOrder) -> int:
    """Take back the order's growth value in proportion to what has been refunded of it
    (``order.refunded_amount`` includes ``refund``), as the points are: rounded half up, all of it on a
    full refund, cumulative so partial refunds add up to what one full refund takes. Recorded once per
    refund (a replay takes nothing more), dated at the order's time, so it lowers the window the growth was
    earned in. Returns the growth taken back (0 when the order recorded none).

    A lower metric never downgrades here: only the evaluation does (:func:`evaluate_tiers`)."""
    order_ref = f"{order.channel}:{order.order_id}"
    earned = session.scalar(select(GrowthMovement).where(GrowthMovement.workspace_id == workspace.id,
                                                         GrowthMovement.idempotency_key == f"growth:order:{order_ref}"))
    if earned is None:
        return 0
    lock_account(session, workspace.id, earned.member_id)
    key = f"growth:refund:{refund.channel}:{refund.refund_id}"
    if session.scalar(select(GrowthMovement.id).where(GrowthMovement.workspace_id == workspace.id,
                                                      GrowthMovement.idempotency_key == key)) is not None:
        return 0
    already = -int(session.scalar(select(func.coalesce(func.sum(GrowthMovement.value), 0)).where(
        GrowthMovement.member_id == earned.member_id, GrowthMovement.source_type == "refund",
        GrowthMovement.source_id == order_ref)) or 0)
    value = ledger.reversal_target(earned.value, order.paid_amount, order.refunded_amount) - already
    if value <= 0:
        return 0
    session.add(GrowthMovement(workspace_id=workspace.id, member_id=earned.member_id, value=-value,
                               source_type="refund", source_id=order_ref, idempotency_key=key,
                               occurred_at=earned.occurred_at, created_at=utcnow()))
    session.flush()
    return value


def count_refund_for_tiers(session: Session, workspace_id: str, refund: LiveRefund) -> None:
    """Add a live refund to its order's imported twin (:class:`QualifyingOrder`), when the backfill recorded
    one: the twin holds every distinct refund of the order the backfill knew (the lake's and the live
    ones), so the metric — which takes the larger of the twin's and the live order's refunded amounts —
    stays the sum of the order's refunds, not the larger part of them, until the next backfill sets the
    twin anew (from the same refunds, each once)."""
    session.execute(update(_IMPORTED_ORDERS).where(
        _IMPORTED_ORDERS.c.workspace_id == workspace_id, _IMPORTED_ORDERS.c.channel == refund.channel,
        _IMPORTED_ORDERS.c.order_id == refund.order_id).values(
        refunded_amount=case((_IMPORTED_ORDERS.c.refunded_amount + refund.amount > _IMPORTED_ORDERS.c.paid_amount,
                              _IMPORTED_ORDERS.c.paid_amount),
                             else_=_IMPORTED_ORDERS.c.refunded_amount + refund.amount),
        updated_at=utcnow()))


def _order_growth(programme: ActiveProgramme, order: LiveOrder) -> int:
    raw = order.paid_amount * programme.programme.tier_rules.growth_per_unit
    return int(raw.to_integral_value(rounding=ROUND_FLOOR))


# --- the metric ------------------------------------------------------------------------------------------


_LIVE_ORDERS = cast(Table, LiveOrder.__table__)
_IMPORTED_ORDERS = cast(Table, QualifyingOrder.__table__)


def qualifying_orders(workspace_id: str, *, buyers: Select[Any] | None = None, start: datetime | None = None,
                      until: datetime | None = None) -> Subquery:
    """The orders spend and order-count tiers count, one row per order (``member_id``, ``ordered_at``,
    ``paid_amount``, ``refunded_amount``): the orders posted live (``live_order``) and the imported ones
    the backfill recorded (:class:`QualifyingOrder`), an order in both taken once (its largest paid and
    refunded amounts: a refund recorded by either path nets it, never twice).

    ``member_id`` is the buyer's survivor: a live order stays under the id of a member later merged into
    another (facts are never rewritten) and counts for the member that absorbed them, down any chain of
    merges. ``buyers`` (a select of member ids, e.g. :func:`buyers_of`) keeps the orders of those members
    only; ``start`` and ``until`` the orders placed in ``[start, until)``."""
    branches = []
    for table in (_LIVE_ORDERS, _IMPORTED_ORDERS):
        query = select(table.c.member_id, table.c.channel, table.c.order_id, table.c.ordered_at, table.c.paid_amount,
                       table.c.refunded_amount)
        # by the buyers (of the workspace) alone: with the workspace too, SQLite reads all its orders
        query = query.where(table.c.member_id.in_(buyers)) if buyers is not None \
            else query.where(table.c.workspace_id == workspace_id)
        if start is not None:
            query = query.where(table.c.ordered_at >= start)
        if until is not None:
            query = query.where(table.c.ordered_at < until)
        branches.append(query)
    facts = union_all(*branches).subquery()
    per_order = select(func.min(facts.c.ordered_at).label("ordered_at"),
                       func.max(facts.c.paid_amount).label("paid_amount"),
                       func.max(facts.c.refunded_amount).label("refunded_amount"))
    if buyers is not None:  # one member's orders (and their absorbed members'): no survivor to look up
        return per_order.add_columns(func.min(facts.c.member_id).label("member_id")) \
            .group_by(facts.c.channel, facts.c.order_id).subquery()
    survivors = _survivors(workspace_id)
    buyer = func.coalesce(survivors.c.survivor_id, facts.c.member_id)
    return (per_order.add_columns(buyer.label("member_id"))
            .select_from(facts).outerjoin(survivors, survivors.c.member_id == facts.c.member_id)
            .group_by(buyer, facts.c.channel, facts.c.order_id)).subquery()


def _survivors(workspace_id: str) -> Subquery:
    """Each merged member and the member that absorbed them in the end (following chains of merges)."""
    chain = select(Member.id.label("member_id"), Member.merged_into_id.label("survivor_id")).where(
        Member.workspace_id == workspace_id, Member.merged_into_id.is_not(None)).cte("merge_chain", recursive=True)
    step = aliased(Member)
    chain = chain.union(select(chain.c.member_id, step.merged_into_id).join(step, step.id == chain.c.survivor_id)
                        .where(step.merged_into_id.is_not(None)))
    last = aliased(Member)
    return (select(chain.c.member_id, chain.c.survivor_id).join(last, last.id == chain.c.survivor_id)
            .where(last.merged_into_id.is_(None))).subquery()


def buyers_of(workspace_id: str, member_id: str) -> Select[Any]:
    """The member and every member merged into them, down any chain of merges: whose orders count for the
    member's tier."""
    absorbed = select(Member.id).where(Member.workspace_id == workspace_id, Member.id == member_id) \
        .cte("absorbed", recursive=True)
    absorbed = absorbed.union(select(Member.id).join(absorbed, Member.merged_into_id == absorbed.c.id))
    return select(absorbed.c.id)


def metric_value(session: Session, programme: ActiveProgramme, workspace_id: str, member_id: str,
                 window: tier_rules.Window, *, as_of: datetime) -> Decimal:
    """The qualifying metric earned in ``window`` up to ``as_of``: spend (paid less refunded), orders not
    fully refunded, or growth value earned (never a balance: growth is not spent). Spend and orders count
    the orders posted live and the imported ones alike, each once, the orders of members merged into this
    one included (:func:`qualifying_orders`)."""
    until = min(window.end, as_of + tier_rules.TICK)
    metric = programme.programme.tier_rules.metric
    if metric == "growth":
        total = session.scalar(select(func.coalesce(func.sum(GrowthMovement.value), 0)).where(
            GrowthMovement.member_id == member_id, GrowthMovement.workspace_id == workspace_id,
            GrowthMovement.occurred_at >= window.start, GrowthMovement.occurred_at < until))
        return Decimal(int(total or 0))
    orders = qualifying_orders(workspace_id, buyers=buyers_of(workspace_id, member_id), start=window.start,
                               until=until)
    if metric == "orders":
        count = session.scalar(select(func.count()).select_from(orders).where(
            orders.c.refunded_amount < orders.c.paid_amount))
        return Decimal(int(count or 0))
    spend = session.scalar(select(func.coalesce(func.sum(orders.c.paid_amount - orders.c.refunded_amount), 0)))
    return max(Decimal(str(spend or 0)), Decimal(0))


def _anniversary(session: Session, workspace: Workspace, member_id: str) -> date:
    membership = session.scalar(select(Membership).where(Membership.workspace_id == workspace.id,
                                                         Membership.member_id == member_id))
    if membership is None:
        raise MemberNotEnrolled(member_id)
    return membership.enrolled_at.astimezone(zone_of(workspace)).date()


def _thresholds(tiers: Sequence[Tier]) -> list[Decimal]:
    return [tier.threshold for tier in tiers]


def _index(tiers: Sequence[Tier], code: str | None) -> int | None:
    """The position of ``code`` in the programme's tiers (a tier since removed from the programme counts as
    none)."""
    for index, tier in enumerate(tiers):
        if tier.code == code:
            return index
    return None


# --- changing a member's tier ----------------------------------------------------------------------------


def _change(
    session: Session, workspace: Workspace, programme: ActiveProgramme, member_id: str, held: MemberTier | None,
    to: str | None, *, reason: str, period: str, metric: Decimal | None, at: datetime, actor: str = "",
    note: str = "",
) -> TierChange:
    previous = held.tier if held is not None else None
    if to is None and held is not None:
        session.delete(held)
    elif to is not None and held is None:
        session.add(MemberTier(workspace_id=workspace.id, member_id=member_id, tier=to, since=at,
                               programme_version=programme.version, updated_at=at))
    elif to is not None and held is not None and held.tier != to:
        held.tier, held.since, held.programme_version, held.updated_at = to, at, programme.version, at
    change = TierChange(workspace_id=workspace.id, member_id=member_id, from_tier=previous, to_tier=to, reason=reason,
                        period=period, metric_value="" if metric is None else str(metric), note=note[:500],
                        actor=actor[:100], programme_version=programme.version, at=at)
    session.add(change)
    if previous != to:
        session.add(LoyaltyEvent(workspace_id=workspace.id, member_id=member_id, type="tier_changed", occurred_at=at,
                                 payload={"from": previous, "to": to, "reason": reason}))
    session.flush()
    return change


@dataclass(frozen=True)
class TierGrants:
    """Benefit grants a tier made now, and the benefit codes the programme names but no definition has
    (reported, never dropped silently: the tier still changes)."""

    made: int = 0
    missing: tuple[str, ...] = ()


def grant_tier_benefits(session: Session, workspace: Workspace, programme: ActiveProgramme, member_id: str,
                        tier_code: str, *, at: datetime, anniversary: date) -> TierGrants:
    """Give the tier's benefits for the period ``at`` falls in, once per member, tier and period (the
    grant's idempotency key: a replay gives nothing more)."""
    tier = next((t for t in programme.programme.tiers if t.code == tier_code), None)
    if tier is None or not tier.benefits:
        return TierGrants()
    period = tier_rules.benefit_period(programme.programme.tier_rules.window, at, zone_of(workspace),
                                       anniversary=anniversary)
    made, missing = 0, []
    for benefit in tier.benefits:
        definition = _benefit_by_code(session, workspace.id, benefit.code)
        if definition is None:
            missing.append(benefit.code)
            continue
        granted = grant_benefit(session, workspace.id, member_id, definition, benefit.quantity, f"tier:{tier.code}",
                                f"tier:{member_id}:{tier.code}:{period.label}:{benefit.code}",
                                valid_until=period.end, now=at)
        made += 0 if granted.is_replay else 1
    return TierGrants(made, tuple(missing))


@dataclass(frozen=True)
class Upgrade:
    tier: str
    grants: TierGrants


def upgrade_if_qualified(session: Session, workspace: Workspace, member_id: str, *, now: datetime | None = None,
                         programme: ActiveProgramme | None = None, actor: str = "", note: str = "") -> Upgrade | None:
    """Upgrade the member when the current window's metric reaches a higher tier (never downgrades); the
    caller holds the member's points lock. ``None`` when nothing changed. ``actor`` and ``note`` go to the
    tier history (what brought the upgrade about, when it is not an order or an event of the member's)."""
    programme = programme or active_programme(session, workspace.id)
    tiers = programme.programme.tiers
    if not tiers:
        return None
    now = now or utcnow()
    rules = programme.programme.tier_rules
    anniversary = _anniversary(session, workspace, member_id)
    window = tier_rules.window_containing(rules.window, now, zone_of(workspace), anniversary=anniversary)
    metric = metric_value(session, programme, workspace.id, member_id, window, as_of=now)
    held = tier_of(session, workspace.id, member_id)
    decision = tier_rules.upgrade(_index(tiers, held.tier if held else None), _thresholds(tiers), metric)
    if decision.reason is None or decision.tier is None:
        return None
    code = tiers[decision.tier].code
    _change(session, workspace, programme, member_id, held, code, reason="upgrade", period=window.label,
            metric=metric, at=now, actor=actor, note=note)
    return Upgrade(code, grant_tier_benefits(session, workspace, programme, member_id, code, at=now,
                                             anniversary=anniversary))


def on_order(session: Session, workspace: Workspace, order: LiveOrder, *, now: datetime | None = None) -> Upgrade | None:
    """The live order hook's tier step, after the order earned points (under the member's lock): record
    the order's growth value, then upgrade if the member now qualifies."""
    if order.member_id is None:
        return None
    programme = active_programme(session, workspace.id)
    if not programme.programme.tiers:
        return None
    if programme.programme.tier_rules.metric == "growth":
        award_growth(session, workspace.id, order.member_id, value=_order_growth(programme, order), source_type="order",
                     source_id=f"{order.channel}:{order.order_id}",
                     idempotency_key=f"growth:order:{order.channel}:{order.order_id}", occurred_at=order.ordered_at)
    return upgrade_if_qualified(session, workspace, order.member_id, now=now, programme=programme)


def on_merge(session: Session, workspace: Workspace, programme: ActiveProgramme, absorbed: str, survivor: str, *,
             now: datetime) -> Upgrade | None:
    """The tier step of a OneID merge, after the absorbed member's growth value, orders' points and
    benefit grants moved to the survivor (:func:`memberops.loyalty.merge.transfer_loyalty`, which holds
    both members' points locks).

    The survivor keeps the higher of the two tiers (taking the absorbed member's with its ``since``, a
    ``merge`` entry in the history and no new benefit grants: the absorbed member's grants moved with
    them); then, as the issue's "upgrade as soon as qualified" asks, the survivor is upgraded at once when
    what they hold now — their own value and the value merged in — reaches a higher tier (an ``upgrade``
    noting the merge, with the tier's benefits). Never a downgrade: that waits for the evaluation."""
    note = f"merged with member {absorbed}"
    gone = tier_of(session, workspace.id, absorbed)
    if gone is not None:
        kept = tier_of(session, workspace.id, survivor)
        order = [tier.code for tier in programme.programme.tiers]

        def rank(code: str | None) -> int:
            return order.index(code) if code in order else -1

        taken, since = gone.tier, gone.since
        session.delete(gone)
        session.flush()
        if rank(taken) > rank(kept.tier if kept is not None else None):
            _change(session, workspace, programme, survivor, kept, taken, reason="merge", period="", metric=None,
                    at=now, actor="system:merge", note=note)
            held = tier_of(session, workspace.id, survivor)
            assert held is not None
            held.since = since  # held since the absorbed member won it: the evaluation judges from then
            session.flush()
    if not programme.programme.tiers or session.scalar(select(Membership.id).where(
            Membership.workspace_id == workspace.id, Membership.member_id == survivor)) is None:
        return None
    return upgrade_if_qualified(session, workspace, survivor, now=now, programme=programme, actor="system:merge",
                                note=note)


def set_tier(session: Session, workspace: Workspace, member_id: str, tier_code: str | None, *, reason: str,
             actor: Actor, now: datetime | None = None) -> MemberTier | None:
    """An operator sets the member's tier (``None``: no tier), with a reason; audited. The tier is then
    judged at evaluation like any other (from the time it was set)."""
    now = now or utcnow()
    programme = active_programme(session, workspace.id)
    if tier_code is not None and _index(programme.programme.tiers, tier_code) is None:
        raise UnknownTier(tier_code, [t.code for t in programme.programme.tiers])
    lock_account(session, workspace.id, member_id)
    held = tier_of(session, workspace.id, member_id)
    previous = held.tier if held else None
    who = f"{actor.type}:{actor.id}"
    _change(session, workspace, programme, member_id, held, tier_code, reason="manual", period="", metric=None, at=now,
            actor=who, note=reason)
    if tier_code is not None and tier_code != previous:
        grant_tier_benefits(session, workspace, programme, member_id, tier_code, at=now,
                            anniversary=_anniversary(session, workspace, member_id))
    record(session, actor, "loyalty.tier.set", workspace_id=workspace.id, target_type="member", target_id=member_id,
           detail={"from": previous, "to": tier_code})
    return tier_of(session, workspace.id, member_id)


# --- evaluation ------------------------------------------------------------------------------------------


@dataclass
class TierRun:
    as_of: datetime
    members: int = 0
    upgraded: int = 0
    downgraded: int = 0
    kept: int = 0
    benefits_granted: int = 0
    by_tier: dict[str, int] = field(default_factory=dict)
    missing_benefits: set[str] = field(default_factory=set)


def _verdict(tiers: Sequence[Tier], keep_ratio: Decimal, held: str | None, held_since: datetime | None, *,
             current_metric: Decimal, assessed_metric: Decimal,
             assessed: tier_rules.Window) -> tuple[tier_rules.Decision, str | None]:
    """The evaluation's decision for a member holding ``held`` (a code, or none) since ``held_since``, and the
    tier code it leaves them with (no I/O: the per-member and the set-based evaluation share it)."""
    current = _index(tiers, held)
    since = held_since if held is not None and current is not None else None
    decision = tier_rules.evaluate(current, since, thresholds=_thresholds(tiers), keep_ratio=keep_ratio,
                                   current_metric=current_metric, assessed_metric=assessed_metric, assessed=assessed)
    if held is not None and current is None and decision.tier is None:  # a tier the programme no longer has
        decision = tier_rules.Decision(None, "downgrade")
    return decision, tiers[decision.tier].code if decision.tier is not None else None


def evaluate_member(session: Session, workspace: Workspace, programme: ActiveProgramme, member_id: str, *,
                    as_of: datetime, run: TierRun) -> None:
    """Judge one member as of ``as_of`` (the caller holds their points lock): upgrade, keep or downgrade,
    and give the benefits of the tier they hold for the current period. Running it twice changes nothing
    more: a downgrade restarts ``since``, and ``keep`` is recorded once per assessed window."""
    tiers = programme.programme.tiers
    rules = programme.programme.tier_rules
    zone = zone_of(workspace)
    anniversary = _anniversary(session, workspace, member_id)
    current_window = tier_rules.window_containing(rules.window, as_of, zone, anniversary=anniversary)
    assessed = tier_rules.assessed_window(rules.window, as_of, zone, anniversary=anniversary,
                                          grace_months=rules.grace_months)
    held = tier_of(session, workspace.id, member_id)
    current_metric = metric_value(session, programme, workspace.id, member_id, current_window, as_of=as_of)
    assessed_metric = metric_value(session, programme, workspace.id, member_id, assessed, as_of=as_of)
    decision, to = _verdict(tiers, rules.keep_ratio, held.tier if held else None, held.since if held else None,
                            current_metric=current_metric, assessed_metric=assessed_metric, assessed=assessed)
    if decision.reason == "keep":
        if session.scalar(select(TierChange.id).where(
                TierChange.member_id == member_id, TierChange.workspace_id == workspace.id,
                TierChange.reason == "keep", TierChange.period == assessed.label, TierChange.to_tier == to)) is None:
            _change(session, workspace, programme, member_id, held, to, reason="keep", period=assessed.label,
                    metric=assessed_metric, at=as_of, actor="system:evaluation")
            run.kept += 1
    elif decision.reason is not None:
        is_up = decision.reason == "upgrade"
        _change(session, workspace, programme, member_id, held, to, reason=decision.reason,
                period=current_window.label if is_up else assessed.label,
                metric=current_metric if is_up else assessed_metric, at=as_of, actor="system:evaluation")
        if is_up:
            run.upgraded += 1
        else:
            run.downgraded += 1
    if to is not None:
        run.by_tier[to] = run.by_tier.get(to, 0) + 1
        grants = grant_tier_benefits(session, workspace, programme, member_id, to, at=as_of, anniversary=anniversary)
        run.benefits_granted += grants.made
        run.missing_benefits.update(grants.missing)


def evaluate_tiers_per_member(session: Session, workspace: Workspace, *, as_of: datetime | None = None) -> TierRun:
    """The member-by-member evaluation (each member's lock, metric and writes in turn): the reference the
    set-based :func:`evaluate_tiers` is tested against and measured by; same results, many times slower."""
    as_of = as_of or utcnow()
    run = TierRun(as_of=as_of)
    programme = active_programme(session, workspace.id)
    held = set(session.scalars(select(MemberTier.member_id).where(MemberTier.workspace_id == workspace.id)))
    if not programme.programme.tiers and not held:
        return run
    members = session.scalars(select(Membership.member_id).where(Membership.workspace_id == workspace.id)
                              .order_by(Membership.member_id)).all()
    for member_id in members:
        try:
            lock_account(session, workspace.id, member_id)
        except MemberNotEnrolled:  # a membership without a points account yet: nothing earned, no tier
            continue
        evaluate_member(session, workspace, programme, member_id, as_of=as_of, run=run)
        run.members += 1
    return run


_TIERS = cast(Table, MemberTier.__table__)
_HISTORY = cast(Table, TierChange.__table__)
_EVENTS = cast(Table, LoyaltyEvent.__table__)
_GRANTS = cast(Table, BenefitGrant.__table__)
_GROWTH = cast(Table, GrowthMovement.__table__)
_WINDOWS = Table(
    "tmp_tier_window", MetaData(),
    Column("member_id", String(64), primary_key=True),
    Column("current_start", UTCDateTime()), Column("current_until", UTCDateTime()),
    Column("assessed_start", UTCDateTime()), Column("assessed_until", UTCDateTime()),
    prefixes=["TEMPORARY"],
)


@dataclass(frozen=True)
class _Judged:
    member_id: str
    to: str | None
    anniversary: date


def _metrics(session: Session, programme: ActiveProgramme, workspace_id: str,
             windows: dict[str, tuple[tier_rules.Window, tier_rules.Window]], *,
             as_of: datetime) -> tuple[dict[str, tuple[Decimal, Decimal]], Decimal]:
    """Every member's metric in their current and assessed windows, in one grouped statement (the windows,
    one pair per member, go through a temporary table), as :func:`metric_value` computes them one by one;
    and the metric of a member with nothing in a window."""
    limit = as_of + tier_rules.TICK
    create_temporary(session, _WINDOWS)
    insert_many(session, insert(_WINDOWS), {
        "member_id": list(windows),
        "current_start": [c.start for c, _ in windows.values()],
        "current_until": [min(c.end, limit) for c, _ in windows.values()],
        "assessed_start": [a.start for _, a in windows.values()],
        "assessed_until": [min(a.end, limit) for _, a in windows.values()],
    }, {})
    w = _WINDOWS.c
    metric = programme.programme.tier_rules.metric
    source: Table | Subquery = _GROWTH if metric == "growth" else qualifying_orders(workspace_id)
    at = source.c.occurred_at if metric == "growth" else source.c.ordered_at
    counted: ColumnElement[Any] = source.c.value if metric == "growth" else literal(1) if metric == "orders" else (
        source.c.paid_amount - source.c.refunded_amount)
    condition: ColumnElement[bool] = (source.c.refunded_amount < source.c.paid_amount) if metric == "orders" else true()
    in_current = and_(at >= w.current_start, at < w.current_until)
    in_assessed = and_(at >= w.assessed_start, at < w.assessed_until)

    def total(inside: ColumnElement[bool]) -> ColumnElement[Any]:
        summed = case((and_(inside, condition), counted))
        return func.count(summed) if metric == "orders" else func.coalesce(func.sum(summed), 0)

    rows = session.execute(
        select(w.member_id, total(in_current), total(in_assessed)).select_from(_WINDOWS)
        .join(source, and_(source.c.member_id == w.member_id, or_(in_current, in_assessed),
                            source.c.workspace_id == workspace_id if metric == "growth" else true()))
        .group_by(w.member_id)).all()
    empty = session.scalar(select(total(false())).select_from(source).where(false()))
    drop_temporary(session, _WINDOWS)

    def value(raw: Any) -> Decimal:
        if metric == "spend":
            return max(Decimal(str(raw or 0)), Decimal(0))
        return Decimal(int(raw or 0))

    return {member_id: (value(current), value(assessed)) for member_id, current, assessed in rows}, value(empty)


def evaluate_tiers(session: Session, workspace: Workspace, *, as_of: datetime | None = None) -> TierRun:
    """Evaluate every member of the programme as of ``as_of`` (default: now), set-based: every member's
    points lock in one statement, every metric in one grouped statement, the verdicts by the pure rules
    over plain rows, and the changes (tier rows, history, ``tier_changed`` events, benefit grants) written in
    bulk. The same results as :func:`evaluate_tiers_per_member`, and running it twice at one ``as_of``
    changes nothing the second time."""
    as_of = as_of or utcnow()
    run = TierRun(as_of=as_of)
    programme = active_programme(session, workspace.id)
    tiers = programme.programme.tiers
    rules = programme.programme.tier_rules
    ws = workspace.id
    session.flush()
    if not tiers and session.scalar(select(MemberTier.id).where(MemberTier.workspace_id == ws).limit(1)) is None:
        return run
    # the locks, in member order as the live path takes them one by one
    session.execute(locked(select(PointsAccount.id).where(PointsAccount.workspace_id == ws)
                           .order_by(PointsAccount.member_id))).all()
    members = session.execute(
        select(Membership.member_id, Membership.enrolled_at, MemberTier.tier, MemberTier.since)
        .join(PointsAccount, and_(PointsAccount.workspace_id == ws, PointsAccount.member_id == Membership.member_id))
        .outerjoin(MemberTier, and_(MemberTier.workspace_id == ws, MemberTier.member_id == Membership.member_id))
        .where(Membership.workspace_id == ws).order_by(Membership.member_id)).all()
    if not members:
        return run
    zone = zone_of(workspace)
    by_anniversary: dict[date, tuple[tier_rules.Window, tier_rules.Window]] = {}
    windows: dict[str, tuple[tier_rules.Window, tier_rules.Window]] = {}
    anniversaries: dict[str, date] = {}
    for member_id, enrolled_at, _, _ in members:
        anniversary = enrolled_at.astimezone(zone).date()
        if anniversary not in by_anniversary:
            by_anniversary[anniversary] = (
                tier_rules.window_containing(rules.window, as_of, zone, anniversary=anniversary),
                tier_rules.assessed_window(rules.window, as_of, zone, anniversary=anniversary,
                                           grace_months=rules.grace_months))
        windows[member_id] = by_anniversary[anniversary]
        anniversaries[member_id] = anniversary
    metrics, nothing = _metrics(session, programme, ws, windows, as_of=as_of)
    kept_before = {(m, p, t) for m, p, t in session.execute(
        select(TierChange.member_id, TierChange.period, TierChange.to_tier).where(
            TierChange.workspace_id == ws, TierChange.reason == "keep",
            TierChange.period.in_(sorted({a.label for _, a in by_anniversary.values()}))))}

    history: list[tuple[str, str | None, str | None, str, str, Decimal]] = []
    holding: list[_Judged] = []
    for member_id, _, held, held_since in members:
        current_window, assessed = windows[member_id]
        current_metric, assessed_metric = metrics.get(member_id, (nothing, nothing))
        decision, to = _verdict(tiers, rules.keep_ratio, held, held_since, current_metric=current_metric,
                                assessed_metric=assessed_metric, assessed=assessed)
        if decision.reason == "keep":
            if (member_id, assessed.label, to) not in kept_before:
                history.append((member_id, held, to, "keep", assessed.label, assessed_metric))
                run.kept += 1
        elif decision.reason is not None:
            is_up = decision.reason == "upgrade"
            history.append((member_id, held, to, decision.reason, current_window.label if is_up else assessed.label,
                            current_metric if is_up else assessed_metric))
            if is_up:
                run.upgraded += 1
            else:
                run.downgraded += 1
        if to is not None:
            run.by_tier[to] = run.by_tier.get(to, 0) + 1
            holding.append(_Judged(member_id, to, anniversaries[member_id]))
        run.members += 1
    _write_changes(session, workspace, programme, history, at=as_of)
    _grant_in_bulk(session, workspace, programme, holding, at=as_of, run=run)
    return run


def _write_changes(session: Session, workspace: Workspace, programme: ActiveProgramme,
                   history: Sequence[tuple[str, str | None, str | None, str, str, Decimal]], *, at: datetime) -> None:
    """What :func:`_change` does per member, for all of them: the tier rows (insert, update, delete), one
    history row each, and a ``tier_changed`` event where the tier changed."""
    if not history:
        return
    ws, version = workspace.id, programme.version
    moved = [(m, held, to) for m, held, to, *_ in history if held != to]
    table = _TIERS
    gone = [m for m, _, to in moved if to is None]
    for start in range(0, len(gone), 500):
        session.execute(delete(table).where(table.c.workspace_id == ws, table.c.member_id.in_(gone[start:start + 500])))
    changed = [(m, to) for m, held, to in moved if to is not None and held is not None]
    if changed:
        session.connection().execute(
            update(table).where(table.c.workspace_id == ws, table.c.member_id == bindparam("b_member"))
            .values(tier=bindparam("b_tier"), since=bindparam("b_at", type_=UTCDateTime()),
                    programme_version=version, updated_at=bindparam("b_at", type_=UTCDateTime())),
            [{"b_member": m, "b_tier": to, "b_at": at} for m, to in changed])
    new = [(m, to) for m, held, to in moved if to is not None and held is None]
    if new:
        insert_many(session, insert(table), {"member_id": [m for m, _ in new], "tier": [t for _, t in new]},
                    {"workspace_id": ws, "since": at, "programme_version": version, "updated_at": at})
    insert_many(session, insert(_HISTORY), {
        "member_id": [h[0] for h in history], "from_tier": [h[1] for h in history],
        "to_tier": [h[2] for h in history], "reason": [h[3] for h in history], "period": [h[4] for h in history],
        "metric_value": [str(h[5]) for h in history],
    }, {"workspace_id": ws, "note": "", "actor": "system:evaluation", "programme_version": version, "at": at})
    if moved:
        insert_many(session, insert(_EVENTS), {
            "member_id": [m for m, _, _ in moved],
            "payload": [{"from": held, "to": to, "reason": reason} for m, held, to, reason, *_ in history
                        if held != to],
        }, {"workspace_id": ws, "type": "tier_changed", "occurred_at": at})
    for row in [o for o in session.identity_map.values() if isinstance(o, MemberTier)]:
        session.expire(row)  # the ORM's copies of the tier rows written above (deleted ones stay expired)


def _grant_in_bulk(session: Session, workspace: Workspace, programme: ActiveProgramme, holding: Sequence[_Judged], *,
                   at: datetime, run: TierRun) -> None:
    """What :func:`grant_tier_benefits` does per member, for all of them: each tier's benefits for the
    period ``at`` falls in, once per member, tier and period (the same grant keys), one bulk grant
    (:func:`memberops.loyalty.benefits.grant_benefits`) per benefit and tier."""
    ws = workspace.id
    tiers = {t.code: t for t in programme.programme.tiers}
    definitions = {}
    for code in sorted({judged.to for judged in holding if judged.to is not None}):  # as per member: held tiers only
        for benefit in tiers[code].benefits:
            definition = _benefit_by_code(session, ws, benefit.code)
            if definition is None:
                run.missing_benefits.add(benefit.code)
            else:
                definitions[benefit.code] = definition
    wanted = [(judged, tiers[judged.to], benefit) for judged in holding if judged.to is not None
              for benefit in tiers[judged.to].benefits if benefit.code in definitions]
    if not wanted:
        return
    zone = zone_of(workspace)
    periods: dict[date, tier_rules.Window] = {}
    by_benefit: dict[tuple[str, str], list[GrantRequest]] = {}  # (benefit, tier) → its grants, in turn
    for judged, tier, benefit in wanted:
        if judged.anniversary not in periods:
            periods[judged.anniversary] = tier_rules.benefit_period(programme.programme.tier_rules.window, at, zone,
                                                                    anniversary=judged.anniversary)
        period = periods[judged.anniversary]
        by_benefit.setdefault((benefit.code, tier.code), []).append(GrantRequest(
            judged.member_id, benefit.quantity, f"tier:{judged.member_id}:{tier.code}:{period.label}:{benefit.code}",
            valid_until=period.end))
    for (code, tier_code), requests in by_benefit.items():
        run.benefits_granted += grant_benefits(session, ws, definitions[code], requests, f"tier:{tier_code}",
                                               now=at).made


# --- reading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierStatus:
    tier: str | None
    name: str | None
    since: datetime | None
    metric: str
    metric_value: Decimal
    window: tier_rules.Window
    next_tier: str | None
    next_threshold: Decimal | None
    missing: Decimal | None
    history: Sequence[TierChange]


def tier_status(session: Session, workspace: Workspace, member_id: str, *, now: datetime | None = None,
                history_limit: int = 50) -> TierStatus:
    """The member's tier, since when, the metric in the current window, what the next tier still needs,
    and the tier history (newest first)."""
    now = now or utcnow()
    programme = active_programme(session, workspace.id)
    rules = programme.programme.tier_rules
    tiers = programme.programme.tiers
    anniversary = _anniversary(session, workspace, member_id)
    window = tier_rules.window_containing(rules.window, now, zone_of(workspace), anniversary=anniversary)
    metric = metric_value(session, programme, workspace.id, member_id, window, as_of=now) if tiers else Decimal(0)
    held = tier_of(session, workspace.id, member_id)
    index = _index(tiers, held.tier if held else None)
    following = tier_rules.missing_for_next(_thresholds(tiers), index, metric)
    history = session.scalars(select(TierChange).where(TierChange.workspace_id == workspace.id,
                                                       TierChange.member_id == member_id)
                              .order_by(TierChange.id.desc()).limit(history_limit)).all()
    return TierStatus(
        tier=held.tier if held else None, name=tiers[index].name if index is not None else None,
        since=held.since if held else None, metric=rules.metric, metric_value=metric, window=window,
        next_tier=tiers[following[0]].code if following else None,
        next_threshold=tiers[following[0]].threshold if following else None,
        missing=following[1] if following else None, history=history,
    )
