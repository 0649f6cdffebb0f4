"""The live path: customers, orders, refunds and events posted over HTTP, written through the state
store and its outbox in the caller's one transaction.

Every service here is idempotent on the fact's natural key within ``(workspace, channel)``: a replay is
reported as ``duplicate``, changes nothing and emits nothing. A batch is a handful of statements whatever
its size: orders go in with ``INSERT … ON CONFLICT DO NOTHING … RETURNING`` (the rows the database reports
inserted are the new ones), events with the same insert checked by its row count, outbox rows in one
``executemany``; so two requests racing with one key never both count it, on SQLite or PostgreSQL. Only
new facts go to the outbox, from which the exporter moves them to the lake exactly once.

Loyalty's seam is :class:`LiveHooks`: functions called for every accepted order and refund, in the same
transaction, after the fact is written and before the request commits; an exception from one rolls the
whole request back, so points are never earned for an order that was not kept, nor the reverse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Literal, cast

from pydantic_core import to_json
from sqlalchemy import Table, bindparam, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.db.dialect import insert_ignoring_conflicts, locked
from memberops.db.outbox import OutboxRow
from memberops.errors import DomainError
from memberops.identity.errors import InvalidIdentifier
from memberops.identity.models import IdentityLink, Member
from memberops.identity.service import resolve_customer
from memberops.ingest.errors import ConcurrentIngest, OrderNotFound, RefundExceedsOrder
from memberops.ingest.lake_facts import LakeOrder, LakeOrders
from memberops.ingest.models import LiveOrder, LiveRefund, ReceivedKey
from memberops.ingest.schemas import CustomerIn, EventIn, Issue, OrderIn, OrderItemIn, ParsedItem, RefundIn
from memberops.lake.registry import table_spec

Status = Literal["accepted", "duplicate", "rejected"]

RECEIVED_KEYS = cast(Table, ReceivedKey.__table__)
LIVE_ORDERS = cast(Table, LiveOrder.__table__)
OUTBOX = cast(Table, OutboxRow.__table__)

@dataclass(frozen=True, slots=True)
class HookResult:
    """What a hook reports about an accepted order or refund: points earned or taken back (loyalty), and
    warnings for the item's result (a coupon that could not be redeemed: the order is kept all the same)."""

    points: int | None = None
    warnings: Sequence[Issue] = ()


OrderHook = Callable[[Session, LiveOrder, Sequence[OrderItemIn]], HookResult | None]
"""Called as ``hook(session, order, lines)`` for each order accepted, in the request's transaction, with the
order's lines as posted (empty when none were sent: they are not kept in the state store); ``None`` when
the order is not its concern."""
RefundHook = Callable[[Session, LiveRefund, LiveOrder], HookResult | None]
"""Called as ``hook(session, refund, order)`` for each refund accepted; ``order.refunded_amount`` already
includes the refund; ``None`` when the refund is not its concern."""
EventsHook = Callable[[Session, Workspace, Sequence[EventIn]], Sequence[HookResult | None]]
"""Called as ``hook(session, workspace, events)`` once per request with the events it accepted (new ones
only), in the request's transaction; answers one result per event (``None``: not its concern). One call
per batch, so a hook can tell in one look that a thousand page views are none of its business."""


@dataclass(frozen=True)
class LiveHooks:
    """What else happens, in the same transaction, when a live order or refund is accepted.

    Loyalty earns points on ``on_order_accepted`` and reverses them on ``on_refund_accepted``, and earns
    points for the event types its programme rewards on ``on_events_accepted``; a hook that raises rolls
    back the whole request (the order or refund, its outbox rows and any points). Replays (duplicates)
    call no hook.
    """

    on_order_accepted: tuple[OrderHook, ...] = ()
    on_refund_accepted: tuple[RefundHook, ...] = ()
    on_events_accepted: tuple[EventsHook, ...] = ()


NO_HOOKS = LiveHooks()


@cache
def default_hooks() -> LiveHooks:
    """The hooks the HTTP API runs live orders, refunds and events through: coupons presented on an order
    are redeemed (and restored on a full refund), enrolled members earn points (taken back on refunds), a
    referred friend's first qualifying order rewards the referrer and the friend (clawed back on its full
    refund), and members earn for the events the programme rewards.

    Built once (every live request asks for them; they are plain functions, the same for the process)."""
    from memberops.loyalty.coupon_live import redeem_on_live_order, restore_on_full_refund
    from memberops.loyalty.hooks import (
        claw_back_referral_on_refund,
        earn_on_events,
        earn_on_order,
        reverse_on_refund,
        reward_referral_on_order,
    )

    return LiveHooks(on_order_accepted=(redeem_on_live_order, earn_on_order, reward_referral_on_order),
                     on_refund_accepted=(restore_on_full_refund, reverse_on_refund, claw_back_referral_on_refund),
                     on_events_accepted=(earn_on_events,))


def _report(outcome: Outcome, results: Iterable[HookResult | None]) -> None:
    """Add what several hooks reported to ``outcome``: points summed (``None`` when none reported any)."""
    for result in results:
        if result is None:
            continue
        if result.points is not None:
            outcome.points = (outcome.points or 0) + result.points
        if result.warnings:
            outcome.warnings = [*outcome.warnings, *result.warnings]


@dataclass(slots=True)
class Outcome:
    """What became of one valid item."""

    status: Status
    member_id: str | None = None
    problem: DomainError | None = None  # why a rule refused it (unknown order, refund too large…)
    warnings: Sequence[Issue] = ()  # what a hook reported about an accepted item
    points: int | None = None  # what the hooks reported: points earned (orders) or taken back (refunds)


@dataclass(slots=True)
class ItemOutcome:
    """What became of one item of a request, valid or not, in the request's order."""

    index: int
    status: Status
    key: str | None
    member_id: str | None = None
    errors: Sequence[Issue] = ()
    warnings: Sequence[Issue] = ()
    problem: DomainError | None = None
    points: int | None = None


ACCEPTED = Outcome("accepted")
DUPLICATE = Outcome("duplicate")


# --- events ----------------------------------------------------------------------------------------------


def ingest_events(
    session: Session, workspace: Workspace, events: Sequence[EventIn], *, hooks: LiveHooks = NO_HOOKS
) -> list[Outcome]:
    """Record new events (one outbox row each, for the lake's ``events``) and run
    ``hooks.on_events_accepted`` once with the new ones; replays are duplicates.

    Events have no state of their own: their natural keys go to ``received_key`` so replays are
    recognised, and their content only to the outbox — a thousand events are three statements (the keys
    already received, the new keys, the outbox rows) and no ORM object. The keys are read before they are
    inserted; on SQLite the write transaction serialises writers so nothing can come between, and on
    PostgreSQL a key taken by a concurrent request in between shows as a shortfall in the inserted count,
    which rolls this request back (:class:`ConcurrentIngest`) rather than emit an event twice.
    """
    now = utcnow()
    first = _first_positions((e.channel, e.event_id) for e in events)
    received = _received(session, workspace.id, "event", first)
    new = [key for key in first if key not in received]
    stamp = _driver_value(session, RECEIVED_KEYS.c.received_at, now)
    inserted = _insert_many(
        session, RECEIVED_KEYS, ("workspace_id", "kind", "channel", "key", "received_at"),
        [(workspace.id, "event", channel, key, stamp) for channel, key in new],
        skip_conflicts_on=("workspace_id", "kind", "channel", "key"),
    )
    if inserted != len(new):  # a concurrent request took some of these keys after we looked (PostgreSQL)
        raise ConcurrentIngest("event")
    accepted = set(new)
    outcomes: list[Outcome] = []
    emitted: list[EventIn] = []
    positions: list[int] = []
    for position, item in enumerate(events):
        key = (item.channel, item.event_id)
        if key in accepted and first[key] == position:
            outcomes.append(ACCEPTED)
            emitted.append(item)
            positions.append(position)
        else:
            outcomes.append(DUPLICATE)
    _emit_all(session, workspace.id, (("events", _event_payload(e)) for e in emitted), now)
    if emitted:
        for hook in hooks.on_events_accepted:
            for position, result in zip(positions, hook(session, workspace, emitted), strict=True):
                if result is not None:
                    if outcomes[position] is ACCEPTED:  # the shared constant: give this event its own
                        outcomes[position] = Outcome("accepted")
                    _report(outcomes[position], (result,))
    return outcomes


# --- orders ----------------------------------------------------------------------------------------------


def ingest_orders(
    session: Session, workspace: Workspace, orders: Sequence[OrderIn], *, hooks: LiveHooks = NO_HOOKS
) -> list[Outcome]:
    """Record new orders as ``LiveOrder`` rows (the buyer's member resolved through the identity link
    when the customer is known, else left empty), emit them and their lines to the lake, and run
    ``hooks.on_order_accepted`` for each; replays are duplicates."""
    now = utcnow()
    first = _first_positions((o.channel, o.order_id) for o in orders)
    members = members_by_customer_key(session, workspace.id, {(o.channel, o.customer_key) for o in orders})
    table = LIVE_ORDERS
    rows = []
    for position in first.values():
        order = orders[position]
        rows.append({
            "workspace_id": workspace.id, "channel": order.channel, "order_id": order.order_id,
            "customer_key": order.customer_key, "member_id": members.get((order.channel, order.customer_key)),
            "store_id": order.store_id, "ordered_at": order.ordered_at, "status": order.status,
            "gross_amount": order.gross_amount, "discount_amount": order.discount_amount,
            "shipping_amount": order.shipping_amount, "paid_amount": order.paid_amount,
            "currency": order.currency, "coupon_codes": order.coupon_codes, "refunded_amount": Decimal("0"),
            "received_at": now,
        })
    inserted: dict[tuple[str, str], int] = {}
    if rows:
        dialect = session.get_bind().dialect.name
        if dialect not in _INSERT_ORDERS:
            _INSERT_ORDERS[dialect] = insert_ignoring_conflicts(
                session, table, ("workspace_id", "channel", "order_id"),
            ).returning(table.c.id, table.c.channel, table.c.order_id)
        returned = session.execute(_INSERT_ORDERS[dialect], rows)
        inserted = {(channel, order_id): row_id for row_id, channel, order_id in returned}
    outcomes: list[Outcome] = []
    accepted: list[OrderIn] = []
    accepted_outcomes: list[Outcome] = []
    for position, order in enumerate(orders):
        key = (order.channel, order.order_id)
        member_id = members.get((order.channel, order.customer_key))
        if key in inserted and first[key] == position:
            outcomes.append(Outcome("accepted", member_id))
            accepted.append(order)
            accepted_outcomes.append(outcomes[-1])
        else:
            outcomes.append(Outcome("duplicate", member_id))
    _emit_all(session, workspace.id, [
        *(("orders", _order_payload(o)) for o in accepted),
        *(("order_items", _order_item_payload(o, line)) for o in accepted for line in o.items),
    ], now)
    if hooks.on_order_accepted and accepted:
        by_key = {(row["channel"], row["order_id"]): row for row in rows}
        for order, outcome in zip(accepted, accepted_outcomes, strict=True):
            key = (order.channel, order.order_id)
            live_order = _persistent_order(session, by_key[key], inserted[key])
            _report(outcome, (hook(session, live_order, order.items) for hook in hooks.on_order_accepted))
    return outcomes


def _persistent_order(session: Session, row: dict[str, Any], row_id: int) -> LiveOrder:
    """The ``LiveOrder`` just inserted from ``row``, in the session as if it had been read back (its
    times in UTC, as the column reads them): the hooks get it without a second round trip."""
    order = LiveOrder(**{**row, "ordered_at": row["ordered_at"].astimezone(UTC)}, id=row_id)
    make_transient_to_detached(order)
    session.add(order)
    return order


# Built once: constructing a statement costs more than running it for a single order.
_INSERT_ORDERS: dict[str, Any] = {}  # by dialect
_LINKS = (
    select(IdentityLink.channel, IdentityLink.source_id, IdentityLink.member_id, Member.merged_into_id)
    .join(Member, Member.id == IdentityLink.member_id)
    .where(IdentityLink.workspace_id == bindparam("workspace_id"), IdentityLink.channel == bindparam("channel"),
           IdentityLink.source_id.in_(bindparam("source_ids", expanding=True)))
)


def members_by_customer_key(
    session: Session, workspace_id: str, customer_keys: set[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """The member of each known ``(channel, customer_key)``, following merges to the survivor."""
    if not customer_keys:
        return {}
    links = [
        row for channel, source_ids in _by_channel(customer_keys).items()
        for row in session.execute(_LINKS, {"workspace_id": workspace_id, "channel": channel, "source_ids": source_ids})
    ]
    found = {(channel, source_id): member_id for channel, source_id, member_id, _ in links}
    survivor = {member_id: merged_into for _, _, member_id, merged_into in links if merged_into is not None}
    pending = set(survivor.values())
    for _ in range(16):  # merges are rare and chain rarely; the bound guards against a cycle
        if not pending:
            break
        merged = {absorbed: str(into) for absorbed, into in session.execute(
            select(Member.id, Member.merged_into_id).where(Member.id.in_(pending), Member.merged_into_id.is_not(None))
        )}
        survivor.update(merged)
        pending = set(merged.values()) - set(survivor)

    def resolve(member_id: str) -> str:
        seen: set[str] = set()
        while member_id in survivor and member_id not in seen:
            seen.add(member_id)
            member_id = survivor[member_id]
        return member_id

    return {key: resolve(member_id) for key, member_id in found.items()}


# --- refunds ---------------------------------------------------------------------------------------------


def ingest_refunds(
    session: Session, workspace: Workspace, refunds: Sequence[RefundIn], *, hooks: LiveHooks = NO_HOOKS,
    lake_orders: LakeOrders | None = None,
) -> list[Outcome]:
    """Record new refunds against known orders, add them to the order's ``refunded_amount`` and run
    ``hooks.on_refund_accepted``; replays are duplicates.

    An order imported in bulk (only in the lake) is adopted first when ``lake_orders`` is given: it gets a
    ``LiveOrder`` row carrying the refunds the lake already has for it (never emitted again: the lake has
    the order), so its refund cap holds across both paths and a refund the lake already has is a duplicate.
    A refund of an order found nowhere is rejected (:class:`OrderNotFound`), and so is one that would take
    the order's refunds past its paid amount (:class:`RefundExceedsOrder`). The orders are locked
    (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's write transaction already serialises writers) before
    their refunds are read, so two requests refunding one order queue instead of both spending the same
    refundable amount, and the second sees the first's refund as a duplicate.
    """
    now = utcnow()
    order_keys = sorted({(r.channel, r.order_id) for r in refunds})
    orders: dict[tuple[str, str], LiveOrder] = {}
    known: set[tuple[str, str]] = set()
    if refunds:
        orders = _locked_orders(session, workspace.id, order_keys)
        missing = [key for key in order_keys if key not in orders]
        if missing and lake_orders is not None:
            adopted = lake_orders(workspace.id, missing)
            if adopted:
                _adopt(session, workspace.id, adopted.values(), now)
                orders = _locked_orders(session, workspace.id, order_keys)
                known.update((o.channel, refund_id) for o in adopted.values() for refund_id in o.refund_ids)
        refund_keys = sorted({(r.channel, r.refund_id) for r in refunds})
        known |= {(channel, refund_id) for channel, refund_id in session.execute(
            select(LiveRefund.channel, LiveRefund.refund_id)
            .where(LiveRefund.workspace_id == workspace.id, tuple_(LiveRefund.channel, LiveRefund.refund_id).in_(refund_keys))
        )}
    outcomes: list[Outcome] = []
    accepted: list[tuple[LiveRefund, LiveOrder, Outcome]] = []
    for item in refunds:
        key = (item.channel, item.refund_id)
        if key in known:
            outcomes.append(DUPLICATE)
            continue
        order = orders.get((item.channel, item.order_id))
        if order is None:
            outcomes.append(Outcome("rejected", problem=OrderNotFound(item.channel, item.order_id)))
            continue
        refundable = order.paid_amount - order.refunded_amount
        if item.amount > refundable:
            outcomes.append(Outcome("rejected", problem=RefundExceedsOrder(order.order_id, item.amount, refundable)))
            continue
        known.add(key)
        order.refunded_amount = order.refunded_amount + item.amount
        refund = LiveRefund(workspace_id=workspace.id, channel=item.channel, refund_id=item.refund_id,
                            order_id=item.order_id, refunded_at=item.refunded_at, amount=item.amount,
                            sku=item.sku, quantity=item.quantity, received_at=now)
        session.add(refund)
        outcome = Outcome("accepted", order.member_id)
        accepted.append((refund, order, outcome))
        outcomes.append(outcome)
    try:
        session.flush()
    except IntegrityError:  # the same refund_id sent for another order by a concurrent request
        raise ConcurrentIngest("refund") from None
    _emit_all(session, workspace.id, [("refunds", _refund_payload(r)) for r, _, _ in accepted], now)
    if hooks.on_refund_accepted:
        for refund, order, outcome in accepted:
            _report(outcome, (hook(session, refund, order) for hook in hooks.on_refund_accepted))
    return outcomes


def _locked_orders(
    session: Session, workspace_id: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], LiveOrder]:
    return {(o.channel, o.order_id): o for o in session.scalars(locked(
        select(LiveOrder)
        .where(LiveOrder.workspace_id == workspace_id, tuple_(LiveOrder.channel, LiveOrder.order_id).in_(keys))
        .order_by(LiveOrder.id)  # one lock order for every request: no deadlock between two
    ))}


def _adopt(session: Session, workspace_id: str, orders: Iterable[LakeOrder], now: datetime) -> None:
    """``LiveOrder`` rows for orders the lake holds, so live refunds can be capped and locked against them.

    Nothing is emitted: the lake has these orders. A concurrent request adopting the same order is
    harmless (the insert skips a key already present).
    """
    orders = list(orders)
    members = members_by_customer_key(session, workspace_id, {(o.channel, o.customer_key) for o in orders})
    session.execute(insert_ignoring_conflicts(session, LIVE_ORDERS, ("workspace_id", "channel", "order_id")), [{
        "workspace_id": workspace_id, "channel": o.channel, "order_id": o.order_id, "customer_key": o.customer_key,
        "member_id": members.get((o.channel, o.customer_key)), "store_id": o.store_id, "ordered_at": o.ordered_at,
        "status": o.status, "gross_amount": o.gross_amount, "discount_amount": o.discount_amount,
        "shipping_amount": o.shipping_amount, "paid_amount": o.paid_amount, "currency": o.currency,
        "coupon_codes": o.coupon_codes, "refunded_amount": o.refunded_amount, "received_at": now,
    } for o in orders])


# --- customers -------------------------------------------------------------------------------------------


def ingest_customers(session: Session, workspace: Workspace, customers: Sequence[CustomerIn]) -> list[Outcome]:
    """Resolve each customer record to a member (identity's live OneID) and emit its identity record,
    attributes and consents included; a known ``(channel, source_id)`` is a duplicate and changes nothing.
    """
    outcomes: list[Outcome] = []
    for customer in customers:
        try:
            resolution = resolve_customer(
                session, workspace, channel=customer.channel, source_id=customer.source_id,
                identifiers=customer.identifiers(), is_enrolled=customer.is_enrolled,
                attributes=customer_attributes(customer),
            )
        except InvalidIdentifier as exc:  # not expected: identifiers arrive normalised
            outcomes.append(Outcome("rejected", problem=exc))
            continue
        except IntegrityError:  # the same customer created by a concurrent request (PostgreSQL)
            raise ConcurrentIngest("customer") from None
        if customer.is_enrolled and resolution.is_new_record:  # loyalty's membership is the record of enrolment
            from memberops.loyalty.enrolment import record_channel_enrolment

            record_channel_enrolment(session, workspace, resolution.member, channel=customer.channel,
                                     joined_at=customer.joined_at)
        if resolution.is_new_record:  # a new record may complete an enrolled member's profile: points, once
            from memberops.loyalty.event_earning import earn_if_profile_complete

            earn_if_profile_complete(session, workspace, resolution.member.id)
        outcomes.append(Outcome("accepted" if resolution.is_new_record else "duplicate", resolution.member.id))
    return outcomes


_CUSTOMER_ATTRIBUTES = (
    "first_name", "last_name", "full_name", "gender", "birthday", "street_number", "address_line", "city",
    "province", "postcode", "country", "joined_at", "join_source", "store_id", "associate_id", "referrer_code",
    "attributes",
)


def customer_attributes(customer: CustomerIn) -> dict[str, Any]:
    """A customer record's canonical attributes (everything but its identifiers) as JSON-friendly values."""
    values: dict[str, Any] = {}
    for name in _CUSTOMER_ATTRIBUTES:
        value = getattr(customer, name)
        if value is not None:
            values[name] = value.isoformat() if isinstance(value, date | datetime) else value
    consents = customer.consents()
    if consents:
        values["consents"] = consents
    return values


# --- one request ----------------------------------------------------------------------------------------


def ingest(
    session: Session, workspace: Workspace, kind: str, items: Sequence[ParsedItem], *, hooks: LiveHooks,
    lake_orders: LakeOrders | None = None,
) -> list[ItemOutcome]:
    """Ingest the valid ones of a request's ``items`` of ``kind``; one outcome per item, in order.

    Items that failed validation are reported rejected with their errors; the others are kept whatever
    became of their neighbours.
    """
    valid = [item for item in items if item.value is not None]
    values = [item.value for item in valid]
    if kind == "events":
        outcomes = ingest_events(session, workspace, values, hooks=hooks)
    elif kind == "orders":
        outcomes = ingest_orders(session, workspace, values, hooks=hooks)
    elif kind == "refunds":
        outcomes = ingest_refunds(session, workspace, values, hooks=hooks, lake_orders=lake_orders)
    elif kind == "customers":
        outcomes = ingest_customers(session, workspace, values)
    else:
        raise ValueError(f"no live ingest for {kind!r}")
    by_index = {item.index: outcome for item, outcome in zip(valid, outcomes, strict=True)}
    results: list[ItemOutcome] = []
    for item in items:
        outcome = by_index.get(item.index)
        if outcome is None:
            results.append(ItemOutcome(item.index, "rejected", item.key, errors=item.errors, warnings=item.warnings))
            continue
        errors = item.errors
        if outcome.problem is not None:
            errors = [Issue(field=getattr(outcome.problem, "field", ""), message=outcome.problem.message,
                            code=outcome.problem.code)]
        warnings = [*item.warnings, *outcome.warnings] if outcome.warnings else item.warnings
        results.append(ItemOutcome(item.index, outcome.status, item.key, outcome.member_id, errors,
                                   warnings, outcome.problem, outcome.points))
    return results


# --- payloads for the lake ------------------------------------------------------------------------------


def _first_positions(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Each key's first position: a key repeated within one request is new once, then a duplicate."""
    first: dict[tuple[str, str], int] = {}
    for position, key in enumerate(keys):
        first.setdefault(key, position)
    return first


def _event_payload(item: EventIn) -> dict[str, Any]:
    return {
        "channel": item.channel, "event_id": item.event_id, "type": item.type, "customer_key": item.customer_key,
        "anonymous_id": item.anonymous_id, "occurred_at": item.occurred_at.isoformat(), "properties": item.properties,
    }


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _order_payload(order: OrderIn) -> dict[str, Any]:
    return {
        "channel": order.channel, "order_id": order.order_id, "customer_key": order.customer_key,
        "store_id": order.store_id, "ordered_at": order.ordered_at.isoformat(), "status": order.status,
        "gross_amount": _money(order.gross_amount), "discount_amount": _money(order.discount_amount),
        "shipping_amount": _money(order.shipping_amount), "paid_amount": _money(order.paid_amount),
        "currency": order.currency, "coupon_codes": order.coupon_codes,
    }


def _order_item_payload(order: OrderIn, line: Any) -> dict[str, Any]:
    return {
        "channel": order.channel, "order_id": order.order_id, "line_no": line.line_no, "sku": line.sku,
        "category": line.category, "brand": line.brand, "quantity": line.quantity,
        "unit_price": _money(line.unit_price), "amount": _money(line.amount),
    }


def _refund_payload(refund: LiveRefund) -> dict[str, Any]:
    return {
        "channel": refund.channel, "refund_id": refund.refund_id, "order_id": refund.order_id,
        "refunded_at": refund.refunded_at.isoformat(), "amount": _money(refund.amount), "sku": refund.sku,
        "quantity": refund.quantity,
    }


def _emit_all(session: Session, workspace_id: str, rows: Iterable[tuple[str, dict[str, Any]]], now: datetime) -> None:
    """Queue ``(topic, payload)`` rows for the lake in one statement (``outbox.emit``, in bulk).

    Each payload is turned into JSON text as it comes, so a generator of payloads never holds them all.
    """
    stamp = _driver_value(session, OUTBOX.c.created_at, now)
    topics: set[str] = set()
    values = []
    for topic, payload in rows:
        if topic not in topics:
            table_spec(topic)  # an unknown topic is a programming error: fail before anything is queued
            topics.add(topic)
        values.append((workspace_id, topic, to_json(payload).decode(), stamp))
    _insert_many(session, OUTBOX, ("workspace_id", "topic", "payload", "created_at"), values)


_RECEIVED = select(ReceivedKey.key).where(
    ReceivedKey.workspace_id == bindparam("workspace_id"), ReceivedKey.kind == bindparam("kind"),
    ReceivedKey.channel == bindparam("channel"), ReceivedKey.key.in_(bindparam("keys", expanding=True)),
)


def _received(session: Session, workspace_id: str, kind: str, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the ``(channel, key)`` natural keys of ``kind`` were received before."""
    return {
        (channel, key) for channel, channel_keys in _by_channel(keys).items()
        for key in session.scalars(_RECEIVED, {"workspace_id": workspace_id, "kind": kind, "channel": channel,
                                               "keys": channel_keys})
    }


def _by_channel(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for channel, key in keys:
        grouped.setdefault(channel, []).append(key)
    return grouped


_COMPILED: dict[tuple[str, str, tuple[str, ...], tuple[str, ...] | None], Any] = {}


def _insert_many(
    session: Session, table: Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]],
    *, skip_conflicts_on: tuple[str, ...] | None = None,
) -> int:
    """``INSERT`` ``rows`` (values in ``columns`` order) with the driver's ``executemany``; returns how
    many rows were inserted (conflicting rows are skipped when ``skip_conflicts_on`` names the key).

    Why not ``session.execute(insert(table), dicts)``: for thousands of small rows SQLAlchemy's per-row
    parameter processing costs several times the database's own work. The statement is still compiled by
    SQLAlchemy for the session's dialect (placeholders, casts, ``ON CONFLICT`` via ``db/dialect.py``);
    only the values skip its processing, so they must already be what the driver takes: strings, numbers,
    JSON as text, and timestamps converted once with :func:`_driver_value`.
    """
    if not rows:
        return 0
    connection = session.connection()
    cache_key = (connection.dialect.name, table.name, columns, skip_conflicts_on)
    compiled = _COMPILED.get(cache_key)
    if compiled is None:
        base = insert_ignoring_conflicts(session, table, skip_conflicts_on) if skip_conflicts_on else insert(table)
        statement = base.values({name: bindparam(name) for name in columns}).inline()
        compiled = _COMPILED[cache_key] = statement.compile(dialect=connection.dialect)
    if compiled.positional:
        order = [columns.index(name) for name in compiled.positiontup or ()]
        parameters: list[Any] = rows if order == list(range(len(columns))) else [
            tuple(row[i] for i in order) for row in rows]
    else:
        parameters = [dict(zip(columns, row, strict=True)) for row in rows]
    return int(connection.exec_driver_sql(compiled.string, parameters).rowcount)


def _driver_value(session: Session, column: Any, value: Any) -> Any:
    """``value`` as the driver stores it for ``column`` — SQLAlchemy's conversion (a UTC timestamp), then
    the driver's own adapter where it has one (``sqlite3.adapt``) — done once for a value every row shares."""
    dialect = session.get_bind().dialect
    process = column.type.bind_processor(dialect)
    value = process(value) if process else value
    adapt = getattr(dialect.dbapi, "adapt", None)  # psycopg's ``adapt`` is a module: not callable, skipped
    prepare = getattr(dialect.dbapi, "PrepareProtocol", None)
    return adapt(value, prepare, value) if callable(adapt) and prepare is not None else value
