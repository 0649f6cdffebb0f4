"""The pure core of coupons: codes, validity, the state transitions, eligibility, stacking and the
discount of a basket. No I/O: the service loads rows, calls these functions and writes the outcome.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from memberops.loyalty.coupon_schemas import CouponTerms

# No 0/O, 1/I/L: a code read aloud at a till or typed from a receipt cannot be mistaken.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 12  # 31**12 ≈ 7.9e17 (59 bits): guessing one live code is hopeless at any request rate
CENT = Decimal("0.01")
ZERO = Decimal("0")


def generate_code(length: int = CODE_LENGTH) -> str:
    """A random coupon code from :data:`CODE_ALPHABET` (``secrets``: unpredictable, not just unique)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def normalise_code(code: str) -> str:
    """The canonical form a code is stored and looked up in: upper case, no spaces or hyphens, so
    ``abcd-2345 efgh`` finds ``ABCD2345EFGH``."""
    return "".join(code.split()).replace("-", "").upper()


def display_code(code: str) -> str:
    """A generated code in groups of four for printing (``ABCD-2345-EFGH``); other codes as they are."""
    if len(code) == CODE_LENGTH and all(c in CODE_ALPHABET for c in code):
        return "-".join(code[i:i + 4] for i in range(0, len(code), 4))
    return code


class Reason(StrEnum):
    """Why a coupon cannot be redeemed on an order (the ``reason`` of ``coupon_not_redeemable``)."""

    already_redeemed = "already_redeemed"
    expired = "expired"
    not_yet_valid = "not_yet_valid"
    wrong_channel = "wrong_channel"
    wrong_store = "wrong_store"
    below_minimum_spend = "below_minimum_spend"
    not_owner = "not_owner"
    voided = "voided"
    not_stackable = "not_stackable"


class Ended(ValueError):
    """A fixed-window template whose window has closed: nothing more can be issued from it."""


def coupon_validity(terms: CouponTerms, issued_at: datetime) -> tuple[datetime, datetime]:
    """The window of a coupon issued at ``issued_at``: the template's fixed window, ``valid_days`` from
    issue, or both (the later start and the earlier end win). Raises :class:`Ended` when it is empty."""
    start = max(terms.valid_from, issued_at) if terms.valid_from else issued_at
    ends = [end for end in (terms.valid_until,
                            issued_at + timedelta(days=terms.valid_days) if terms.valid_days else None) if end]
    end = min(ends)
    if end <= start:
        raise Ended("the template's validity window has closed")
    return start, end


# --- state transitions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One allowed change of a coupon's status. The service applies it as a conditional
    ``UPDATE … WHERE status = from_status``, so of two requests racing for one coupon only one moves it."""

    name: str
    from_status: str
    to_status: str
    guards: str


TRANSITIONS: tuple[Transition, ...] = (
    Transition("redeem", "issued", "redeemed", "valid now, owner, channel, store, minimum spend, stacking"),
    Transition("void", "issued", "voided", "an operator withdraws an unused coupon"),
    Transition("expire", "issued", "expired", "its validity ended unused"),
    Transition("restore", "redeemed", "issued", "its order was fully refunded, it is still valid, never restored before"),
)


def transition(name: str) -> Transition:
    return next(t for t in TRANSITIONS if t.name == name)


def can_restore(status: str, restored_count: int, valid_until: datetime, now: datetime) -> bool:
    """Whether a redeemed coupon comes back on its order's full refund: once, and only while still valid."""
    return status == "redeemed" and restored_count == 0 and now < valid_until


# --- a basket -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BasketItem:
    sku: str
    quantity: int
    amount: Decimal


@dataclass(frozen=True)
class Basket:
    """An order as coupons see it: ``amount`` before coupons (``shipping_amount`` included)."""

    member_id: str
    amount: Decimal
    channel: str
    store_id: str | None = None
    shipping_amount: Decimal = ZERO
    items: tuple[BasketItem, ...] = ()


@dataclass(frozen=True)
class PresentedCoupon:
    """A coupon presented on an order, with what eligibility needs to know of it."""

    code: str
    terms: CouponTerms
    member_id: str
    status: str
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True)
class CouponResult:
    """The outcome for one presented coupon: a discount (and a gift), or the reason it does not apply."""

    code: str
    discount: Decimal = ZERO
    gift_sku: str | None = None
    reason: Reason | None = None

    @property
    def is_applied(self) -> bool:
        return self.reason is None


def ineligibility(coupon: PresentedCoupon, basket: Basket, now: datetime) -> Reason | None:
    """Why ``coupon`` cannot be used on ``basket`` at ``now`` taken alone, or ``None`` when it can."""
    if coupon.status == "voided":
        return Reason.voided
    if coupon.status == "redeemed":
        return Reason.already_redeemed
    if coupon.status == "expired" or now >= coupon.valid_until:
        return Reason.expired
    if now < coupon.valid_from:
        return Reason.not_yet_valid
    if coupon.member_id != basket.member_id:
        return Reason.not_owner
    terms = coupon.terms
    if terms.channels and basket.channel not in terms.channels:
        return Reason.wrong_channel
    if terms.stores and basket.store_id not in terms.stores:
        return Reason.wrong_store
    if basket.amount < terms.minimum_spend:
        return Reason.below_minimum_spend
    return None


def can_stack(terms: CouponTerms, applied: Sequence[CouponTerms]) -> bool:
    """Whether a coupon with ``terms`` may join an order already carrying coupons with ``applied``."""
    if not applied:
        return True
    if terms.stacking == "exclusive" or any(a.stacking == "exclusive" for a in applied):
        return False
    return len(applied) + 1 <= min(terms.max_per_order, *(a.max_per_order for a in applied))


def discount_of(terms: CouponTerms, basket: Basket, remaining: Decimal) -> tuple[Decimal, str | None]:
    """The money ``terms`` take off ``basket`` (never more than ``remaining``), and the gift it hands over."""
    gift: str | None = None
    if terms.kind in ("amount_off", "threshold"):
        value = terms.amount_off or ZERO
    elif terms.kind == "percent_off":
        value = (basket.amount * (terms.percent_off or ZERO) / 100).quantize(CENT, rounding=ROUND_HALF_UP)
        if terms.max_discount is not None:
            value = min(value, terms.max_discount)
    elif terms.kind == "free_shipping":
        value = basket.shipping_amount
        if terms.max_discount is not None:
            value = min(value, terms.max_discount)
    else:  # gift: the gift's line is free when it is in the basket; otherwise it is handed over
        gift = terms.gift_sku
        line = next((i for i in basket.items if i.sku == gift and i.quantity > 0), None)
        value = (line.amount / line.quantity).quantize(CENT, rounding=ROUND_HALF_UP) if line else ZERO
    return max(ZERO, min(value, remaining)).quantize(CENT), gift


def apply_coupons(
    basket: Basket, presented: Sequence[PresentedCoupon], now: datetime,
    *, already_applied: Sequence[tuple[CouponTerms, Decimal]] = (),
) -> list[CouponResult]:
    """The outcome of each coupon presented on ``basket``, in the order presented.

    Each coupon is checked alone (:func:`ineligibility`), then against the coupons accepted before it
    (:func:`can_stack`; ``already_applied`` are coupons redeemed on this order earlier, with their
    discounts); accepted coupons take their discount from what the earlier ones left, so the total never
    exceeds the basket amount and no discount is negative. A code presented twice applies once.
    """
    applied_terms = [terms for terms, _ in already_applied]
    remaining = max(ZERO, basket.amount - sum((d for _, d in already_applied), ZERO))
    results: list[CouponResult] = []
    seen: set[str] = set()
    for coupon in presented:
        reason = Reason.already_redeemed if coupon.code in seen else ineligibility(coupon, basket, now)
        if reason is None and not can_stack(coupon.terms, applied_terms):
            reason = Reason.not_stackable
        if reason is not None:
            results.append(CouponResult(coupon.code, reason=reason))
            continue
        seen.add(coupon.code)
        discount, gift = discount_of(coupon.terms, basket, remaining)
        remaining -= discount
        applied_terms.append(coupon.terms)
        results.append(CouponResult(coupon.code, discount=discount, gift_sku=gift))
    return results
