"""Coupons on the live order path (``ingest.live.LiveHooks``): a live order redeems the codes it carries,
and a full refund gives them back."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.orm import Session

from memberops.errors import DomainError
from memberops.ingest.live import HookResult
from memberops.ingest.models import LiveOrder, LiveRefund
from memberops.ingest.schemas import Issue, OrderItemIn
from memberops.loyalty.coupon_errors import CouponNotRedeemable
from memberops.loyalty.coupons import OrderContext, redeem_coupons, restore_order_coupons


def redeem_on_live_order(session: Session, order: LiveOrder, lines: Sequence[OrderItemIn] = ()) -> HookResult | None:
    """Redeem the coupons a live order carries, for its member, in the order's transaction; the codes
    that could not be redeemed come back as the order's warnings. (``lines``: the order hook's items,
    not needed here.)"""
    warnings = _redeem(session, order)
    return HookResult(warnings=warnings) if warnings else None


def _redeem(session: Session, order: LiveOrder) -> list[Issue]:
    """Redeem the coupons a live order carries, for its member, in the order's transaction.

    The order is a fact that already happened at the till: a code that does not apply (unknown, used,
    expired, another member's, wrong store…) never rejects the order. It is left unredeemed and reported
    as a warning on the order's result (code ``coupon_not_redeemable``, message starting with the reason).
    The order amount coupons see is ``gross_amount`` when given, else ``paid_amount + discount_amount``.
    """
    if not order.coupon_codes:
        return []
    if order.member_id is None:
        return [_warning(i, code, "unknown_member", "the order's customer is not a known member")
                for i, code in enumerate(order.coupon_codes)]
    amount = order.gross_amount if order.gross_amount is not None else \
        order.paid_amount + (order.discount_amount or Decimal("0"))
    context = OrderContext(
        member_id=order.member_id, channel=order.channel, amount=amount, store_id=order.store_id,
        shipping_amount=min(order.shipping_amount or Decimal("0"), amount),
        order_key=OrderContext.key_for(order.channel, order.order_id, None),
    )
    try:
        with session.begin_nested():
            outcomes = redeem_coupons(session, order.workspace_id, order.coupon_codes, context)
    except DomainError as exc:
        return [_warning(i, code, exc.code, exc.message) for i, code in enumerate(order.coupon_codes)]
    warnings = []
    for i, outcome in enumerate(outcomes):
        if outcome.reason is not None:
            warnings.append(_warning(i, outcome.code, outcome.reason.value, outcome.reason.value.replace("_", " ")))
        elif outcome.problem is not None:
            warnings.append(_warning(i, outcome.code, outcome.problem.code, outcome.problem.message))
    return warnings


def restore_on_full_refund(session: Session, refund: LiveRefund, order: LiveOrder) -> HookResult | None:
    """When a refund makes a live order fully refunded, give back the coupons redeemed on it."""
    if order.refunded_amount >= order.paid_amount:
        restore_order_coupons(session, order.workspace_id, OrderContext.key_for(order.channel, order.order_id, None),
                              now=refund.received_at)
    return None


def _warning(index: int, code: str, reason: str, message: str) -> Issue:
    return Issue(field=f"coupon_codes.{index}", code=CouponNotRedeemable.code,
                 message=f"{reason}: coupon {code} was not redeemed ({message}); the order is kept")
