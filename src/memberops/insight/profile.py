"""The 360° profile: what memberops knows about one member, read in one go.

Where each part comes from:

- the member, its identity links, which identifiers it has and its identity events: the state store;
- the golden record: the lake's derived ``golden_records`` (as of the last resolution run);
- recent orders, refunds and events: the lake's facts whose ``(channel, customer_key)`` is one of the
  member's identity links — the serving identity map in the state store, which is the lake's
  ``identity_map`` plus the records resolved live since the last run — together with what was posted live
  and has not reached the lake yet (live orders and refunds in the state store, events still in the
  outbox). A fact found on both paths counts once, by its natural key (``channel`` + ``order_id``,
  ``refund_id`` or ``event_id``);
- traits, tags and trait changes (lifecycle stage, RFM segment, tags added or removed): insight's serving
  tables (``insight.service``), ``None`` before the first ``memberops insight compute``;
- loyalty (membership, points, coupons, benefits): ``memberops.loyalty.profile``; ``None`` for a person
  outside the programme.

An absorbed member id answers with its survivor's profile; ``requested_id`` keeps the id that was asked
for, so a caller can tell (``merged_from``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from memberops.db.outbox import OutboxRow
from memberops.identity import service as identity
from memberops.identity.models import IdentityEvent, Member
from memberops.identity.normalise import IDENTIFIER_TYPES
from memberops.ingest.models import LiveOrder, LiveRefund
from memberops.insight import fact_index
from memberops.insight import service as insight
from memberops.insight.models import TraitChange
from memberops.loyalty.profile import loyalty_section

if TYPE_CHECKING:
    from memberops.lake.engine import Warehouse

RFM_TRAITS = {"r": "rfm_r", "f": "rfm_f", "m": "rfm_m", "score": "rfm_score", "segment": "rfm_segment"}
LIFECYCLE_TRAITS = {"stage": "lifecycle_stage", "aipl_stage": "aipl_stage"}
CLV_TRAITS = {name: name for name in ("clv", "expected_spend", "expected_purchases_90d", "expected_purchases_365d",
                                      "p_alive", "churn_risk")}

ZERO = Decimal("0.00")
RECENT = 20  # orders and events shown on a profile
ORDERS_READ = 1_000  # a member's orders read from the lake (newest first) to find their refunds
REFUNDS_READ = 200  # a member's refunds read to total each order's refunded amount
TRAIT_CHANGES = 50  # the newest trait changes on the timeline
PENDING_EVENTS_SCANNED = 2_000  # the newest outbox events looked at for facts not in the lake yet


@dataclass(frozen=True)
class RecordRef:
    """One of the member's channel records."""

    channel: str
    source_id: str


@dataclass(frozen=True)
class IdentifierKind:
    """An identifier the member has (its value withheld) and the channel it came from."""

    type: str
    channel: str


@dataclass(frozen=True)
class OrderLine:
    sku: str | None
    category: str | None
    quantity: int | None
    amount: Decimal | None


@dataclass(frozen=True)
class OrderSummary:
    """An order of the member; ``source`` says whether it was read from the lake or the live store."""

    channel: str
    order_id: str
    ordered_at: datetime
    status: str | None
    paid_amount: Decimal | None
    currency: str | None
    store_id: str | None
    refunded_amount: Decimal = ZERO
    items: tuple[OrderLine, ...] = ()
    source: str = "lake"


@dataclass(frozen=True)
class RefundSummary:
    channel: str
    refund_id: str
    order_id: str
    refunded_at: datetime
    amount: Decimal | None
    source: str = "lake"


@dataclass(frozen=True)
class EventSummary:
    channel: str
    event_id: str
    type: str
    occurred_at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    source: str = "lake"


@dataclass(frozen=True)
class IdentityChange:
    """A merge, unmerge or split that involved the member, worded from the member's side."""

    kind: str
    at: datetime
    description: str
    other_member_id: str | None
    actor: str
    reason: str


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a member's timeline. ``kind``: order, refund, event, identity or trait."""

    at: datetime
    kind: str
    title: str
    detail: str = ""
    channel: str = ""


@dataclass
class MemberProfile360:
    """Everything the profile shows; see the module docstring for where each part comes from."""

    member: Member
    requested_id: str
    golden: dict[str, Any] | None
    identities: list[RecordRef]
    identifier_types: list[IdentifierKind]
    recent_orders: list[OrderSummary]
    recent_refunds: list[RefundSummary]
    recent_events: list[EventSummary]
    identity_changes: list[IdentityChange]
    traits: dict[str, Any] | None = None
    tags: list[str] | None = None
    trait_changes: list[TraitChange] = field(default_factory=list)
    loyalty: dict[str, Any] | None = None  # membership, points, coupons, benefits; None outside the programme

    @property
    def rfm(self) -> dict[str, Any] | None:
        """Quintile scores and the named segment."""
        return _section(self.traits, RFM_TRAITS)

    @property
    def lifecycle(self) -> dict[str, Any] | None:
        """The lifecycle stage (prospect … churned) and the AIPL stage."""
        return _section(self.traits, LIFECYCLE_TRAITS)

    @property
    def clv(self) -> dict[str, Any] | None:
        """Expected purchases and spend, P(alive), churn risk and CLV."""
        return _section(self.traits, CLV_TRAITS)

    @property
    def merged_from(self) -> str | None:
        """The absorbed id that was asked for, when it was not the survivor's own."""
        return self.requested_id if self.requested_id != self.member.id else None

    def timeline(self, limit: int = 100) -> list[TimelineEntry]:
        """Orders, refunds, events, identity changes and trait changes, newest first."""
        entries = [
            *(_order_entry(o) for o in self.recent_orders),
            *(TimelineEntry(r.refunded_at, "refund", f"Refund {_money(r.amount)} on order {r.order_id}",
                            channel=r.channel) for r in self.recent_refunds),
            *(TimelineEntry(e.occurred_at, "event", e.type.replace("_", " "), _properties_text(e.properties),
                            channel=e.channel) for e in self.recent_events),
            *(TimelineEntry(c.at, "identity", c.description, c.reason) for c in self.identity_changes),
            *(_trait_entry(c) for c in self.trait_changes),
        ]
        entries.sort(key=lambda entry: entry.at, reverse=True)
        return entries[:limit]


def member_profile(
    session: Session, warehouse: Warehouse, workspace_id: str, member_id: str, *, recent: int = RECENT
) -> MemberProfile360:
    """The 360° profile of ``member_id`` (an absorbed id: its survivor's), with the ``recent`` newest
    orders and events. Raises :class:`~memberops.identity.errors.MemberNotFound` for an unknown id."""
    member = identity.get_member(session, workspace_id, member_id)
    links = [RecordRef(link.channel, link.source_id) for link in identity.links_of(session, member.id)]
    keys = {(ref.channel, ref.source_id) for ref in links}
    kinds = sorted({IdentifierKind(i.type, i.channel) for i in identity.identifiers_of(session, member.id)}
                   | _lake_identifier_kinds(warehouse, workspace_id, keys), key=lambda k: (k.type, k.channel))

    lake_orders, lake_refunds, lake_events = _lake_facts(warehouse, workspace_id, keys, recent)
    live_orders = _live_orders(session, workspace_id, keys, recent)
    live_refunds = _live_refunds(session, workspace_id, keys)
    pending_events = _pending_events(session, workspace_id, keys)

    refunds = _newest(_dedupe([*live_refunds, *lake_refunds], lambda r: (r.channel, r.refund_id)),
                      lambda r: r.refunded_at, REFUNDS_READ)
    refunded: dict[tuple[str, str], Decimal] = {}
    for refund in refunds:
        key = (refund.channel, refund.order_id)
        refunded[key] = refunded.get(key, ZERO) + (refund.amount or ZERO)
    orders = _newest(_dedupe([*live_orders, *lake_orders], lambda o: (o.channel, o.order_id)),
                     lambda o: o.ordered_at, recent)
    items = _order_items(warehouse, workspace_id, [(o.channel, o.order_id) for o in orders])
    orders = [replace(o, refunded_amount=refunded.get((o.channel, o.order_id), ZERO),
                      items=items.get((o.channel, o.order_id), ())) for o in orders]
    events = _newest(_dedupe([*pending_events, *lake_events], lambda e: (e.channel, e.event_id)),
                     lambda e: e.occurred_at, recent)
    changes = [_identity_change(member.id, event)
               for event in identity.identity_events_of(session, workspace_id, member.id)]
    traits = insight.get_traits(session, workspace_id, member.id)
    return MemberProfile360(
        member=member, requested_id=member_id,
        golden=_golden_record(warehouse, workspace_id, member.id),
        identities=links, identifier_types=kinds, recent_orders=orders,
        recent_refunds=refunds[:recent], recent_events=events, identity_changes=changes,
        traits=traits, tags=insight.get_tags(session, workspace_id, member.id) if traits is not None else None,
        trait_changes=list(insight.trait_changes(session, workspace_id, member_id=member.id, limit=TRAIT_CHANGES)),
        loyalty=loyalty_section(session, workspace_id, member.id),
    )


# -- the lake ---------------------------------------------------------------------------------------


def _lake_facts(
    warehouse: Warehouse, workspace_id: str, keys: set[tuple[str, str]], recent: int
) -> tuple[list[OrderSummary], list[RefundSummary], list[EventSummary]]:
    """The member's orders (up to :data:`ORDERS_READ`, newest first), their refunds and the newest events
    in the lake, looked up by key (``fact_index``): the lake's many small files make a scan the cost to save."""
    if not keys:
        return [], [], []
    order_rows = _newest(fact_index.lookup(warehouse.lake, "orders", workspace_id, keys).to_pylist(),
                         lambda r: r["ordered_at"], None)
    order_rows = _dedupe(order_rows, lambda r: (r["channel"], r["order_id"]))[:ORDERS_READ]
    order_keys = {(row["channel"], row["order_id"]) for row in order_rows}
    refund_rows = _newest(fact_index.lookup(warehouse.lake, "refunds", workspace_id, order_keys).to_pylist(),
                          lambda r: r["refunded_at"], None)
    refund_rows = _dedupe(refund_rows, lambda r: (r["channel"], r["refund_id"]))[:REFUNDS_READ]
    event_rows = _newest(fact_index.lookup(warehouse.lake, "events", workspace_id, keys).to_pylist(),
                         lambda r: r["occurred_at"], None)
    event_rows = _dedupe(event_rows, lambda r: (r["channel"], r["event_id"]))[:recent * 2]
    order_fields = ("channel", "order_id", "ordered_at", "status", "paid_amount", "currency", "store_id")
    refund_fields = ("channel", "refund_id", "order_id", "refunded_at", "amount")
    return (
        [OrderSummary(**{k: row[k] for k in order_fields}) for row in order_rows],
        [RefundSummary(**{k: row[k] for k in refund_fields}) for row in refund_rows],
        [EventSummary(channel=row["channel"], event_id=row["event_id"], type=row["type"],
                      occurred_at=row["occurred_at"], properties=_parsed(row["properties"])) for row in event_rows],
    )


def _lake_identifier_kinds(warehouse: Warehouse, workspace_id: str, keys: set[tuple[str, str]]) -> set[IdentifierKind]:
    """Which identifiers the member's records in the lake carry, by channel (records imported in bulk have
    no identifier rows in the state store)."""
    if not keys:
        return set()
    rows = fact_index.lookup(warehouse.lake, "identity_records", workspace_id, keys).to_pylist()
    return {IdentifierKind(t, row["channel"]) for row in rows for t in IDENTIFIER_TYPES if row[t] is not None}


def _golden_record(warehouse: Warehouse, workspace_id: str, member_id: str) -> dict[str, Any] | None:
    """The member's golden record as of the last resolution run (``None`` before the first run), as
    :func:`memberops.identity.service.golden_record` answers it."""
    rows = fact_index.lookup(warehouse.lake, "golden_records", workspace_id, [member_id]).to_pylist()
    if not rows:
        return None
    return {k: v for k, v in rows[0].items() if k not in ("workspace_id", "member_id")}


def _order_items(warehouse: Warehouse, workspace_id: str,
                 orders: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[OrderLine, ...]]:
    if not orders:
        return {}
    rows = sorted(fact_index.lookup(warehouse.lake, "order_items", workspace_id, set(orders)).to_pylist(),
                  key=lambda r: (r["channel"], r["order_id"], r["line_no"]))
    result: dict[tuple[str, str], list[OrderLine]] = {}
    seen: set[tuple[str, str, int]] = set()
    for row in rows:
        if (row["channel"], row["order_id"], row["line_no"]) in seen:  # one line per natural key
            continue
        seen.add((row["channel"], row["order_id"], row["line_no"]))
        result.setdefault((row["channel"], row["order_id"]), []).append(
            OrderLine(row["sku"], row["category"], row["quantity"], row["amount"]))
    return {key: tuple(lines) for key, lines in result.items()}


# -- the state store: what was posted live and may not be in the lake yet --------------------------


def _live_orders(session: Session, workspace_id: str, keys: set[tuple[str, str]], recent: int) -> list[OrderSummary]:
    if not keys:
        return []
    rows = session.scalars(
        select(LiveOrder)
        .where(LiveOrder.workspace_id == workspace_id, tuple_(LiveOrder.channel, LiveOrder.customer_key).in_(sorted(keys)))
        .order_by(LiveOrder.ordered_at.desc(), LiveOrder.id.desc())
        .limit(recent)
    ).all()
    return [OrderSummary(o.channel, o.order_id, o.ordered_at, o.status, o.paid_amount, o.currency, o.store_id,
                         source="live") for o in rows]


def _live_refunds(session: Session, workspace_id: str, keys: set[tuple[str, str]]) -> list[RefundSummary]:
    if not keys:
        return []
    rows = session.scalars(
        select(LiveRefund)
        .join(LiveOrder, (LiveOrder.workspace_id == LiveRefund.workspace_id) & (LiveOrder.channel == LiveRefund.channel)
              & (LiveOrder.order_id == LiveRefund.order_id))
        .where(LiveRefund.workspace_id == workspace_id,
               tuple_(LiveOrder.channel, LiveOrder.customer_key).in_(sorted(keys)))
        .order_by(LiveRefund.refunded_at.desc(), LiveRefund.id.desc())
        .limit(REFUNDS_READ)
    ).all()
    return [RefundSummary(r.channel, r.refund_id, r.order_id, r.refunded_at, r.amount, source="live") for r in rows]


def _pending_events(session: Session, workspace_id: str, keys: set[tuple[str, str]]) -> list[EventSummary]:
    """Events posted live and still in the outbox (the exporter moves them within a minute).

    Only the newest :data:`PENDING_EVENTS_SCANNED` pending rows are looked at: a backlog larger than that
    means the exporter is behind, and the lake catches up with the rest.
    """
    if not keys:
        return []
    rows = session.scalars(
        select(OutboxRow.payload)
        .where(OutboxRow.workspace_id == workspace_id, OutboxRow.topic == "events", OutboxRow.exported_at.is_(None))
        .order_by(OutboxRow.id.desc())
        .limit(PENDING_EVENTS_SCANNED)
    ).all()
    found = []
    for payload in rows:
        if (payload.get("channel"), payload.get("customer_key")) not in keys:
            continue
        found.append(EventSummary(
            channel=payload["channel"], event_id=payload["event_id"], type=payload["type"],
            occurred_at=datetime.fromisoformat(payload["occurred_at"]), properties=_parsed(payload.get("properties")),
            source="live",
        ))
    return found


def _identity_change(member_id: str, event: IdentityEvent) -> IdentityChange:
    other = event.other_member_id if event.member_id == member_id else event.member_id
    if event.kind == "merge":
        description = (f"Member {other} merged into this member" if event.member_id == member_id
                       else f"This member was merged into member {other}")
    elif event.kind == "split":
        description = (f"Records moved from this member to member {other}" if event.member_id == member_id
                       else f"Records moved here from member {other}")
    elif event.kind == "unmerge":
        description = "Unmerged: this member holds records of its own again"
    else:
        description = event.kind
    return IdentityChange(event.kind, event.at, description, other, event.actor, event.reason)


# -- helpers ----------------------------------------------------------------------------------------


def _dedupe(facts: Iterable[Any], key: Any) -> list[Any]:
    """The first of each natural key (live rows come first: they carry the freshest state)."""
    seen: set[Any] = set()
    kept = []
    for fact in facts:
        k = key(fact)
        if k not in seen:
            seen.add(k)
            kept.append(fact)
    return kept


def _newest(facts: list[Any], when: Any, limit: int | None) -> list[Any]:
    return sorted(facts, key=when, reverse=True)[:limit]


def _parsed(properties: Any) -> dict[str, Any]:
    if isinstance(properties, dict):
        return properties
    if not properties:
        return {}
    try:
        value = json.loads(properties)
    except ValueError:
        return {"value": properties}
    return value if isinstance(value, dict) else {"value": value}


def _money(amount: Decimal | None) -> str:
    return "—" if amount is None else f"{amount:,.2f}"


def _order_entry(order: OrderSummary) -> TimelineEntry:
    lines = ", ".join(f"{line.quantity or 1} × {line.sku or '?'}" + (f" ({line.category})" if line.category else "")
                      for line in order.items[:5])
    if len(order.items) > 5:
        lines += f" and {len(order.items) - 5} more"
    title = f"Order {order.order_id} · {_money(order.paid_amount)} {order.currency or ''}".rstrip()
    if order.refunded_amount:
        title += f" (refunded {_money(order.refunded_amount)})"
    return TimelineEntry(order.ordered_at, "order", title, lines, order.channel)


TRAIT_CHANGE_TITLES = {"lifecycle_stage": "Lifecycle stage", "rfm_segment": "RFM segment",
                       "tag_added": "Tag added", "tag_removed": "Tag removed"}


def _trait_entry(change: TraitChange) -> TimelineEntry:
    title = TRAIT_CHANGE_TITLES.get(change.kind, change.kind.replace("_", " ").capitalize())
    if change.kind in ("tag_added", "tag_removed"):
        value = change.to_value or change.from_value or ""
        return TimelineEntry(change.changed_at, "trait", f"{title}: {value}")
    return TimelineEntry(change.changed_at, "trait", f"{title}: {change.from_value or '—'} → {change.to_value or '—'}")


def _section(traits: dict[str, Any] | None, names: dict[str, str]) -> dict[str, Any] | None:
    if traits is None:
        return None
    return {key: traits.get(name) for key, name in names.items()}


def _properties_text(properties: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in list(properties.items())[:4])

