"""Coupon and benefit errors, each with a stable ``code``; ``api/errors.py`` maps them to statuses."""

from __future__ import annotations

from memberops.errors import Conflict, Invalid, NotFound


class CouponTemplateNotFound(NotFound):
    code = "coupon_template_not_found"

    def __init__(self, template: str) -> None:
        super().__init__(f"no coupon template {template}", template=template)


class CouponTemplateExists(Conflict):
    code = "coupon_template_exists"

    def __init__(self, field: str, value: str) -> None:
        super().__init__(f"a coupon template with this {field} exists already", field=field, value=value)


class InvalidCouponTemplate(Invalid):
    code = "invalid_coupon_template"

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, field=field)


class CouponTemplateUnavailable(Conflict):
    """Nothing can be issued from the template: it is archived, or its fixed window has closed."""

    code = "coupon_template_unavailable"

    def __init__(self, template: str, reason: str) -> None:
        super().__init__(f"coupon template {template} issues no more coupons: {reason}", template=template,
                         reason=reason)


class CouponSoldOut(Conflict):
    code = "coupon_sold_out"

    def __init__(self, template: str, stock: int) -> None:
        super().__init__(f"coupon template {template} has issued all {stock} of its coupons", template=template,
                         stock=stock)


class CouponIssueLimitReached(Conflict):
    code = "coupon_issue_limit_reached"

    def __init__(self, template: str, member_id: str, limit: int) -> None:
        super().__init__(f"the member holds the most coupons of {template} allowed ({limit})", template=template,
                         member_id=member_id, limit=limit)


class IdempotencyKeyReused(Conflict):
    """The key was used before for a different request: answering with its outcome would be wrong."""

    code = "idempotency_key_reused"

    def __init__(self, key: str) -> None:
        super().__init__("this idempotency key was used for a different request", idempotency_key=key)


class CouponNotFound(NotFound):
    code = "coupon_not_found"

    def __init__(self, code: str) -> None:
        super().__init__("no coupon with this code", coupon_code=code)


class CouponNotRedeemable(Conflict):
    """A coupon presented on an order that it cannot be used on; ``reason`` is a :class:`~memberops.loyalty.
    coupon_rules.Reason` value."""

    code = "coupon_not_redeemable"

    def __init__(self, coupon_code: str, reason: str) -> None:
        super().__init__(f"coupon cannot be redeemed: {reason.replace('_', ' ')}", coupon_code=coupon_code,
                         reason=reason)
        self.reason = reason


class CouponNotVoidable(Conflict):
    code = "coupon_not_voidable"

    def __init__(self, coupon_code: str, status: str) -> None:
        super().__init__(f"only an issued coupon can be voided; this one is {status}", coupon_code=coupon_code,
                         status=status)


class BenefitNotFound(NotFound):
    code = "benefit_not_found"

    def __init__(self, benefit: str) -> None:
        super().__init__(f"no benefit {benefit}", benefit=benefit)


class BenefitExists(Conflict):
    code = "benefit_exists"

    def __init__(self, benefit: str) -> None:
        super().__init__(f"a benefit {benefit} exists already", benefit=benefit)


class InsufficientBenefitQuota(Conflict):
    code = "insufficient_benefit_quota"

    def __init__(self, member_id: str, benefit: str, requested: int, available: int) -> None:
        super().__init__(f"the member has {available} of {benefit} left, {requested} requested", member_id=member_id,
                         benefit=benefit, requested=requested, available=available)

