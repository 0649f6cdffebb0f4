"""Referrals channels recorded: identity records carrying a ``referrer_code`` (a referral code, or — how
WeChat "invite a friend" and POS referrals record it — the referrer's member card number), bound in bulk.

The warehouse finds, per referred member, the earliest record naming a referrer (its ``joined_at`` is the
binding time), the member's first order, and their first qualifying order after binding (paid at least
``referrals.min_paid_amount``, not fully refunded inside the return window: an order whose rewards would
have been clawed back does not count). The state store then settles the guards set-wise — enrolled
referrer and friend, not the same member, no shared identifier, no referral ring, the first binding wins
(a friend already bound keeps that binding), bought before binding → ``ineligible``, the referrer's cap per
period in binding order → ``over_cap`` — inserts the bindings in one statement per chunk, and rewards each
converted friend through the live path's :func:`memberops.loyalty.referrals.reward_on_order` (the same
idempotency keys), so a rerun, or a live order later, never rewards twice.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import ibis
from sqlalchemy import Table, and_, select
from sqlalchemy.orm import Session, aliased

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.db.dialect import insert_ignoring_conflicts
from memberops.identity.models import Identifier, Member
from memberops.ingest.models import LiveOrder
from memberops.insight import config_store
from memberops.insight.config import InsightConfig
from memberops.lake.engine import Warehouse
from memberops.loyalty import points
from memberops.loyalty.models import Membership
from memberops.loyalty.programme import Referrals
from memberops.loyalty.programmes import active_programme
from memberops.loyalty.referral_models import ReferralBinding, ReferralCode
from memberops.loyalty.referrals import REWARDED_STATUSES, period_window, reward_on_order
from memberops.runtime import Context

CHUNK = 1_000
BINDINGS = cast(Table, ReferralBinding.__table__)


@dataclass(frozen=True)
class RecordedReferralsSummary:
    bound: int  # bindings made by this run
    over_cap: int
    ineligible: int
    refused: int  # unknown code, referrer or friend not enrolled, self-referral, ring
    already_bound: int  # the friend had a binding (the first one stands)
    rewarded: int  # friends whose first qualifying purchase rewarded both, by this run
    points: int  # referral points granted by this run
    seconds: float


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def recorded_referrals(warehouse: Warehouse, workspace_id: str, rules: Referrals, wait_days: int,
                       uncounted_statuses: tuple[str, ...] = InsightConfig().uncounted_statuses) -> list[dict[str, Any]]:
    """Per referred member: ``member_id``, ``code``, ``bound_at``, ``first_order_at`` and the first
    qualifying order after binding (``order_channel``, ``order_id``, ``ordered_at``, ``paid_amount``)."""
    identity_map = warehouse.table("identity_map")
    links = identity_map.filter(identity_map.workspace_id == workspace_id).select("channel", "source_id", "member_id")
    records = warehouse.table("identity_records")
    records = records.filter(records.workspace_id == workspace_id, records.referrer_code.notnull(),
                             records.referrer_code != "", records.joined_at.notnull())
    referred = records.select("channel", "source_id", "referrer_code", "joined_at").join(links, ["channel", "source_id"])
    first = referred.group_by("member_id").aggregate(bound_at=referred.joined_at.min(),
                                                     code=referred.referrer_code.argmin(referred.joined_at))
    orders = warehouse.table("orders")
    orders = orders.filter(orders.workspace_id == workspace_id, orders.paid_amount.notnull())
    if uncounted_statuses:
        orders = orders.filter(orders.status.isnull() | ~orders.status.isin(list(uncounted_statuses)))
    owned = orders.join(links.select(channel="channel", customer_key="source_id", buyer="member_id"),
                        ["channel", "customer_key"])
    owned = owned.select(buyer=owned.buyer, order_channel=owned.channel, order_id=owned.order_id,
                         ordered_at=owned.ordered_at, paid_amount=owned.paid_amount)
    candidates = owned.join(first.select(buyer="member_id", bound_at="bound_at"), "buyer")  # referred buyers only
    firsts = candidates.group_by("buyer").aggregate(first_order_at=candidates.ordered_at.min())
    refunds = warehouse.table("refunds")
    refunds = refunds.filter(refunds.workspace_id == workspace_id)
    refunded = refunds.group_by(order_channel=refunds.channel, order_id=refunds.order_id).aggregate(
        refunded=refunds.amount.sum(), last_refund_at=refunds.refunded_at.max())
    candidates = candidates.left_join(refunded, ["order_channel", "order_id"]).select(
        "buyer", "order_channel", "order_id", "ordered_at", "paid_amount", "bound_at", "refunded", "last_refund_at")
    clawed = (candidates.refunded.fill_null(0) >= candidates.paid_amount) & (
        candidates.last_refund_at < candidates.ordered_at + ibis.interval(days=wait_days))
    qualifying = candidates.filter(candidates.ordered_at >= candidates.bound_at,
                                   candidates.paid_amount >= ibis.literal(rules.min_paid_amount, type="decimal(18, 2)"),
                                   ~clawed.fill_null(False))
    earliest = qualifying.group_by("buyer").aggregate(ordered_at=qualifying.ordered_at.min())
    chosen = qualifying.join(earliest, ["buyer", "ordered_at"]).select(
        "buyer", "order_channel", "order_id", "ordered_at", "paid_amount")
    chosen = chosen.group_by("buyer").aggregate(
        order_id=chosen.order_id.min(), order_channel=chosen.order_channel.argmin(chosen.order_id),
        ordered_at=chosen.ordered_at.min(), paid_amount=chosen.paid_amount.argmin(chosen.order_id))
    result = first.left_join(firsts, first.member_id == firsts.buyer).select(
        "member_id", "code", "bound_at", "first_order_at")
    result = result.left_join(chosen, result.member_id == chosen.buyer).select(
        "member_id", "code", "bound_at", "first_order_at", "order_channel", "order_id", "ordered_at", "paid_amount")
    return warehouse.to_pyarrow(result.order_by(["bound_at", "member_id"])).to_pylist()


def _referrers_by_code(session: Session, workspace_id: str, codes: set[str]) -> dict[str, str]:
    """Each code's member: a referral code first, else the member card number's earliest holder (merges
    followed to the survivor)."""
    by_referral_code: dict[str, str] = {}
    by_card: dict[str, str] = {}
    listed = sorted(codes)
    for start in range(0, len(listed), CHUNK):
        part = listed[start:start + CHUNK]
        by_referral_code.update({code: member_id for code, member_id in session.execute(
            select(ReferralCode.code, ReferralCode.member_id).where(
                ReferralCode.workspace_id == workspace_id, ReferralCode.code.in_([c.upper() for c in part])))})
        for value, member_id in session.execute(select(Identifier.value, Identifier.member_id).where(
                Identifier.workspace_id == workspace_id, Identifier.type == "member_card_no",
                Identifier.value.in_([c.strip() for c in part])).order_by(Identifier.id)):
            by_card.setdefault(value, member_id)
    by_code = {code: by_referral_code.get(code.upper()) or by_card.get(code.strip()) for code in codes}
    merged: dict[str, str] = {absorbed: str(into) for absorbed, into in session.execute(select(
        Member.id, Member.merged_into_id).where(Member.workspace_id == workspace_id, Member.merged_into_id.is_not(None)))}
    survivors: dict[str, str] = {}
    for code, holder in by_code.items():
        seen: set[str] = set()
        while holder is not None and holder in merged and holder not in seen:
            seen.add(holder)
            holder = merged[holder]
        if holder is not None:
            survivors[code] = holder
    return survivors


def _sharing_pairs(session: Session, workspace_id: str, friends: list[str]) -> set[tuple[str, str]]:
    """(member, other member) pairs holding a same identifier, for the given members."""
    mine, theirs = aliased(Identifier), aliased(Identifier)
    pairs: set[tuple[str, str]] = set()
    for start in range(0, len(friends), CHUNK):
        pairs.update((a, b) for a, b in session.execute(
            select(mine.member_id, theirs.member_id).join(theirs, and_(
                theirs.workspace_id == mine.workspace_id, theirs.type == mine.type, theirs.value == mine.value,
                theirs.member_id != mine.member_id))
            .where(mine.workspace_id == workspace_id, mine.member_id.in_(friends[start:start + CHUNK]))
        ))
    return pairs


def _is_ring(referrer_of: dict[str, str], friend: str, referrer: str) -> bool:
    current, steps = referrer, 0
    while current in referrer_of and steps < 64:
        current, steps = referrer_of[current], steps + 1
        if current == friend:
            return True
    return False


def bind_recorded_referrals(context: Context, workspace: Workspace, *, now: datetime | None = None) -> RecordedReferralsSummary:
    """Bind and reward the referrals the channels recorded (see the module); a no-op when the programme has
    referrals switched off."""
    started = time.perf_counter()
    now = now or utcnow()
    with context.store.read() as session:
        programme = active_programme(session, workspace.id).programme
        uncounted = config_store.current(session, workspace.id).uncounted_statuses  # as insight counts orders
    rules = programme.referrals
    if not rules.enabled:
        return RecordedReferralsSummary(0, 0, 0, 0, 0, 0, 0, time.perf_counter() - started)
    wait = rules.pending_days if rules.pending_days is not None else programme.earn.pending_days
    rows = [row for row in recorded_referrals(context.warehouse(), workspace.id, rules, wait, uncounted)
            if _utc(row["bound_at"]) <= now]
    counts: dict[str, int] = defaultdict(int)
    rewards: list[dict[str, Any]] = []
    with context.store.transaction() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        zone = points.zone_of(ws)
        referrer_of_code = _referrers_by_code(session, ws.id, {row["code"] for row in rows})
        enrolled = set(session.scalars(select(Membership.member_id).where(Membership.workspace_id == ws.id)))
        existing = session.execute(select(ReferralBinding.friend_member_id, ReferralBinding.referrer_member_id,
                                          ReferralBinding.status, ReferralBinding.bound_at)
                                   .where(ReferralBinding.workspace_id == ws.id)).all()
        referrer_of = {friend: referrer for friend, referrer, _, _ in existing}
        in_period: dict[tuple[str, datetime], int] = defaultdict(int)
        for _, earlier_referrer, status, bound_at in existing:
            if status in REWARDED_STATUSES:
                in_period[(earlier_referrer, period_window(rules, bound_at, zone)[0])] += 1
        sharing = _sharing_pairs(session, ws.id, sorted({row["member_id"] for row in rows}))
        new_rows = []
        for row in rows:  # in binding order: the first binding wins, the cap counts in time order
            friend, referrer = row["member_id"], referrer_of_code.get(row["code"])
            if friend in referrer_of:
                counts["already_bound"] += 1
                continue
            if (referrer is None or referrer == friend or friend not in enrolled or referrer not in enrolled
                    or (friend, referrer) in sharing or _is_ring(referrer_of, friend, referrer)):
                counts["refused"] += 1
                continue
            bound_at = _utc(row["bound_at"])
            first_order = row["first_order_at"]
            period = (referrer, period_window(rules, bound_at, zone)[0])
            if first_order is not None and _utc(first_order) < bound_at:
                status = "ineligible"
            elif rules.cap_per_period is not None and in_period[period] >= rules.cap_per_period:
                status = "over_cap"
            else:
                status = "awaiting_purchase"
                in_period[period] += 1
                if row["order_id"] is not None and _utc(row["ordered_at"]) <= now:
                    rewards.append(row)
            counts[status] += 1
            referrer_of[friend] = referrer
            new_rows.append({"workspace_id": ws.id, "friend_member_id": friend, "referrer_member_id": referrer,
                             "code": row["code"][:64], "source": "import", "status": status, "bound_at": bound_at,
                             "referrer_points": 0, "friend_points": 0, "clawbacks": 0, "updated_at": now})
        statement = insert_ignoring_conflicts(session, BINDINGS, ("workspace_id", "friend_member_id"))
        for start in range(0, len(new_rows), CHUNK):
            session.execute(statement, new_rows[start:start + CHUNK])
    granted = rewarded = 0
    for start in range(0, len(rewards), CHUNK // 2):
        with context.store.transaction() as session:
            ws = session.get(Workspace, workspace.id)
            assert ws is not None
            touched: set[str] = set()
            for row in rewards[start:start + CHUNK // 2]:
                order = LiveOrder(workspace_id=ws.id, channel=row["order_channel"], order_id=row["order_id"],
                                  customer_key="", member_id=row["member_id"], ordered_at=_utc(row["ordered_at"]),
                                  paid_amount=row["paid_amount"], refunded_amount=Decimal(0))
                outcome = reward_on_order(session, ws, order, now=now)
                if outcome is not None:
                    rewarded += 1
                    granted += outcome.binding.referrer_points + outcome.binding.friend_points
                    touched.update((outcome.binding.referrer_member_id, outcome.binding.friend_member_id))
            programme_now = active_programme(session, ws.id)
            for member_id in sorted(touched):  # lapse rewards already past their expiry, as the backfill does
                points.catch_up(session, points.lock_account(session, ws.id, member_id), programme_now, now)
            session.flush()
    return RecordedReferralsSummary(
        bound=len(new_rows), over_cap=counts["over_cap"], ineligible=counts["ineligible"], refused=counts["refused"],
        already_bound=counts["already_bound"], rewarded=rewarded, points=granted,
        seconds=time.perf_counter() - started)
