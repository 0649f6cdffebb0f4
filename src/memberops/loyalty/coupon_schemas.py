"""Coupon templates and coupons as the API, the CLI and the console read and write them (pydantic).

A template's *terms* (:class:`CouponTerms`: what the coupon gives and where and when it may be used) are
versioned: an edit makes a new version, and every coupon keeps the terms of the version it was issued
under, so an operator's edit never changes a coupon a member already holds. The issue policy (stock,
per-member limit, shared code, name) sits on the template itself.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

CouponKind = Literal["amount_off", "percent_off", "threshold", "free_shipping", "gift"]
Stacking = Literal["exclusive", "stackable"]
CouponStatus = Literal["issued", "redeemed", "expired", "voided"]

Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=2)]
PositiveMoney = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=2)]
Slug = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
ShortKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]

_FORBID = ConfigDict(extra="forbid")


class CouponTerms(BaseModel):
    """What a coupon gives and the conditions of its use; one version of a template.

    - ``amount_off``: ``amount_off`` off the order.
    - ``percent_off``: ``percent_off`` % of the order, at most ``max_discount`` when given.
    - ``threshold``: "spend ``threshold`` get ``amount_off``" — the order must reach ``threshold``.
    - ``free_shipping``: the order's shipping, at most ``max_discount`` when given.
    - ``gift``: the item ``gift_sku`` (worth ``gift_value`` for cost reports); no money off.

    Validity is a fixed window (``valid_from``/``valid_until``), ``valid_days`` from issue, or both (the
    earlier end wins). ``channels``/``stores`` empty means any. ``stacking``: an ``exclusive`` coupon is
    never combined with another coupon on one order; a ``stackable`` one combines with other stackable
    ones up to ``max_per_order`` coupons in all.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: CouponKind
    amount_off: PositiveMoney | None = None
    percent_off: Annotated[Decimal, Field(gt=0, le=100, decimal_places=2)] | None = None
    max_discount: PositiveMoney | None = None
    threshold: PositiveMoney | None = None
    gift_sku: ShortKey | None = None
    gift_value: Money | None = None
    min_spend: Money | None = Field(default=None, description="the order amount needed before the coupon applies")
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    valid_days: Annotated[int, Field(ge=1, le=3650)] | None = Field(default=None, description="days from issue")
    channels: list[ShortKey] = Field(default=[], max_length=100, description="empty: any channel")
    stores: list[ShortKey] = Field(default=[], max_length=1000, description="empty: any store")
    stacking: Stacking = "exclusive"
    max_per_order: Annotated[int, Field(ge=1, le=20)] = Field(
        default=1, description="stackable coupons: the most coupons one order may carry with this one")

    @model_validator(mode="after")
    def _consistent(self) -> CouponTerms:
        needs: dict[str, tuple[str, ...]] = {
            "amount_off": ("amount_off",), "percent_off": ("percent_off",), "threshold": ("threshold", "amount_off"),
            "free_shipping": (), "gift": ("gift_sku",),
        }
        missing = [name for name in needs[self.kind] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} coupon needs {', '.join(missing)}")
        allowed = set(needs[self.kind]) | {"max_discount"} if self.kind in ("percent_off", "free_shipping") \
            else set(needs[self.kind]) | ({"gift_value"} if self.kind == "gift" else set())
        stray = [name for name in ("amount_off", "percent_off", "max_discount", "threshold", "gift_sku", "gift_value")
                 if getattr(self, name) is not None and name not in allowed]
        if stray:
            raise ValueError(f"a {self.kind} coupon takes no {', '.join(stray)}")
        if self.kind == "threshold" and self.amount_off is not None and self.threshold is not None \
                and self.amount_off > self.threshold:
            raise ValueError("a threshold coupon cannot give more than its threshold")
        if self.valid_until is None and self.valid_days is None:
            raise ValueError("give valid_until, valid_days or both: a coupon must end")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if self.stacking == "exclusive" and self.max_per_order != 1:
            raise ValueError("an exclusive coupon is alone on its order: max_per_order must be 1")
        return self

    @property
    def minimum_spend(self) -> Decimal:
        """The order amount the coupon needs: the larger of ``min_spend`` and a threshold coupon's threshold."""
        return max(self.min_spend or Decimal("0"), self.threshold or Decimal("0"))


class CouponTemplateIn(BaseModel):
    """A new coupon template."""

    model_config = _FORBID

    code: Slug = Field(description="the template's own code, unique in the workspace (e.g. SPRING-50)")
    name: Name
    description: Annotated[str, Field(max_length=2000)] = ""
    shared_code: ShortKey | None = Field(default=None, description="one code every member uses; empty: unique codes")
    stock: Annotated[int, Field(ge=1)] | None = Field(default=None, description="total coupons ever issued; empty: no cap")
    per_member_limit: Annotated[int, Field(ge=1)] | None = Field(default=None, description="coupons per member")
    terms: CouponTerms


class CouponTemplateUpdate(BaseModel):
    """A change to a template: new ``terms`` make a new version (coupons already issued keep theirs)."""

    model_config = _FORBID

    name: Name | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    stock: Annotated[int, Field(ge=1)] | None = None
    per_member_limit: Annotated[int, Field(ge=1)] | None = None
    status: Literal["active", "archived"] | None = None
    terms: CouponTerms | None = None


class CouponTemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    code: str
    name: str
    description: str
    shared_code: str | None
    stock: int | None
    per_member_limit: int | None
    issued_count: int
    status: str
    version: int
    terms: CouponTerms
    created_at: datetime
    updated_at: datetime


class IssueIn(BaseModel):
    model_config = _FORBID

    template: Slug = Field(description="the template's id or code")
    member_id: Key
    idempotency_key: Key = Field(description="a replay with the same key returns the same coupon")


class OrderContextIn(BaseModel):
    """The order a coupon is redeemed on."""

    model_config = _FORBID

    member_id: Key
    channel: ShortKey
    store_id: ShortKey | None = None
    amount: Money = Field(description="the order amount before coupons")
    shipping_amount: Money = Decimal("0")
    order_id: Key | None = Field(default=None, description="the order; a replay for the same order is the same redeem")
    idempotency_key: Key | None = Field(default=None, description="when there is no order_id yet")

    @model_validator(mode="after")
    def _keyed(self) -> OrderContextIn:
        if self.order_id is None and self.idempotency_key is None:
            raise ValueError("give order_id or idempotency_key, so a retried redeem is recognised")
        if self.shipping_amount > self.amount:
            raise ValueError("shipping_amount is part of amount and cannot exceed it")
        return self


class VoidIn(BaseModel):
    model_config = _FORBID

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class CouponOut(BaseModel):
    id: str
    code: str
    template_code: str
    template_version: int
    member_id: str
    status: CouponStatus
    kind: CouponKind
    issued_at: datetime
    valid_from: datetime
    valid_until: datetime
    redeemed_at: datetime | None
    restored_count: int
    terms: CouponTerms


class RedemptionOut(BaseModel):
    coupon_code: str
    member_id: str
    order_key: str
    channel: str
    store_id: str | None
    amount: Decimal
    discount: Decimal
    gift_sku: str | None
    redeemed_at: datetime
    is_replay: bool = Field(description="true when this answers a replay of an earlier redeem")


class CouponPage(BaseModel):
    items: list[CouponOut]


class BasketItemIn(BaseModel):
    model_config = _FORBID

    sku: ShortKey
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    amount: Money = Field(description="the line's amount (quantity × unit price)")


class QuoteIn(BaseModel):
    """A basket and the codes presented on it, priced without redeeming anything."""

    model_config = _FORBID

    member_id: Key
    channel: ShortKey
    store_id: ShortKey | None = None
    amount: Money = Field(description="the order amount before coupons")
    shipping_amount: Money = Decimal("0")
    items: list[BasketItemIn] = Field(default=[], max_length=1000)
    coupon_codes: list[ShortKey] = Field(min_length=1, max_length=20)
    order_id: Key | None = Field(default=None, description="counts coupons already redeemed on this order")


class QuotedCoupon(BaseModel):
    code: str
    applies: bool
    discount: Decimal
    gift_sku: str | None = None
    reason: str | None = Field(default=None, description="why it does not apply: a coupon_not_redeemable reason "
                                                         "or another error code (coupon_not_found…)")


class QuoteOut(BaseModel):
    total_discount: Decimal
    coupons: list[QuotedCoupon]
