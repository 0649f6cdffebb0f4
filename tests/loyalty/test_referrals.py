"""Referrals (issue 6, "Referrals") on every state store: codes, the first binding wins, fraud guards (self,
shared identifier, ring, cap, bought before), rewards pending through the return window, a full refund
claws them back once, replays change nothing, two bindings of one friend at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.service import Actor
from memberops.db.base import utcnow
from memberops.errors import DomainError
from memberops.identity.models import Identifier
from memberops.ingest.models import LiveRefund
from memberops.loyalty import coupons, enrolment, points, referral_reports, referrals
from memberops.loyalty.coupon_models import Coupon
from memberops.loyalty.models import PointsMovement
from memberops.loyalty.referral_errors import (
    AlreadyReferred,
    ReferralsDisabled,
    SelfReferral,
    UnknownReferralCode,
)
from memberops.loyalty.referral_models import ReferralBinding
from memberops.runtime import Context
from tests.factories import make_key
from tests.loyalty.coupon_factories import make_template
from tests.loyalty.factories import enrol, live_order, post_order, post_refund, set_programme
from tests.loyalty.test_points import check_ledger

NOW = utcnow().replace(microsecond=0) - timedelta(hours=1)  # the live hooks run on the real clock
RULES: dict[str, Any] = {"enabled": True, "referrer_points": 200, "friend_points": 100, "min_paid_amount": "50"}


@pytest.fixture
def people(context: Context, workspace: Workspace) -> dict[str, str]:
    """A programme with referrals (7-day return window); Alice refers, Bob and Carol are friends."""
    with context.store.transaction() as session:
        set_programme(session, workspace, earn={"pending_days": 7}, referrals=RULES)
        return {name: enrol(session, workspace, name, phone=f"+86138000000{n:02d}")
                for n, name in enumerate(("alice", "bob", "carol", "dave"), start=1)}


def code_of(context: Context, workspace: Workspace, member_id: str) -> str:
    with context.store.read() as session:
        code = referrals.referral_code_of(session, workspace.id, member_id)
    assert code is not None
    return code


def bind(context: Context, workspace: Workspace, friend: str, code: str, **kwargs: Any) -> referrals.Bound:
    with context.store.transaction() as session:
        bound = referrals.bind_referral(session, workspace, friend, code, **kwargs)
        session.expunge(bound.binding)
        return bound


def binding(context: Context, workspace: Workspace, friend: str) -> ReferralBinding:
    with context.store.read() as session:
        found = referrals.binding_of(session, workspace.id, friend)
        assert found is not None
        session.expunge(found)
        return found


def balance(context: Context, workspace: Workspace, member_id: str, at: Any = None) -> tuple[int, int]:
    with context.store.read() as session:
        summary = points.points_summary(session, workspace, member_id, now=at)
        check_ledger(session, member_id)
    return summary.available, summary.pending


class TestCodes:
    def test_every_member_has_a_short_unguessable_code(self, context: Context, workspace: Workspace,
                                                       people: dict[str, str]) -> None:
        codes = {code_of(context, workspace, member) for member in people.values()}
        assert len(codes) == 4
        assert all(len(code) == 8 and set(code) <= set(referrals.ALPHABET) for code in codes)

    def test_a_code_a_link_or_a_member_card_finds_the_referrer(self, context: Context, workspace: Workspace,
                                                                people: dict[str, str]) -> None:
        code = code_of(context, workspace, people["alice"])
        with context.store.transaction() as session:
            card_holder = enrolment.enrol(session, workspace, channel="wechat", source_id="w1",
                                          identifiers={"member_card_no": "LS0000000042"}).member.id
            assert referrals.find_referrer(session, workspace.id, code.lower()) == people["alice"]
            assert referrals.find_referrer(session, workspace.id, f"https://shop.example/join?ref={code}") == people["alice"]
            assert referrals.find_referrer(session, workspace.id, " LS0000000042 ") == card_holder
            with pytest.raises(UnknownReferralCode):
                referrals.find_referrer(session, workspace.id, "NOPE2345")


class TestBinding:
    def test_the_first_binding_wins_and_a_replay_changes_nothing(self, context: Context, workspace: Workspace,
                                                                 people: dict[str, str]) -> None:
        first = bind(context, workspace, people["bob"], code_of(context, workspace, people["alice"]))
        assert not first.is_replay and first.binding.status == "awaiting_purchase"
        again = bind(context, workspace, people["bob"], code_of(context, workspace, people["alice"]))
        assert again.is_replay and again.binding.id == first.binding.id
        with pytest.raises(AlreadyReferred):
            bind(context, workspace, people["bob"], code_of(context, workspace, people["carol"]))
        assert binding(context, workspace, people["bob"]).referrer_member_id == people["alice"]

    def test_self_referral_is_refused_for_the_same_member_a_shared_phone_or_a_ring(
        self, context: Context, workspace: Workspace, people: dict[str, str],
    ) -> None:
        alice = code_of(context, workspace, people["alice"])
        with pytest.raises(SelfReferral):
            bind(context, workspace, people["alice"], alice)
        with context.store.transaction() as session:  # Carol also uses Alice's phone (a second account)
            session.add(Identifier(workspace_id=workspace.id, member_id=people["carol"], type="phone",
                                   value="+8613800000001", channel="app"))
        with pytest.raises(SelfReferral) as refused:
            bind(context, workspace, people["carol"], alice)
        assert refused.value.facts["reason"] == "shares a phone with the referrer"
        bind(context, workspace, people["bob"], alice)
        with pytest.raises(SelfReferral):  # Alice cannot be referred back by the friend she referred
            bind(context, workspace, people["alice"], code_of(context, workspace, people["bob"]))
        with context.store.read() as session:
            assert session.scalar(select(func.count()).select_from(ReferralBinding)) == 1

    def test_a_referrer_over_the_cap_is_recorded_but_not_rewarded(self, context: Context, workspace: Workspace,
                                                                  people: dict[str, str]) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, earn={"pending_days": 7},
                          referrals={**RULES, "cap_per_period": 1, "cap_period": "month"})
        alice = code_of(context, workspace, people["alice"])
        this_month = (NOW - timedelta(days=70)).replace(day=10, hour=3)
        assert bind(context, workspace, people["bob"], alice, now=this_month).binding.status == "awaiting_purchase"
        capped = bind(context, workspace, people["carol"], alice, now=this_month + timedelta(days=1)).binding
        assert capped.status == "over_cap"
        next_month = (this_month + timedelta(days=31)).replace(day=2)
        assert bind(context, workspace, people["dave"], alice, now=next_month).binding.status == "awaiting_purchase"
        with context.store.transaction() as session:
            post_order(session, workspace, "c-1", customer_key="carol", ordered_at=NOW)
        assert binding(context, workspace, people["carol"]).status == "over_cap"
        assert balance(context, workspace, people["alice"], NOW + timedelta(days=8)) == (0, 0)

    def test_a_friend_who_bought_before_binding_does_not_qualify(self, context: Context, workspace: Workspace,
                                                                 people: dict[str, str]) -> None:
        with context.store.transaction() as session:
            post_order(session, workspace, "b-0", customer_key="bob", ordered_at=NOW - timedelta(days=30))
        bound = bind(context, workspace, people["bob"], code_of(context, workspace, people["alice"]))
        assert bound.binding.status == "ineligible"
        with context.store.transaction() as session:
            post_order(session, workspace, "b-1", customer_key="bob", ordered_at=NOW)
        assert balance(context, workspace, people["alice"], NOW + timedelta(days=8)) == (0, 0)

    def test_refusals(self, context: Context, workspace: Workspace, people: dict[str, str]) -> None:
        with pytest.raises(UnknownReferralCode):
            bind(context, workspace, people["bob"], "ZZZZ2345")
        with context.store.transaction() as session:
            set_programme(session, workspace)
        with pytest.raises(ReferralsDisabled):
            bind(context, workspace, people["bob"], code_of(context, workspace, people["alice"]))


class TestRewards:
    @pytest.fixture
    def bound(self, context: Context, workspace: Workspace, people: dict[str, str]) -> dict[str, str]:
        bind(context, workspace, people["bob"], code_of(context, workspace, people["alice"]),
             now=NOW - timedelta(days=20))
        return people

    def test_rewards_wait_for_the_return_window_of_the_first_qualifying_purchase(
        self, context: Context, workspace: Workspace, bound: dict[str, str],
    ) -> None:
        with context.store.transaction() as session:
            post_order(session, workspace, "b-small", customer_key="bob", paid="30.00", ordered_at=NOW)
        assert binding(context, workspace, bound["bob"]).status == "awaiting_purchase"  # under the minimum
        with context.store.transaction() as session:
            post_order(session, workspace, "b-1", customer_key="bob", paid="120.00", ordered_at=NOW)
            post_order(session, workspace, "b-2", customer_key="bob", paid="120.00", ordered_at=NOW)
        done = binding(context, workspace, bound["bob"])
        assert (done.status, done.reward_order, done.referrer_points) == ("rewarded", "pos:b-1", 200)
        assert referral_reports.shown_status(done, NOW) == "pending"
        assert balance(context, workspace, bound["alice"], NOW + timedelta(days=6)) == (0, 200)
        assert balance(context, workspace, bound["bob"], NOW + timedelta(days=6)) == (0, 30 + 120 + 120 + 100)
        assert balance(context, workspace, bound["alice"], NOW + timedelta(days=8)) == (200, 0)
        assert referral_reports.shown_status(done, NOW + timedelta(days=8)) == "rewarded"
        with context.store.read() as session:  # the second order rewarded nothing more
            assert session.scalar(select(func.count()).select_from(PointsMovement).where(
                PointsMovement.source_type == "referral")) == 2

    def test_a_full_refund_inside_the_window_claws_both_back_once(self, context: Context, workspace: Workspace,
                                                                   bound: dict[str, str]) -> None:
        with context.store.transaction() as session:
            post_order(session, workspace, "b-1", customer_key="bob", paid="120.00", ordered_at=NOW)
            post_refund(session, workspace, "r-part", order_id="b-1", amount="20.00", refunded_at=NOW)
        assert binding(context, workspace, bound["bob"]).status == "rewarded"  # a partial refund keeps them
        with context.store.transaction() as session:
            post_refund(session, workspace, "r-rest", order_id="b-1", amount="100.00", refunded_at=NOW)
            assert post_refund(session, workspace, "r-rest", order_id="b-1", amount="100.00",
                               refunded_at=NOW).status == "duplicate"
        with context.store.transaction() as session:  # the hook again, directly: nothing more
            refund = session.scalars(select(LiveRefund)).all()[-1]
            assert referrals.claw_back_on_refund(session, workspace, refund, live_order(session, "b-1")) is None
        clawed = binding(context, workspace, bound["bob"])
        assert (clawed.status, clawed.clawbacks, clawed.reward_order) == ("awaiting_purchase", 1, None)
        assert balance(context, workspace, bound["alice"], NOW + timedelta(days=8)) == (0, 0)
        assert balance(context, workspace, bound["bob"], NOW + timedelta(days=8)) == (0, 0)
        with context.store.read() as session:
            reversals = session.scalars(select(PointsMovement).where(
                PointsMovement.source_type == "referral", PointsMovement.kind == "reverse")).all()
            assert sorted(m.points for m in reversals) == [100, 200]
        with context.store.transaction() as session:  # the next qualifying purchase is the one rewarded
            post_order(session, workspace, "b-2", customer_key="bob", paid="60.00", ordered_at=NOW)
        assert binding(context, workspace, bound["bob"]).reward_order == "pos:b-2"
        assert balance(context, workspace, bound["alice"], NOW + timedelta(days=8)) == (200, 0)

    def test_a_late_posted_refund_takes_spent_rewards_as_a_debt(self, context: Context, workspace: Workspace,
                                                                bound: dict[str, str]) -> None:
        with context.store.transaction() as session:  # the rewards passed their window and Alice spent most
            post_order(session, workspace, "b-1", customer_key="bob", paid="120.00", ordered_at=NOW - timedelta(days=10))
            points.redeem(session, workspace, bound["alice"], points=150, reason="", idempotency_key="spend",
                          actor=Actor("api_key", "pos"))
        with context.store.transaction() as session:  # a refund made inside the window, posted late
            post_refund(session, workspace, "r-1", order_id="b-1", amount="120.00", refunded_at=NOW - timedelta(days=8))
        with context.store.read() as session:
            summary = points.points_summary(session, workspace, bound["alice"])
            check_ledger(session, bound["alice"])
        assert (summary.available, summary.debt) == (0, 150)
        assert binding(context, workspace, bound["bob"]).clawbacks == 1

    def test_reward_coupons_are_issued_and_voided_by_the_clawback(self, context: Context, workspace: Workspace,
                                                                  bound: dict[str, str]) -> None:
        with context.store.transaction() as session:
            make_template(session, workspace.id, "WELCOME-FRIEND")
            set_programme(session, workspace, earn={"pending_days": 7},
                          referrals={**RULES, "friend_coupon": "WELCOME-FRIEND", "referrer_coupon": "NO-SUCH"})
            outcome = post_order(session, workspace, "b-1", customer_key="bob", paid="120.00", ordered_at=NOW)
        assert [w.code for w in outcome.warnings] == ["referral_coupon_not_issued"]  # the points stand
        with context.store.read() as session:
            (coupon,) = session.scalars(select(Coupon).where(Coupon.member_id == bound["bob"])).all()
            assert coupon.status == "issued"
        with context.store.transaction() as session:
            post_refund(session, workspace, "r-1", order_id="b-1", amount="120.00", refunded_at=NOW)
        with context.store.read() as session:
            assert session.scalars(select(Coupon.status).where(Coupon.member_id == bound["bob"])).all() == ["voided"]
        assert balance(context, workspace, bound["alice"], NOW + timedelta(days=8)) == (0, 0)

    def test_the_clawback_voids_the_coupon_the_reward_issued_not_a_later_one_of_a_shared_code(
            self, context: Context, workspace: Workspace, bound: dict[str, str]) -> None:
        with context.store.transaction() as session:
            template = make_template(session, workspace.id, "FRIEND-SHARED", shared_code="HELLOFRIEND")
            set_programme(session, workspace, earn={"pending_days": 7},
                          referrals={**RULES, "friend_coupon": "FRIEND-SHARED"})
            post_order(session, workspace, "b-1", customer_key="bob", paid="120.00", ordered_at=NOW)
            # a later coupon of the same shared code for Bob, from a campaign: not the reward's
            later = coupons.issue_coupon(session, workspace.id, template.id, bound["bob"], "campaign:1").coupon.id
        with context.store.transaction() as session:
            post_refund(session, workspace, "r-1", order_id="b-1", amount="120.00", refunded_at=NOW + timedelta(hours=2))
        with context.store.read() as session:
            statuses = dict(session.execute(select(Coupon.issue_key, Coupon.status)
                                            .where(Coupon.member_id == bound["bob"])).all())
            assert session.get_one(Coupon, later).status == "issued"
        assert statuses == {referrals.reward_key(binding(context, workspace, bound["bob"]).id, "pos:b-1", "friend"):
                            "voided", "campaign:1": "issued"}

    def test_a_refund_after_the_window_leaves_the_rewards(self, context: Context, workspace: Workspace,
                                                          bound: dict[str, str]) -> None:
        with context.store.transaction() as session:
            post_order(session, workspace, "b-1", customer_key="bob", paid="120.00", ordered_at=NOW - timedelta(days=10))
            post_refund(session, workspace, "r-1", order_id="b-1", amount="120.00", refunded_at=NOW)
        assert binding(context, workspace, bound["bob"]).status == "rewarded"
        assert balance(context, workspace, bound["alice"]) == (200, 0)


class TestConcurrency:
    def test_two_bindings_of_one_friend_at_once_one_wins(self, context: Context, workspace: Workspace,
                                                         people: dict[str, str]) -> None:
        codes = [code_of(context, workspace, people[name]) for name in ("alice", "carol")]
        barrier = threading.Barrier(2)
        results: list[str] = []
        lock = threading.Lock()

        def terminal(code: str) -> None:
            barrier.wait()
            try:
                bind(context, workspace, people["bob"], code)
                outcome = "bound"
            except DomainError as exc:
                outcome = exc.code
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=terminal, args=(code,)) for code in codes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(results) == ["already_referred", "bound"]
        with context.store.read() as session:
            assert session.scalar(select(func.count()).select_from(ReferralBinding)) == 1


class TestApi:
    @pytest.fixture
    def client(self, context: Context) -> Iterator[TestClient]:
        with TestClient(create_app(context), raise_server_exceptions=False) as client:
            yield client

    @pytest.fixture
    def auth(self, context: Context, workspace: Workspace) -> dict[str, str]:
        with context.store.transaction() as session:
            return {"Authorization": f"Bearer {make_key(session, workspace, 'loyalty', 'ingest', 'read')}"}

    def test_bind_read_and_enrol_with_a_code(self, client: TestClient, auth: dict[str, str], context: Context,
                                            workspace: Workspace, people: dict[str, str]) -> None:
        alice = code_of(context, workspace, people["alice"])
        url = f"/api/v1/members/{people['bob']}/referral"
        first = client.post(url, json={"code": f"https://shop.example/j?ref={alice}"}, headers=auth)
        assert first.status_code == 201, first.text
        assert first.json()["binding"]["status"] == "awaiting_purchase" and first.json()["binding"]["is_rewardable"]
        assert client.post(url, json={"code": alice}, headers=auth).status_code == 200
        other = client.post(url, json={"code": code_of(context, workspace, people["carol"])}, headers=auth)
        assert (other.status_code, other.json()["code"]) == (409, "already_referred")
        own = client.post(f"/api/v1/members/{people['alice']}/referral", json={"code": alice}, headers=auth)
        assert (own.status_code, own.json()["code"]) == (409, "self_referral")
        unknown = client.post(f"/api/v1/members/{people['carol']}/referral", json={"code": "QQQQ2345"}, headers=auth)
        assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_referral_code")

        joined = client.post("/api/v1/members", json={"phone": "+8613900000009", "referrer_code": alice}, headers=auth)
        assert joined.status_code == 201, joined.text
        assert joined.json()["referral"]["referrer_member_id"] == people["alice"]
        refused = client.post("/api/v1/members", json={"phone": "+8613900000010", "referrer_code": "QQQQ2345"},
                              headers=auth)
        assert refused.status_code == 201 and refused.json()["referral_problem"]["code"] == "unknown_referral_code"

        with context.store.transaction() as session:
            post_order(session, workspace, "b-1", customer_key="bob", paid="120.00", ordered_at=utcnow())
        mine = client.get(f"/api/v1/members/{people['alice']}/referrals", headers=auth).json()
        assert mine["code"] == alice and mine["points_earned"] == 200
        assert mine["counts"] == {"bindings": 2, "awaiting_purchase": 1, "pending": 1, "rewarded": 0,
                                  "over_cap": 0, "ineligible": 0}
        assert client.get(f"/api/v1/members/{people['bob']}/referrals",
                          headers=auth).json()["referred_by"]["referrer_member_id"] == people["alice"]
        top = client.get("/api/v1/loyalty/referrals", headers=auth).json()
        assert top[0]["member_id"] == people["alice"] and top[0]["bindings"] == 2 and top[0]["rewarded"] == 1
        card = client.get(f"/api/v1/members/{people['alice']}", headers=auth).json()["loyalty"]
        assert card["referral_code"] == alice and card["referrals"].startswith("2 referred")
