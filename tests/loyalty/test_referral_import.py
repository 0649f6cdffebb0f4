"""Referrals the channels recorded (``referrer_code`` on imported identity records), bound in bulk by
``bind_recorded_referrals`` on every state store: the first binding wins, a self-referral through a shared
identifier is refused, a rerun changes nothing, and the summary counts what the run did."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.identity.models import Identifier
from memberops.loyalty import points, referrals
from memberops.loyalty.models import PointsMovement
from memberops.loyalty.referral_import import RecordedReferralsSummary, bind_recorded_referrals
from memberops.loyalty.referral_models import ReferralBinding
from memberops.runtime import Context
from tests.insight.lake import AS_OF, Brand
from tests.loyalty.factories import enrol, set_programme
from tests.loyalty.test_points import check_ledger
from tests.loyalty.test_referrals import code_of

RULES: dict[str, Any] = {"enabled": True, "referrer_points": 200, "friend_points": 100, "min_paid_amount": "50"}
NOW = AS_OF + timedelta(days=1)
PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank")


@pytest.fixture
def people(context: Context, workspace: Workspace) -> dict[str, str]:
    """A programme with referrals (7-day return window) and six enrolled POS customers."""
    with context.store.transaction() as session:
        set_programme(session, workspace, earn={"pending_days": 7}, referrals=RULES)
        return {name: enrol(session, workspace, name, phone=f"+86138000000{n:02d}")
                for n, name in enumerate(PEOPLE, start=1)}


def lake_of(workspace: Workspace, people: dict[str, str]) -> Brand:
    """Every person's POS record (no referrer) in the identity map; a test adds the recorded referrals."""
    brand = Brand(workspace_id=workspace.id)
    for name, member_id in people.items():
        brand.person(member_id, channel="pos", source_id=name)
    return brand


def bindings(context: Context, workspace: Workspace) -> dict[str, tuple[str, str, str]]:
    """friend → (referrer, status, source)."""
    with context.store.read() as session:
        return {b.friend_member_id: (b.referrer_member_id, b.status, b.source) for b in session.scalars(
            select(ReferralBinding).where(ReferralBinding.workspace_id == workspace.id))}


def balance(context: Context, workspace: Workspace, member_id: str) -> tuple[int, int]:
    with context.store.read() as session:
        summary = points.points_summary(session, workspace, member_id, now=NOW)
        check_ledger(session, member_id)
    return summary.available, summary.pending


def counts(summary: RecordedReferralsSummary) -> dict[str, int]:
    return {"bound": summary.bound, "over_cap": summary.over_cap, "ineligible": summary.ineligible,
            "refused": summary.refused, "already_bound": summary.already_bound, "rewarded": summary.rewarded,
            "points": summary.points}


class TestBindRecordedReferrals:
    def test_the_earliest_recorded_referrer_wins_and_a_live_binding_stands(
        self, context: Context, workspace: Workspace, people: dict[str, str],
    ) -> None:
        alice, dave = code_of(context, workspace, people["alice"]), code_of(context, workspace, people["dave"])
        with context.store.transaction() as session:  # Carol was bound live to Alice before the import
            referrals.bind_referral(session, workspace, people["carol"], alice, now=AS_OF - timedelta(days=40))
        brand = lake_of(workspace, people)
        # Bob's WeChat record names Dave a day after his POS record named Alice: Alice referred him
        brand.person(people["bob"], channel="wechat", source_id="wx-bob", referrer_code=dave,
                     joined_at=AS_OF - timedelta(days=29))
        brand.person(people["bob"], channel="tmall", source_id="tm-bob", referrer_code=alice.lower(),
                     joined_at=AS_OF - timedelta(days=30))
        brand.person(people["carol"], channel="wechat", source_id="wx-carol", referrer_code=dave,
                     joined_at=AS_OF - timedelta(days=30))
        brand.write(context.settings.lake_path)

        summary = bind_recorded_referrals(context, workspace, now=NOW)

        assert bindings(context, workspace) == {
            people["bob"]: (people["alice"], "awaiting_purchase", "import"),
            people["carol"]: (people["alice"], "awaiting_purchase", "api"),
        }
        assert counts(summary) == {"bound": 1, "over_cap": 0, "ineligible": 0, "refused": 0, "already_bound": 1,
                                   "rewarded": 0, "points": 0}

    def test_a_member_card_number_names_the_referrer(self, context: Context, workspace: Workspace,
                                                     people: dict[str, str]) -> None:
        with context.store.transaction() as session:
            session.add(Identifier(workspace_id=workspace.id, member_id=people["dave"], type="member_card_no",
                                   value="LS0000000042", channel="pos"))
        brand = lake_of(workspace, people)
        brand.person(people["frank"], channel="wechat", source_id="wx-frank", referrer_code=" LS0000000042 ",
                     joined_at=AS_OF - timedelta(days=3))
        brand.write(context.settings.lake_path)
        assert bind_recorded_referrals(context, workspace, now=NOW).bound == 1
        assert bindings(context, workspace) == {people["frank"]: (people["dave"], "awaiting_purchase", "import")}

    def test_self_referrals_are_refused(self, context: Context, workspace: Workspace, people: dict[str, str]) -> None:
        alice, bob = code_of(context, workspace, people["alice"]), code_of(context, workspace, people["bob"])
        with context.store.transaction() as session:  # Erin's account uses Alice's phone: a second account of hers
            session.add(Identifier(workspace_id=workspace.id, member_id=people["erin"], type="phone",
                                   value="+8613800000001", channel="app"))
        brand = lake_of(workspace, people)
        brand.person(people["erin"], channel="wechat", source_id="wx-erin", referrer_code=alice,
                     joined_at=AS_OF - timedelta(days=10))
        brand.person(people["dave"], channel="wechat", source_id="wx-dave",
                     referrer_code=code_of(context, workspace, people["dave"]), joined_at=AS_OF - timedelta(days=10))
        brand.person(people["frank"], channel="wechat", source_id="wx-frank", referrer_code="NOPE2345",
                     joined_at=AS_OF - timedelta(days=10))
        # Bob names Alice, then Alice's later record names Bob: the referral ring is refused
        brand.person(people["bob"], channel="wechat", source_id="wx-bob", referrer_code=alice,
                     joined_at=AS_OF - timedelta(days=9))
        brand.person(people["alice"], channel="tmall", source_id="tm-alice", referrer_code=bob,
                     joined_at=AS_OF - timedelta(days=8))
        brand.write(context.settings.lake_path)

        summary = bind_recorded_referrals(context, workspace, now=NOW)

        assert bindings(context, workspace) == {people["bob"]: (people["alice"], "awaiting_purchase", "import")}
        assert (summary.bound, summary.refused) == (1, 4)

    def test_rewards_the_first_qualifying_purchase_and_counts_what_it_did(
        self, context: Context, workspace: Workspace, people: dict[str, str],
    ) -> None:
        alice = code_of(context, workspace, people["alice"])
        brand = lake_of(workspace, people)
        for friend in ("bob", "carol", "dave"):
            brand.person(people[friend], channel="wechat", source_id=f"wx-{friend}", referrer_code=alice,
                         joined_at=AS_OF - timedelta(days=30))
        brand.order("bob", "b-small", 25, "20.00", channel="pos")  # under the minimum: not the qualifying one
        brand.order("bob", "b-1", 20, "80.00", channel="pos")
        brand.order("bob", "b-2", 10, "90.00", channel="pos")
        brand.order("carol", "c-0", 40, "80.00", channel="pos")  # bought before she was referred
        brand.order("carol", "c-1", 10, "80.00", channel="pos")
        brand.write(context.settings.lake_path)

        summary = bind_recorded_referrals(context, workspace, now=NOW)

        assert bindings(context, workspace) == {
            people["bob"]: (people["alice"], "rewarded", "import"),
            people["carol"]: (people["alice"], "ineligible", "import"),
            people["dave"]: (people["alice"], "awaiting_purchase", "import"),  # has not bought yet
        }
        assert counts(summary) == {"bound": 3, "over_cap": 0, "ineligible": 1, "refused": 0, "already_bound": 0,
                                   "rewarded": 1, "points": 300}
        with context.store.read() as session:
            rewarded = referrals.binding_of(session, workspace.id, people["bob"])
            assert rewarded is not None and rewarded.reward_order is not None and "b-1" in rewarded.reward_order
        # b-1 was 20 days ago and the return window is 7 days: both rewards are available
        assert balance(context, workspace, people["alice"]) == (200, 0)
        assert balance(context, workspace, people["bob"]) == (100, 0)

    def test_a_referrer_over_the_cap_is_bound_but_not_rewarded(self, context: Context, workspace: Workspace,
                                                               people: dict[str, str]) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, earn={"pending_days": 7},
                          referrals={**RULES, "cap_per_period": 1, "cap_period": "year"})
        alice = code_of(context, workspace, people["alice"])
        brand = lake_of(workspace, people)
        brand.person(people["bob"], channel="wechat", source_id="wx-bob", referrer_code=alice,
                     joined_at=AS_OF - timedelta(days=30))
        brand.person(people["carol"], channel="wechat", source_id="wx-carol", referrer_code=alice,
                     joined_at=AS_OF - timedelta(days=29))
        brand.order("carol", "c-1", 10, "80.00", channel="pos")
        brand.write(context.settings.lake_path)

        summary = bind_recorded_referrals(context, workspace, now=NOW)

        assert bindings(context, workspace)[people["carol"]] == (people["alice"], "over_cap", "import")
        assert (summary.bound, summary.over_cap, summary.rewarded, summary.points) == (2, 1, 0, 0)
        assert balance(context, workspace, people["alice"]) == (0, 0)

    def test_a_rerun_changes_nothing(self, context: Context, workspace: Workspace, people: dict[str, str]) -> None:
        alice = code_of(context, workspace, people["alice"])
        brand = lake_of(workspace, people)
        for friend in ("bob", "carol"):
            brand.person(people[friend], channel="wechat", source_id=f"wx-{friend}", referrer_code=alice,
                         joined_at=AS_OF - timedelta(days=30))
        brand.order("bob", "b-1", 20, "80.00", channel="pos")
        brand.write(context.settings.lake_path)
        first = bind_recorded_referrals(context, workspace, now=NOW)
        assert (first.bound, first.rewarded, first.points) == (2, 1, 300)
        before = bindings(context, workspace)
        with context.store.read() as session:
            movements = session.scalar(select(func.count()).select_from(PointsMovement))

        again = bind_recorded_referrals(context, workspace, now=NOW + timedelta(days=1))

        assert counts(again) == {"bound": 0, "over_cap": 0, "ineligible": 0, "refused": 0, "already_bound": 2,
                                 "rewarded": 0, "points": 0}
        assert bindings(context, workspace) == before
        with context.store.read() as session:
            assert session.scalar(select(func.count()).select_from(PointsMovement)) == movements
        assert balance(context, workspace, people["alice"]) == (200, 0)

    def test_a_referral_recorded_after_now_waits(self, context: Context, workspace: Workspace,
                                                 people: dict[str, str]) -> None:
        brand = lake_of(workspace, people)
        brand.person(people["bob"], channel="wechat", source_id="wx-bob",
                     referrer_code=code_of(context, workspace, people["alice"]), joined_at=NOW + timedelta(hours=1))
        brand.write(context.settings.lake_path)
        assert bind_recorded_referrals(context, workspace, now=NOW).bound == 0
        assert bind_recorded_referrals(context, workspace, now=NOW + timedelta(hours=2)).bound == 1

    def test_nothing_happens_with_referrals_off(self, context: Context, workspace: Workspace,
                                                people: dict[str, str]) -> None:
        alice = code_of(context, workspace, people["alice"])
        with context.store.transaction() as session:
            set_programme(session, workspace, earn={"pending_days": 7})
        brand = lake_of(workspace, people)
        brand.person(people["bob"], channel="wechat", source_id="wx-bob", referrer_code=alice,
                     joined_at=AS_OF - timedelta(days=30))
        brand.write(context.settings.lake_path)
        assert counts(bind_recorded_referrals(context, workspace, now=NOW)) == dict.fromkeys(
            ("bound", "over_cap", "ineligible", "refused", "already_bound", "rewarded", "points"), 0)
        assert bindings(context, workspace) == {}
