"""Paid memberships and the welcome gift (issue 6, "Enrolment"), on every state store: join with a payment,
renew, cancel (pro rata or at term end), expiry after the grace days, and ``Member.is_enrolled`` agreeing
with the membership throughout."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.service import Actor
from memberops.identity.models import Member
from memberops.loyalty import benefits, enrolment, memberships
from memberops.loyalty.benefit_schemas import BenefitDefinitionIn
from memberops.loyalty.coupon_models import Coupon
from memberops.loyalty.errors import (
    MembershipNotActive,
    MembershipNotRenewable,
    PaymentReferenceReused,
    PaymentRequired,
)
from memberops.loyalty.memberships import Payment
from memberops.loyalty.models import LoyaltyEvent, Membership, MembershipTerm, PointsMovement
from memberops.runtime import Context
from tests.factories import make_key
from tests.loyalty.coupon_factories import make_template
from tests.loyalty.factories import WHEN, post_order, set_programme

JOINED = datetime(2025, 6, 1, 2, 15, tzinfo=UTC)  # a past year, so orders around the term's end can be posted
END = datetime(2026, 6, 1, 2, 15, tzinfo=UTC)
PAID: dict[str, Any] = {"mode": "paid", "paid": {"fee": "99.00", "term_months": 12, "grace_days": 10}}


def join(session: Session, workspace: Workspace, source_id: str = "c1", payment: Payment | None = None,
         now: datetime = WHEN) -> enrolment.Enrolled:
    return enrolment.enrol(session, workspace, channel="pos", source_id=source_id, identifiers={}, payment=payment,
                           now=now)


def agrees(session: Session, member_id: str) -> bool:
    """``Member.is_enrolled`` says what the membership says."""
    member = session.get(Member, member_id)
    membership = memberships.membership_of(session, member.workspace_id, member_id) if member else None
    return member is not None and member.is_enrolled == (membership is not None and membership.status == "active")


class TestPaidJoin:
    def test_a_payment_opens_a_term(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, enrolment=PAID)
            joined = join(session, workspace, payment=Payment(Decimal("99.00"), "pay-1"))
            assert joined.is_new_enrolment and joined.membership.ends_at == datetime(2027, 3, 1, 2, 15, tzinfo=UTC)
            (term,) = memberships.terms_of(session, joined.membership.id)
            assert (term.kind, term.fee, term.currency, term.payment_reference) == ("join", Decimal("99.00"), "CNY",
                                                                                    "pay-1")
            assert agrees(session, joined.member.id) and joined.member.is_enrolled
            again = join(session, workspace)  # already a member: no payment needed, nothing changes
            assert not again.is_new_enrolment and again.membership.id == joined.membership.id

    @pytest.mark.parametrize("payment", [None, Payment(Decimal("98.99"), "short"), Payment(Decimal(99), "x", "USD")],
                             ids=["missing", "short", "currency"])
    def test_payment_required(self, context: Context, workspace: Workspace, payment: Payment | None) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, enrolment=PAID)
        with pytest.raises(PaymentRequired) as raised, context.store.transaction() as session:
            join(session, workspace, payment=payment)
        assert raised.value.code == "payment_required" and raised.value.facts["fee"] == "99.00"
        with context.store.read() as session:
            assert session.scalar(select(func.count()).select_from(Membership)) == 0

    def test_a_payment_reference_pays_once(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, enrolment=PAID)
            join(session, workspace, payment=Payment(Decimal("99.00"), "pay-1"))
        with pytest.raises(PaymentReferenceReused), context.store.transaction() as session:
            join(session, workspace, "c2", payment=Payment(Decimal("99.00"), "pay-1"))


class TestRenewCancelExpire:
    def _member(self, context: Context, workspace: Workspace, **paid: Any) -> str:
        with context.store.transaction() as session:
            set_programme(session, workspace, enrolment={**PAID, "paid": {**PAID["paid"], **paid}})
            return join(session, workspace, payment=Payment(Decimal("99.00"), "pay-1"), now=JOINED).member.id

    def test_renewing_early_extends_from_the_term_end_and_replays(self, context: Context, workspace: Workspace) -> None:
        member = self._member(context, workspace)
        with context.store.transaction() as session:
            first = memberships.renew(session, workspace, member, Payment(Decimal("99.00"), "pay-2"),
                                      now=JOINED + timedelta(days=300))
            assert first.membership.ends_at == datetime(2027, 6, 1, 2, 15, tzinfo=UTC) and not first.is_replay
            again = memberships.renew(session, workspace, member, Payment(Decimal("99.00"), "pay-2"),
                                      now=JOINED + timedelta(days=301))
            assert again.is_replay and again.term is not None and again.term.id == first.term.id  # type: ignore[union-attr]
            assert [t.kind for t in memberships.terms_of(session, first.membership.id)] == ["join", "renewal"]
            with pytest.raises(PaymentRequired):
                memberships.renew(session, workspace, member, Payment(Decimal("1.00"), "pay-3"))

    def test_expiry_after_the_grace_days_stops_earning_and_renewal_restarts(
            self, context: Context, workspace: Workspace) -> None:
        member = self._member(context, workspace)
        end = END
        with pytest.raises(MembershipNotActive), context.store.transaction() as session:  # rolled back
            memberships.expire_memberships(session, workspace, as_of=end + timedelta(days=10))
            memberships.cancel(session, workspace, member)  # an expired membership is not cancelled
        with context.store.transaction() as session:
            assert memberships.expire_memberships(session, workspace, as_of=end + timedelta(days=9)).expired == 0
            assert post_order(session, workspace, "in-grace", ordered_at=end + timedelta(days=9)).points == 100
        with context.store.transaction() as session:
            run = memberships.expire_memberships(session, workspace, as_of=end + timedelta(days=10))
            assert run.expired == 1
            assert memberships.expire_memberships(session, workspace, as_of=end + timedelta(days=10)).expired == 0
            assert memberships.get_membership(session, workspace.id, member).status == "expired"
            assert agrees(session, member) and not session.get_one(Member, member).is_enrolled
            assert post_order(session, workspace, "late", ordered_at=end + timedelta(days=11)).points is None
        later = end + timedelta(days=40)
        with context.store.transaction() as session:
            renewed = memberships.renew(session, workspace, member, Payment(Decimal("99.00"), "pay-9"), now=later)
            assert renewed.membership.status == "active" and renewed.term.starts_at == later  # type: ignore[union-attr]
            assert agrees(session, member)
            assert post_order(session, workspace, "back", ordered_at=later + timedelta(days=1)).points == 100

    def test_cancel_pro_rata_refunds_the_unused_part(self, context: Context, workspace: Workspace) -> None:
        member = self._member(context, workspace, cancellation_refund="pro_rata")
        halfway = JOINED + (END - JOINED) / 2
        with context.store.transaction() as session:
            cancelled = memberships.cancel(session, workspace, member, reason="moving abroad", now=halfway)
            assert cancelled.term is not None and cancelled.term.refund == Decimal("49.50")
            assert cancelled.membership.status == "cancelled" and agrees(session, member)
            assert memberships.cancel(session, workspace, member).is_replay
            assert post_order(session, workspace, "after", ordered_at=halfway + timedelta(hours=1)).points is None

    def test_cancel_without_refund_runs_to_the_term_end(self, context: Context, workspace: Workspace) -> None:
        member = self._member(context, workspace)
        end = END
        with context.store.transaction() as session:
            cancelled = memberships.cancel(session, workspace, member, now=JOINED + timedelta(days=30))
            assert cancelled.term is not None and cancelled.term.refund == 0
            assert cancelled.membership.status == "active" and cancelled.membership.ends_at == end
            assert post_order(session, workspace, "still", ordered_at=end - timedelta(days=1)).points == 100
            # no grace days after a cancellation
            assert post_order(session, workspace, "gone", ordered_at=end + timedelta(days=1)).points is None
        with context.store.transaction() as session:
            assert memberships.expire_memberships(session, workspace, as_of=end).cancelled == 1
            assert memberships.get_membership(session, workspace.id, member).status == "cancelled"
            assert agrees(session, member)
            assert memberships.cancel(session, workspace, member).is_replay  # cancelled again: a replay

    def test_auto_renew_asks_once_per_term(self, context: Context, workspace: Workspace) -> None:
        self._member(context, workspace, auto_renew=True)
        end = END
        with context.store.transaction() as session:
            assert memberships.expire_memberships(session, workspace, as_of=end).renewals_requested == 1
            assert memberships.expire_memberships(session, workspace, as_of=end + timedelta(days=1)).renewals_requested == 0
            assert session.scalar(select(func.count()).select_from(LoyaltyEvent).where(
                LoyaltyEvent.type == "membership_renewal_due")) == 1

    def test_a_free_programme_is_not_renewed(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            member = join(session, workspace).member.id
            with pytest.raises(MembershipNotRenewable):
                memberships.renew(session, workspace, member, Payment(Decimal(1), "p"))
            assert memberships.cancel(session, workspace, member).membership.status == "cancelled"
            assert agrees(session, member)
            rejoined = join(session, workspace)  # a free member who left joins again
            assert rejoined.is_new_enrolment and rejoined.membership.status == "active" and agrees(session, member)


class TestWelcomeGift:
    def test_points_coupon_and_benefit_once(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            make_template(session, workspace.id, "WELCOME-10")
            benefits.define_benefit(session, workspace.id, BenefitDefinitionIn(
                code="lounge", name="Lounge pass", category="queue_skip"), actor=Actor.cli())
            set_programme(session, workspace, enrolment={"welcome_points": 50, "welcome_coupon": "WELCOME-10",
                                                         "welcome_benefit": "lounge", "welcome_benefit_quantity": 2})
            member = join(session, workspace).member.id
            join(session, workspace)
            memberships.cancel(session, workspace, member)
            assert join(session, workspace).is_new_enrolment  # joining again gives no second gift
            assert session.scalar(select(func.count()).select_from(PointsMovement).where(
                PointsMovement.member_id == member, PointsMovement.kind == "earn")) == 1
            assert session.scalar(select(func.count()).select_from(Coupon).where(Coupon.member_id == member)) == 1
            assert [(b.benefit.code, b.remaining) for b in benefits.member_benefits(session, workspace.id, member)] \
                == [("lounge", 2)]

    def test_a_missing_coupon_template_is_reported_not_fatal(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, enrolment={"welcome_coupon": "NOPE"})
            joined = join(session, workspace)
            assert joined.is_new_enrolment and joined.warnings == (
                "welcome coupon 'NOPE' not issued: coupon_template_not_found",)


class TestEnrolledFlag:
    def test_a_channel_record_flagged_enrolled_records_the_membership(self, context: Context,
                                                                       workspace: Workspace) -> None:
        from memberops.ingest import live
        from memberops.ingest.schemas import CustomerIn

        with context.store.transaction() as session:
            set_programme(session, workspace, enrolment={"welcome_points": 5})
            (joined,) = live.ingest_customers(session, workspace, [CustomerIn(
                channel="tmall", source_id="t1", is_enrolled=True, joined_at=WHEN, phone="13800138001")])
            assert joined.member_id is not None
            membership = memberships.get_membership(session, workspace.id, joined.member_id)
            assert membership.enrolled_at == WHEN and agrees(session, joined.member_id)
            memberships.cancel(session, workspace, joined.member_id)
            # the same person's record in another channel says "member": the cancelled membership decides
            (again,) = live.ingest_customers(session, workspace, [CustomerIn(
                channel="jd", source_id="j1", is_enrolled=True, phone="13800138001")])
            assert again.member_id == joined.member_id and again.status == "accepted"
            assert agrees(session, joined.member_id) and not session.get_one(Member, joined.member_id).is_enrolled

    def test_sync_records_flagged_members_and_fixes_flags(self, context: Context, workspace: Workspace) -> None:
        from memberops.identity.service import resolve_customer

        with context.store.transaction() as session:
            flagged = resolve_customer(session, workspace, channel="tmall", source_id="t1", identifiers={},
                                       is_enrolled=True).member.id
            member = join(session, workspace).member.id
            session.get_one(Member, member).is_enrolled = False  # drifted
            result = enrolment.sync_enrolment(session, workspace)
            assert (result.memberships_recorded, result.flags_set) == (1, 1)
            assert agrees(session, flagged) and agrees(session, member)
            again = enrolment.sync_enrolment(session, workspace)
            assert (again.memberships_recorded, again.flags_set, again.flags_cleared) == (0, 0, 0)


# --- over HTTP --------------------------------------------------------------------------------------------


@pytest.fixture
def client(context: Context) -> Iterator[TestClient]:
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield client


def test_paid_membership_over_http(context: Context, workspace: Workspace, client: TestClient) -> None:
    with context.store.transaction() as session:
        set_programme(session, workspace, enrolment={**PAID, "paid": {**PAID["paid"], "cancellation_refund": "pro_rata"}})
        auth = {"Authorization": f"Bearer {make_key(session, workspace, 'loyalty', 'read')}"}
    person = {"channel": "pos", "source_id": "c1", "phone": "13800138001"}
    refused = client.post("/api/v1/members", json=person, headers=auth)
    assert refused.status_code == 422 and refused.json()["code"] == "payment_required", refused.text
    short = client.post("/api/v1/members", json={**person, "payment": {"amount": "50", "reference": "p0"}}, headers=auth)
    assert short.status_code == 422 and short.json()["facts"]["paid"] == "50"
    joined = client.post("/api/v1/members", json={**person, "payment": {"amount": "99.00", "reference": "p1"}},
                         headers=auth)
    assert joined.status_code == 201, joined.text
    member = joined.json()["member_id"]
    assert joined.json()["membership"]["ends_at"] is not None and joined.json()["member"]["is_enrolled"]
    renewed = client.post(f"/api/v1/members/{member}/membership/renew",
                          json={"payment": {"amount": "99.00", "reference": "p2"}}, headers=auth)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["term"]["kind"] == "renewal" and not renewed.json()["is_replay"]
    replay = client.post(f"/api/v1/members/{member}/membership/renew",
                         json={"payment": {"amount": "99.00", "reference": "p2"}}, headers=auth)
    assert replay.json()["is_replay"] and replay.json()["membership"]["ends_at"] == renewed.json()["membership"]["ends_at"]
    shown = client.get(f"/api/v1/members/{member}/membership", headers=auth).json()
    assert [t["kind"] for t in shown["terms"]] == ["join", "renewal"] and shown["mode"] == "paid"
    cancelled = client.post(f"/api/v1/members/{member}/membership/cancel", json={"reason": "too dear"}, headers=auth)
    assert cancelled.status_code == 200 and cancelled.json()["membership"]["status"] == "cancelled"
    assert Decimal(cancelled.json()["term"]["refund"]) > Decimal("190")  # nearly two full terms unused
    assert client.get(f"/api/v1/members/{member}", headers=auth).json()["is_enrolled"] is False
    stranger = client.post("/api/v1/members", json={"phone": "13900000000"}, headers=auth).json()
    assert stranger["code"] == "payment_required"
    renew = client.get("/openapi.json").json()["paths"]["/api/v1/members/{member_id}/membership/renew"]["post"]
    assert "payment_required" in renew["responses"]["422"]["description"]
    assert "membership_not_renewable" in renew["responses"]["409"]["description"]


def test_memberships_cli(context: Context, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from memberops.cli import app

    with context.store.transaction() as session:
        set_programme(session, workspace, enrolment=PAID)
        join(session, workspace, payment=Payment(Decimal("99.00"), "pay-1"))
        ws_slug = session.get_one(Workspace, workspace.id).slug
    for name, value in context.settings.model_dump().items():
        if name in ("data_dir", "database_url", "secret_key"):
            monkeypatch.setenv(f"MEMBEROPS_{name.upper()}", str(value))
    runner = CliRunner()
    result = runner.invoke(app, ["loyalty", "memberships", "expire", "--as-of", "2027-03-12", "-w", ws_slug])
    # joined at WHEN (2026-03-01) for 12 months and 10 grace days: expired by 2027-03-12
    assert result.exit_code == 0, result.output
    assert "expired" in result.output and "1" in result.output
    result = runner.invoke(app, ["loyalty", "memberships", "sync", "-w", ws_slug])
    assert result.exit_code == 0, result.output
    with context.store.read() as session:
        assert session.scalars(select(Membership.status)).one() == "expired"
        assert session.scalar(select(func.count()).select_from(MembershipTerm)) == 1


def test_the_daily_job_expires_lapsed_memberships(context: Context, workspace: Workspace) -> None:
    from memberops.jobs.queue import build_queue, tasks_of

    huey = build_queue(context)
    assert "loyalty.memberships.periodic" in {task.__name__ for task in huey._registry._periodic_tasks}
    with context.store.transaction() as session:
        set_programme(session, workspace, enrolment=PAID)
        member = join(session, workspace, payment=Payment(Decimal("99.00"), "pay-1"), now=JOINED).member.id
    huey.immediate = True
    assert tasks_of(huey).run_memberships()() == 1  # ended 2026-06-01, grace 10 days: long lapsed
    assert tasks_of(huey).run_memberships()() == 0
    with context.store.read() as session:
        assert memberships.get_membership(session, workspace.id, member).status == "expired"
        assert agrees(session, member)
