"""The pure coupon core: codes, validity, eligibility reasons, stacking and the discount of a basket —
examples, and hypothesis properties over any basket and any coupons presented."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from memberops.loyalty import coupon_rules as rules
from memberops.loyalty.coupon_rules import Basket, BasketItem, PresentedCoupon, Reason
from memberops.loyalty.coupon_schemas import CouponTerms
from tests.loyalty.coupon_factories import terms

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
D = Decimal


def coupon(code: str = "C1", t: CouponTerms | None = None, *, member: str = "m1", status: str = "issued",
           start: datetime = NOW - timedelta(days=1), end: datetime = NOW + timedelta(days=1)) -> PresentedCoupon:
    return PresentedCoupon(code, t or terms(), member, status, start, end)


def basket(amount: str = "100", **fields: object) -> Basket:
    return Basket(**{"member_id": "m1", "amount": D(amount), "channel": "pos", "store_id": "S1", **fields})  # type: ignore[arg-type]


class TestCodes:
    def test_generated_codes_use_no_ambiguous_characters_and_do_not_repeat(self) -> None:
        codes = {rules.generate_code() for _ in range(5000)}
        assert len(codes) == 5000
        assert all(len(c) == rules.CODE_LENGTH and not set(c) & set("01OIL") for c in codes)

    def test_any_formatting_finds_the_same_code(self) -> None:
        assert rules.normalise_code(" abcd-2345 efgh ") == "ABCD2345EFGH"
        assert rules.display_code("ABCD2345EFGH") == "ABCD-2345-EFGH"
        assert rules.display_code("WELCOME10") == "WELCOME10"


class TestTerms:
    def test_each_kind_needs_its_values(self) -> None:
        with pytest.raises(ValidationError, match="needs percent_off"):
            CouponTerms(kind="percent_off", valid_days=3)
        with pytest.raises(ValidationError, match="needs threshold"):
            CouponTerms(kind="threshold", amount_off=D("50"), valid_days=3)
        with pytest.raises(ValidationError, match="takes no percent_off"):
            CouponTerms(kind="amount_off", amount_off=D("5"), percent_off=D("5"), valid_days=3)

    def test_a_coupon_must_end_and_exclusive_ones_stand_alone(self) -> None:
        with pytest.raises(ValidationError, match="must end"):
            CouponTerms(kind="amount_off", amount_off=D("5"))
        with pytest.raises(ValidationError, match="max_per_order must be 1"):
            CouponTerms(kind="amount_off", amount_off=D("5"), valid_days=1, max_per_order=2)

    def test_validity_from_issue_and_fixed_window(self) -> None:
        assert rules.coupon_validity(terms(valid_days=7), NOW) == (NOW, NOW + timedelta(days=7))
        window = terms(valid_days=None, valid_from=NOW + timedelta(days=2), valid_until=NOW + timedelta(days=5))
        assert rules.coupon_validity(window, NOW) == (NOW + timedelta(days=2), NOW + timedelta(days=5))
        both = terms(valid_days=30, valid_until=NOW + timedelta(days=3))
        assert rules.coupon_validity(both, NOW)[1] == NOW + timedelta(days=3)
        with pytest.raises(rules.Ended):
            rules.coupon_validity(terms(valid_days=None, valid_until=NOW - timedelta(days=1)), NOW)


class TestEligibility:
    @pytest.mark.parametrize(("presented", "order", "reason"), [
        (coupon(status="voided"), basket(), Reason.voided),
        (coupon(status="redeemed"), basket(), Reason.already_redeemed),
        (coupon(status="expired"), basket(), Reason.expired),
        (coupon(end=NOW), basket(), Reason.expired),
        (coupon(start=NOW + timedelta(seconds=1)), basket(), Reason.not_yet_valid),
        (coupon(member="m2"), basket(), Reason.not_owner),
        (coupon(t=terms(channels=["tmall"])), basket(), Reason.wrong_channel),
        (coupon(t=terms(stores=["S9"])), basket(), Reason.wrong_store),
        (coupon(t=terms(min_spend=D("100.01"))), basket(), Reason.below_minimum_spend),
        (coupon(t=terms("threshold")), basket("299.99"), Reason.below_minimum_spend),
    ])
    def test_reason(self, presented: PresentedCoupon, order: Basket, reason: Reason) -> None:
        (result,) = rules.apply_coupons(order, [presented], NOW)
        assert result.reason is reason and result.discount == 0

    def test_restricted_coupon_applies_where_allowed(self) -> None:
        t = terms(channels=["pos"], stores=["S1"], min_spend=D("100"))
        assert rules.apply_coupons(basket(), [coupon(t=t)], NOW)[0].discount == D("20")


class TestDiscounts:
    def test_each_kind(self) -> None:
        cases = [
            (terms("amount_off"), basket(), D("20")),
            (terms("amount_off", amount_off=D("500")), basket(), D("100")),  # never more than the order
            (terms("percent_off", percent_off=D("15")), basket("99.99"), D("15.00")),  # 14.9985 rounds half up
            (terms("percent_off", percent_off=D("50"), max_discount=D("30")), basket(), D("30")),
            (terms("threshold"), basket("300"), D("50")),
            (terms("free_shipping"), basket(shipping_amount=D("12")), D("12")),
            (terms("free_shipping", max_discount=D("8")), basket(shipping_amount=D("12")), D("8")),
            (terms("gift"), basket(), D("0")),
            (terms("gift"), basket(items=(BasketItem("TOTE-1", 2, D("30")),)), D("15")),
        ]
        for t, order, expected in cases:
            (result,) = rules.apply_coupons(order, [coupon(t=t)], NOW)
            assert result.discount == expected, (t.kind, order)
        assert rules.apply_coupons(basket(), [coupon(t=terms("gift"))], NOW)[0].gift_sku == "TOTE-1"

    def test_exclusive_coupon_is_never_combined(self) -> None:
        first, second = coupon("A"), coupon("B")
        results = rules.apply_coupons(basket(), [first, second], NOW)
        assert [r.reason for r in results] == [None, Reason.not_stackable]
        stackable = terms(stacking="stackable", max_per_order=3)
        assert rules.apply_coupons(basket(), [coupon("S", stackable), coupon("A")], NOW)[1].reason is Reason.not_stackable

    def test_stackable_coupons_up_to_the_smallest_max_per_order(self) -> None:
        t3, t2 = terms(stacking="stackable", max_per_order=3), terms(stacking="stackable", max_per_order=2)
        results = rules.apply_coupons(basket(), [coupon("A", t3), coupon("B", t3), coupon("C", t3), coupon("D", t3)], NOW)
        assert [r.reason for r in results] == [None, None, None, Reason.not_stackable]
        results = rules.apply_coupons(basket(), [coupon("A", t3), coupon("B", t2), coupon("C", t3)], NOW)
        assert [r.reason for r in results] == [None, None, Reason.not_stackable]

    def test_coupons_applied_earlier_on_the_order_count(self) -> None:
        stackable = terms(stacking="stackable", max_per_order=2, amount_off=D("70"))
        results = rules.apply_coupons(basket(), [coupon("B", stackable)], NOW, already_applied=[(stackable, D("70"))])
        assert results[0].discount == D("30")  # only what the earlier coupon left
        results = rules.apply_coupons(basket(), [coupon("B", stackable)], NOW, already_applied=[(terms(), D("20"))])
        assert results[0].reason is Reason.not_stackable

    def test_the_same_code_twice_applies_once(self) -> None:
        t = terms(stacking="stackable", max_per_order=5)
        assert [r.reason for r in rules.apply_coupons(basket(), [coupon("A", t), coupon("A", t)], NOW)] == \
            [None, Reason.already_redeemed]


class TestTransitions:
    def test_the_policy_is_four_guarded_moves(self) -> None:
        assert [(t.name, t.from_status, t.to_status) for t in rules.TRANSITIONS] == [
            ("redeem", "issued", "redeemed"), ("void", "issued", "voided"), ("expire", "issued", "expired"),
            ("restore", "redeemed", "issued"),
        ]

    def test_restore_once_and_only_while_valid(self) -> None:
        end = NOW + timedelta(days=1)
        assert rules.can_restore("redeemed", 0, end, NOW)
        assert not rules.can_restore("redeemed", 1, end, NOW)
        assert not rules.can_restore("redeemed", 0, NOW, NOW)
        assert not rules.can_restore("voided", 0, end, NOW)


# --- properties -----------------------------------------------------------------------------------------

money = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False, allow_infinity=False)
positive = st.decimals(min_value=D("0.01"), max_value=10_000, places=2, allow_nan=False, allow_infinity=False)


@st.composite
def any_terms(draw: st.DrawFn) -> CouponTerms:
    kind = draw(st.sampled_from(["amount_off", "percent_off", "threshold", "free_shipping", "gift"]))
    stacking = draw(st.sampled_from(["exclusive", "stackable"]))
    fields: dict[str, object] = {"kind": kind, "valid_days": 30, "stacking": stacking,
                                 "max_per_order": 1 if stacking == "exclusive" else draw(st.integers(1, 5)),
                                 "min_spend": draw(st.none() | money)}
    if kind == "amount_off":
        fields["amount_off"] = draw(positive)
    elif kind == "percent_off":
        fields["percent_off"] = draw(st.decimals(min_value=D("0.01"), max_value=100, places=2))
        fields["max_discount"] = draw(st.none() | positive)
    elif kind == "threshold":
        threshold = draw(positive)
        fields["threshold"] = threshold
        fields["amount_off"] = draw(st.decimals(min_value=D("0.01"), max_value=threshold, places=2))
    elif kind == "free_shipping":
        fields["max_discount"] = draw(st.none() | positive)
    else:
        fields["gift_sku"] = draw(st.sampled_from(["G1", "G2"]))
    return CouponTerms.model_validate(fields)


@st.composite
def baskets(draw: st.DrawFn) -> Basket:
    amount = draw(money)
    shipping = draw(st.decimals(min_value=0, max_value=amount, places=2))
    items = tuple(draw(st.lists(st.builds(BasketItem, st.sampled_from(["G1", "G2", "X"]), st.integers(1, 3), money),
                                max_size=3)))
    return Basket("m1", amount, "pos", "S1", shipping, items)


@settings(max_examples=400, deadline=None)
@given(order=baskets(), presented=st.lists(any_terms(), max_size=6),
       earlier=st.lists(st.tuples(any_terms(), money), max_size=2))
def test_discounts_are_never_negative_never_exceed_the_order_and_respect_caps_and_stacking(
    order: Basket, presented: list[CouponTerms], earlier: list[tuple[CouponTerms, Decimal]]
) -> None:
    coupons_ = [coupon(f"C{i}", t) for i, t in enumerate(presented)]
    results = rules.apply_coupons(order, coupons_, NOW, already_applied=earlier)
    assert [r.code for r in results] == [c.code for c in coupons_]
    left = max(D("0"), order.amount - sum((d for _, d in earlier), D("0")))
    applied = [(c.terms, r) for c, r in zip(coupons_, results, strict=True) if r.is_applied]
    assert all(r.discount >= 0 for r in results)
    assert all(r.discount == 0 for r in results if not r.is_applied)
    assert sum((r.discount for _, r in applied), D("0")) <= left
    for t, r in applied:
        if t.max_discount is not None:
            assert r.discount <= t.max_discount
        if t.kind == "percent_off":
            assert r.discount <= (order.amount * t.percent_off / 100).quantize(D("0.01"), rounding="ROUND_HALF_UP")  # type: ignore[operator]
        if t.kind in ("amount_off", "threshold"):
            assert r.discount <= t.amount_off  # type: ignore[operator]
        assert order.amount >= t.minimum_spend
    everything = [t for t, _ in earlier] + [t for t, _ in applied]
    if any(t.stacking == "exclusive" for t in everything):
        assert len(applied) + len(earlier) <= 1 or not applied
    if len(everything) > 1 and applied:
        assert len(everything) <= min(t.max_per_order for t in everything)
