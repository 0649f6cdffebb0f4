"""Loyalty factories with readable defaults: an enrolled member, a live order for them, a programme."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.ingest import live
from memberops.ingest.models import LiveOrder
from memberops.ingest.schemas import OrderIn, RefundIn
from memberops.loyalty import enrolment, programmes
from memberops.loyalty.programme import Programme, programme_from_dict

WHEN = datetime(2026, 3, 1, 2, 15, tzinfo=UTC)


def enrol(session: Session, workspace: Workspace, source_id: str = "c1", **fields: Any) -> str:
    """Enrol the POS customer ``source_id``; returns the member id."""
    return enrolment.enrol(session, workspace, channel="pos", source_id=source_id,
                           identifiers={"phone": fields.pop("phone", None)}, **fields).member.id


def set_programme(session: Session, workspace: Workspace, **settings: Any) -> Programme:
    programme = programme_from_dict(settings)
    programmes.save_programme(session, workspace, programme, actor=Actor.cli())
    return programme


def post_order(session: Session, workspace: Workspace, order_id: str = "o1", *, customer_key: str = "c1",
               paid: str = "100.00", ordered_at: datetime = WHEN, **fields: Any) -> live.Outcome:
    item = OrderIn(channel="pos", order_id=order_id, customer_key=customer_key, ordered_at=ordered_at,
                   paid_amount=Decimal(paid), **fields)
    (outcome,) = live.ingest_orders(session, workspace, [item], hooks=live.default_hooks())
    return outcome


def post_refund(session: Session, workspace: Workspace, refund_id: str = "r1", *, order_id: str = "o1",
                amount: str = "100.00", refunded_at: datetime = WHEN) -> live.Outcome:
    item = RefundIn(channel="pos", refund_id=refund_id, order_id=order_id, refunded_at=refunded_at,
                    amount=Decimal(amount))
    (outcome,) = live.ingest_refunds(session, workspace, [item], hooks=live.default_hooks())
    return outcome


def live_order(session: Session, order_id: str) -> LiveOrder:
    from sqlalchemy import select

    return session.scalars(select(LiveOrder).where(LiveOrder.order_id == order_id)).one()
