"""Coupon service on every state store: templates and versions, issue, redeem, replay, void, expire,
refund-restore, shared codes, and concurrent redeems and issues from threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.audit.models import AuditEntry
from memberops.audit.service import Actor
from memberops.db.base import utcnow
from memberops.errors import DomainError
from memberops.loyalty import coupon_templates, coupons
from memberops.loyalty.coupon_errors import (
    CouponIssueLimitReached,
    CouponNotFound,
    CouponNotRedeemable,
    CouponNotVoidable,
    CouponSoldOut,
    CouponTemplateExists,
    CouponTemplateUnavailable,
    IdempotencyKeyReused,
    InvalidCouponTemplate,
)
from memberops.loyalty.coupon_models import Coupon, CouponRedemption
from memberops.loyalty.coupon_schemas import CouponTemplateUpdate
from memberops.runtime import Context
from tests.loyalty.coupon_factories import make_member, make_template, order, terms


@pytest.fixture
def member(context: Context, workspace: Workspace) -> str:
    with context.store.transaction() as session:
        return make_member(session, workspace.id)


def issue(context: Context, workspace: Workspace, member: str, key: str = "k1", template: str = "SPRING-20") -> Coupon:
    with context.store.transaction() as session:
        return coupons.issue_coupon(session, workspace.id, template, member, key).coupon


def template(context: Context, workspace: Workspace, code: str = "SPRING-20", **kwargs: Any) -> None:
    with context.store.transaction() as session:
        make_template(session, workspace.id, code, **kwargs)


def redeem(context: Context, workspace: Workspace, code: str, ctx: coupons.OrderContext, **kw: Any) -> coupons.Redeemed:
    with context.store.transaction() as session:
        return coupons.redeem_coupon(session, workspace.id, code, ctx, **kw)


def reason_of(call: Callable[[], object]) -> str:
    with pytest.raises(CouponNotRedeemable) as caught:
        call()
    return caught.value.reason


class TestTemplates:
    def test_terms_change_makes_a_version_and_issued_coupons_keep_theirs(
        self, context: Context, workspace: Workspace, member: str
    ) -> None:
        template(context, workspace)
        first = issue(context, workspace, member)
        with context.store.transaction() as session:
            updated = coupon_templates.update_template(session, workspace.id, "SPRING-20",
                                              CouponTemplateUpdate(terms=terms(amount_off=Decimal("35"))),
                                              actor=Actor.cli())
            assert updated.version == 2
        second = issue(context, workspace, member, "k2")
        assert (first.template_version, second.template_version) == (1, 2)
        assert redeem(context, workspace, first.code, order(member, "o1")).redemption.discount == Decimal("20")  # type: ignore[union-attr]
        assert redeem(context, workspace, second.code, order(member, "o2")).redemption.discount == Decimal("35")  # type: ignore[union-attr]
        with context.store.read() as session:
            actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
        assert [a for a in actions if a.startswith("coupon_template")] == ["coupon_template.create",
                                                                             "coupon_template.update"]

    def test_unchanged_terms_make_no_version_and_stock_never_drops_below_issued(
        self, context: Context, workspace: Workspace, member: str
    ) -> None:
        template(context, workspace, stock=5)
        issue(context, workspace, member)
        issue(context, workspace, member, "k2")
        with context.store.transaction() as session:
            same = coupon_templates.update_template(session, workspace.id, "SPRING-20", CouponTemplateUpdate(terms=terms()),
                                           actor=Actor.cli())
            assert same.version == 1
            with pytest.raises(InvalidCouponTemplate):
                coupon_templates.update_template(session, workspace.id, "SPRING-20", CouponTemplateUpdate(stock=1),
                                        actor=Actor.cli())

    def test_codes_are_unique(self, context: Context, workspace: Workspace) -> None:
        template(context, workspace, shared_code="welcome10")
        with pytest.raises(CouponTemplateExists):
            template(context, workspace)
        with pytest.raises(CouponTemplateExists):
            template(context, workspace, "OTHER", shared_code="WELCOME-10")


class TestIssue:
    def test_replay_returns_the_same_coupon(self, context: Context, workspace: Workspace, member: str) -> None:
        template(context, workspace, stock=1)
        first, again = issue(context, workspace, member), issue(context, workspace, member)
        assert first.id == again.id and len(first.code) == 12
        with context.store.read() as session:
            assert coupon_templates.get_template(session, workspace.id, "SPRING-20").issued_count == 1

    def test_key_reused_for_another_member_is_refused(self, context: Context, workspace: Workspace, member: str) -> None:
        template(context, workspace)
        issue(context, workspace, member)
        with context.store.transaction() as session:
            other = make_member(session, workspace.id)
        with pytest.raises(IdempotencyKeyReused):
            issue(context, workspace, other)

    def test_stock_limit_archive_and_closed_window(self, context: Context, workspace: Workspace, member: str) -> None:
        template(context, workspace, stock=2, per_member_limit=1)
        issue(context, workspace, member)
        with pytest.raises(CouponIssueLimitReached):
            issue(context, workspace, member, "k2")
        with context.store.transaction() as session:
            other, third = make_member(session, workspace.id), make_member(session, workspace.id)
        issue(context, workspace, other, "k3")
        with pytest.raises(CouponSoldOut):
            issue(context, workspace, third, "k4")
        template(context, workspace, "OLD", valid_days=None, valid_until=utcnow() - timedelta(days=1),
                 valid_from=utcnow() - timedelta(days=9))
        with pytest.raises(CouponTemplateUnavailable, match="closed"):
            issue(context, workspace, member, "k5", template="OLD")
        with context.store.transaction() as session:
            coupon_templates.update_template(session, workspace.id, "SPRING-20", CouponTemplateUpdate(status="archived"),
                                    actor=Actor.cli())
        with pytest.raises(CouponTemplateUnavailable, match="archived"):
            issue(context, workspace, third, "k6")


class TestRedeem:
    def test_once_then_409_already_redeemed_and_a_replay_returns_the_original(
        self, context: Context, workspace: Workspace, member: str
    ) -> None:
        template(context, workspace)
        coupon = issue(context, workspace, member)
        first = redeem(context, workspace, coupon.code.lower(), order(member, "o1"))
        again = redeem(context, workspace, coupon.code, order(member, "o1", amount="999"))
        assert first.redemption.discount == Decimal("20") and not first.is_replay  # type: ignore[union-attr]
        assert again.is_replay and again.redemption.id == first.redemption.id  # type: ignore[union-attr]
        assert reason_of(lambda: redeem(context, workspace, coupon.code, order(member, "o2"))) == "already_redeemed"
        with context.store.read() as session:
            assert session.scalar(select(func.count()).select_from(CouponRedemption)) == 1

    @pytest.mark.parametrize(("terms_", "ctx", "reason"), [
        ({"channels": ["tmall"]}, {}, "wrong_channel"),
        ({"stores": ["S2"]}, {}, "wrong_store"),
        ({"min_spend": Decimal("150")}, {}, "below_minimum_spend"),
        ({"valid_days": None, "valid_from": utcnow() + timedelta(days=2), "valid_until": utcnow() + timedelta(days=9)},
         {}, "not_yet_valid"),
        ({}, {"now": utcnow() + timedelta(days=31)}, "expired"),
    ])
    def test_reasons(self, context: Context, workspace: Workspace, member: str, terms_: dict[str, Any],
                     ctx: dict[str, Any], reason: str) -> None:
        template(context, workspace, **terms_)
        coupon = issue(context, workspace, member)
        assert reason_of(lambda: redeem(context, workspace, coupon.code, order(member), **ctx)) == reason
        with context.store.read() as session:
            assert session.get_one(Coupon, coupon.id).status == "issued"

    def test_not_owner_voided_and_unknown(self, context: Context, workspace: Workspace, member: str) -> None:
        template(context, workspace)
        coupon = issue(context, workspace, member)
        with context.store.transaction() as session:
            other = make_member(session, workspace.id)
        assert reason_of(lambda: redeem(context, workspace, coupon.code, order(other))) == "not_owner"
        with context.store.transaction() as session:
            coupons.void_coupon(session, workspace.id, coupon.code, "sent by mistake", actor=Actor.cli())
        assert reason_of(lambda: redeem(context, workspace, coupon.code, order(member))) == "voided"
        with context.store.transaction() as session, pytest.raises(CouponNotVoidable):
            coupons.void_coupon(session, workspace.id, coupon.code, "again", actor=Actor.cli())
        with pytest.raises(CouponNotFound):
            redeem(context, workspace, "NOPE2345ABCD", order(member))

    def test_exclusive_coupon_not_stacked_on_an_order_across_requests(
        self, context: Context, workspace: Workspace, member: str
    ) -> None:
        template(context, workspace)
        a, b = issue(context, workspace, member), issue(context, workspace, member, "k2")
        redeem(context, workspace, a.code, order(member, "o1"))
        assert reason_of(lambda: redeem(context, workspace, b.code, order(member, "o1"))) == "not_stackable"
        assert redeem(context, workspace, b.code, order(member, "o2")).redemption is not None

    def test_shared_code_issues_on_redeem_within_the_member_limit(
        self, context: Context, workspace: Workspace, member: str
    ) -> None:
        template(context, workspace, "WELCOME", shared_code="WELCOME10", per_member_limit=1)
        first = redeem(context, workspace, "welcome10", order(member, "o1"))
        assert first.coupon.code == "WELCOME10" and first.redemption.discount == Decimal("20")  # type: ignore[union-attr]
        assert redeem(context, workspace, "WELCOME10", order(member, "o1")).is_replay
        assert reason_of(lambda: redeem(context, workspace, "WELCOME10", order(member, "o2"))) == "already_redeemed"
        with context.store.transaction() as session:
            other = make_member(session, workspace.id)
        assert redeem(context, workspace, "WELCOME10", order(other, "o3")).redemption is not None
        with context.store.read() as session:
            assert coupons.find_coupon(session, workspace.id, "WELCOME10", member_id=other).member_id == other


class TestExpireAndRestore:
    def test_expire_marks_only_unused_ended_coupons(self, context: Context, workspace: Workspace, member: str) -> None:
        template(context, workspace)
        used, unused = issue(context, workspace, member), issue(context, workspace, member, "k2")
        redeem(context, workspace, used.code, order(member, "o1"))
        with context.store.transaction() as session:
            assert coupons.expire_coupons(session, now=utcnow() + timedelta(days=29)) == 0
            assert coupons.expire_coupons(session, now=utcnow() + timedelta(days=31)) == 1
        with context.store.read() as session:
            assert session.get_one(Coupon, unused.id).status == "expired"
            assert session.get_one(Coupon, used.id).status == "redeemed"

    def test_full_refund_restores_once(self, context: Context, workspace: Workspace, member: str) -> None:
        template(context, workspace)
        coupon = issue(context, workspace, member)
        redeem(context, workspace, coupon.code, order(member, "o1"))
        key = coupons.OrderContext.key_for("pos", "o1", None)
        with context.store.transaction() as session:
            assert [r.is_restored for r in coupons.restore_order_coupons(session, workspace.id, key)] == [True]
            assert coupons.restore_order_coupons(session, workspace.id, key) == []  # never twice
        redeem(context, workspace, coupon.code, order(member, "o2"))
        with context.store.transaction() as session:
            restored = coupons.restore_order_coupons(session, workspace.id, coupons.OrderContext.key_for("pos", "o2", None))
            assert [r.is_restored for r in restored] == [False]  # restored once already: stays used
            assert session.get_one(Coupon, coupon.id).status == "redeemed"

    def test_a_redeem_retried_after_the_refund_is_a_replay(self, context: Context, workspace: Workspace,
                                                           member: str) -> None:
        template(context, workspace)
        coupon = issue(context, workspace, member)
        first = redeem(context, workspace, coupon.code, order(member, "o1"))
        with context.store.transaction() as session:
            coupons.restore_order_coupons(session, workspace.id, coupons.OrderContext.key_for("pos", "o1", None))
        retried = redeem(context, workspace, coupon.code, order(member, "o1"))
        assert retried.is_replay and retried.redemption.id == first.redemption.id  # type: ignore[union-attr]
        with context.store.read() as session:
            assert session.get_one(Coupon, coupon.id).status == "issued"

    def test_expired_coupon_is_not_restored(self, context: Context, workspace: Workspace, member: str) -> None:
        template(context, workspace)
        coupon = issue(context, workspace, member)
        redeem(context, workspace, coupon.code, order(member, "o1"))
        with context.store.transaction() as session:
            restored = coupons.restore_order_coupons(session, workspace.id, coupons.OrderContext.key_for("pos", "o1", None),
                                                     now=utcnow() + timedelta(days=31))
            assert [r.is_restored for r in restored] == [False]


def _race(count: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` in ``count`` threads released at once; each result or the DomainError it raised."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except DomainError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


class TestConcurrency:
    def test_terminals_redeeming_one_coupon_at_once_exactly_one_wins(
        self, context: Context, workspace: Workspace, member: str
    ) -> None:
        template(context, workspace)
        coupon = issue(context, workspace, member)
        results = _race(8, lambda i: redeem(context, workspace, coupon.code, order(member, f"o{i}")))
        wins = [r for r in results if isinstance(r, coupons.Redeemed)]
        losses = [r for r in results if isinstance(r, CouponNotRedeemable)]
        assert len(wins) == 1 and len(losses) == 7, results
        assert {r.reason for r in losses} == {"already_redeemed"}
        with context.store.read() as session:
            assert session.scalar(select(func.count()).select_from(CouponRedemption)) == 1

    def test_one_redeem_retried_at_once_is_one_redemption(self, context: Context, workspace: Workspace, member: str) -> None:
        template(context, workspace)
        coupon = issue(context, workspace, member)
        results = _race(4, lambda i: redeem(context, workspace, coupon.code, order(member, "same")))
        redeemed = [r for r in results if isinstance(r, coupons.Redeemed)]
        assert len(redeemed) == len(results), results
        assert sum(not r.is_replay for r in redeemed) == 1
        with context.store.read() as session:
            assert session.scalar(select(func.count()).select_from(CouponRedemption)) == 1

    def test_issues_racing_for_the_last_stock(self, context: Context, workspace: Workspace) -> None:
        template(context, workspace, stock=3)
        with context.store.transaction() as session:
            members = [make_member(session, workspace.id) for _ in range(8)]
        results = _race(8, lambda i: issue(context, workspace, members[i], f"k{i}"))
        assert sum(isinstance(r, Coupon) for r in results) == 3
        assert sum(isinstance(r, CouponSoldOut) for r in results) == 5
        with context.store.read() as session:
            assert session.scalar(select(func.count()).select_from(Coupon)) == 3
            assert coupon_templates.get_template(session, workspace.id, "SPRING-20").issued_count == 3
