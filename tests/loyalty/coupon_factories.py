"""Factories for coupon and benefit tests, with readable defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from memberops.audit.service import Actor
from memberops.identity.models import Member
from memberops.loyalty import coupon_templates, coupons
from memberops.loyalty.coupon_models import CouponTemplate
from memberops.loyalty.coupon_schemas import CouponTemplateIn, CouponTerms

WHEN = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def make_member(session: Session, workspace_id: str) -> str:
    member = Member(workspace_id=workspace_id, is_enrolled=True)
    session.add(member)
    session.flush()
    return member.id


TERMS_BY_KIND: dict[str, dict[str, Any]] = {
    "amount_off": {"amount_off": Decimal("20")}, "percent_off": {"percent_off": Decimal("10")},
    "threshold": {"threshold": Decimal("300"), "amount_off": Decimal("50")}, "free_shipping": {},
    "gift": {"gift_sku": "TOTE-1", "gift_value": Decimal("15")},
}


def terms(kind: str = "amount_off", **fields: Any) -> CouponTerms:
    return CouponTerms.model_validate({"kind": kind, "valid_days": 30, **TERMS_BY_KIND[kind], **fields})


def make_template(session: Session, workspace_id: str, code: str = "SPRING-20", *, kind: str = "amount_off",
                  shared_code: str | None = None, stock: int | None = None, per_member_limit: int | None = None,
                  **term_fields: Any) -> CouponTemplate:
    spec = CouponTemplateIn(code=code, name=f"{code} coupon", shared_code=shared_code, stock=stock,
                            per_member_limit=per_member_limit, terms=terms(kind, **term_fields))
    return coupon_templates.create_template(session, workspace_id, spec, actor=Actor.cli())


def order(member_id: str, order_id: str = "o1", *, amount: str = "100", channel: str = "pos",
          store_id: str | None = "S1", shipping: str = "0") -> coupons.OrderContext:
    return coupons.OrderContext(member_id=member_id, channel=channel, amount=Decimal(amount), store_id=store_id,
                                shipping_amount=Decimal(shipping),
                                order_key=coupons.OrderContext.key_for(channel, order_id, None))
