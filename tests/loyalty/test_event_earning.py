"""Points for events on the live path (issue 6, "Earn rules": review, share, sign-in streaks, complete
profile, any type the programme names), on every store: once per event id, caps per day and month, once
per member, streaks in the workspace's time zone, and nothing touched for types the programme ignores."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.ingest import live
from memberops.ingest.schemas import EventIn
from memberops.loyalty import enrolment, event_earning, tiers
from memberops.loyalty.event_models import EventEarning
from memberops.loyalty.models import PointsMovement, ProgrammeVersion
from memberops.loyalty.tier_models import GrowthMovement
from memberops.runtime import Context
from tests.factories import make_key
from tests.loyalty.factories import enrol, set_programme
from tests.loyalty.test_points import check_ledger

DAY1 = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


def event(event_id: str, type_: str, at: datetime = DAY1, customer_key: str | None = "c1") -> EventIn:
    return EventIn(channel="pos", event_id=event_id, type=type_, customer_key=customer_key,
                   anonymous_id=None if customer_key else "visitor-1", occurred_at=at)


def post(context: Context, workspace: Workspace, *events: EventIn) -> list[int | None]:
    """The points each event earned (``None``: not loyalty's concern, or a duplicate)."""
    with context.store.transaction() as session:
        outcomes = live.ingest_events(session, workspace, list(events), hooks=live.default_hooks())
    return [outcome.points for outcome in outcomes]


def count(context: Context, model: Any) -> int:
    with context.store.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def programme(context: Context, workspace: Workspace, **events: Any) -> str:
    """The programme rewarding ``events``, and the enrolled POS customer c1 (returns the member id)."""
    with context.store.transaction() as session:
        session.get_one(Workspace, workspace.id).timezone = "Asia/Shanghai"
        set_programme(session, workspace, events=events)
        return enrol(session, workspace, "c1")


class TestEventEarning:
    def test_an_event_earns_once_per_event_id(self, context: Context, workspace: Workspace) -> None:
        member = programme(context, workspace, review={"points": 20})
        long_id = "x" * 200  # with its channel, longer than a ledger key: kept as a digest
        assert post(context, workspace, event("e1", "review"), event("e1", "review"), event(long_id, "review")) == [
            20, None, 20]
        assert post(context, workspace, event("e1", "review")) == [None]  # a replayed request
        with context.store.transaction() as session:  # the service itself refuses the key twice
            ws = session.get(Workspace, workspace.id)
            assert ws is not None
            assert event_earning.earn_for_event(session, ws, member, "review", "pos:e1", DAY1) == 20
            check_ledger(session, member)
            movement = session.scalars(select(PointsMovement).order_by(PointsMovement.id)).first()
            assert movement is not None
            assert (movement.points, movement.source_type, movement.idempotency_key) == (20, "event", "event:pos:e1")
            assert event_earning.earn_for_event(session, ws, member, "review", f"pos:{long_id}", DAY1) == 20
            assert session.scalar(select(func.count()).select_from(PointsMovement)) == 2

    def test_caps_per_day_and_month_and_once_per_member(self, context: Context, workspace: Workspace) -> None:
        programme(context, workspace, review={"points": 20, "max_per_day": 2, "max_per_month": 3},
                  share={"points": 5, "once_per_member": True})
        day2 = DAY1 + timedelta(days=1)
        assert post(context, workspace, event("r1", "review"), event("r2", "review"), event("r3", "review"),
                    event("r4", "review", day2), event("r5", "review", day2 + timedelta(hours=1))) == [20, 20, 0, 20, 0]
        assert post(context, workspace, event("r6", "review", DAY1 + timedelta(days=31))) == [20]  # April
        assert post(context, workspace, event("s1", "share"), event("s2", "share", day2)) == [5, 0]
        assert count(context, EventEarning) == 8  # every rewarded-type event is kept, earning or not

    def test_sign_in_streak_in_the_workspace_time_zone(self, context: Context, workspace: Workspace) -> None:
        member = programme(context, workspace, sign_in={"points": 1, "max_per_day": 1,
                                                        "streak": {"days": 3, "bonus": 10}})
        late = datetime(2026, 3, 2, 17, 30, tzinfo=UTC)  # 01:30 on the 3rd in Shanghai: the third day
        earned = post(context, workspace, event("d1", "sign_in"), event("d2", "sign_in", DAY1 + timedelta(days=1)),
                      event("d3", "sign_in", late), event("d3b", "sign_in", late + timedelta(hours=2)),
                      event("d4", "sign_in", DAY1 + timedelta(days=3)),
                      event("d6", "sign_in", DAY1 + timedelta(days=5)))  # the 5th missed: count again
        assert earned == [1, 1, 11, 0, 1, 1]
        with context.store.read() as session:
            streaks = session.execute(select(EventEarning.event_key, EventEarning.local_day, EventEarning.streak)
                                      .order_by(EventEarning.id)).all()
            assert [(key, day, streak) for key, day, streak in streaks] == [
                ("pos:d1", "2026-03-01", 1), ("pos:d2", "2026-03-02", 2), ("pos:d3", "2026-03-03", 3),
                ("pos:d3b", "2026-03-03", 3), ("pos:d4", "2026-03-04", 4), ("pos:d6", "2026-03-06", 1)]
            assert "3 days in a row" in session.scalars(select(PointsMovement.reason).where(
                PointsMovement.points == 11)).one()
            check_ledger(session, member)

    def test_complete_profile_needs_the_listed_fields_and_earns_once(self, context: Context, workspace: Workspace) -> None:
        programme(context, workspace, complete_profile={"points": 50, "once_per_member": True,
                                                        "required_fields": ["phone", "birthday"]})
        with context.store.transaction() as session:
            from datetime import date

            enrol(session, workspace, "c2", phone="+8613800000002", birthday=date(1990, 5, 4))
        assert post(context, workspace, event("p1", "complete_profile")) == [0]  # c1: no phone, no birthday
        # c2 enrolled complete and earned then (see TestProfileCompleted): the events pay nothing more
        assert post(context, workspace, event("p2", "complete_profile", customer_key="c2"),
                    event("p3", "complete_profile", customer_key="c2")) == [0, 0]
        with context.store.read() as session:
            assert session.scalars(select(EventEarning.points).where(EventEarning.points > 0)).all() == [50]

    def test_types_the_programme_does_not_reward_touch_no_loyalty_table(
            self, context: Context, workspace: Workspace) -> None:
        views = [event(f"v{i}", "page_view") for i in range(50)]
        assert post(context, workspace, *views) == [None] * 50
        assert count(context, ProgrammeVersion) == 0  # a workspace without loyalty stays without it
        programme(context, workspace, review={"points": 20})
        assert post(context, workspace, event("v-late", "page_view"), event("r-anon", "review", customer_key=None),
                    event("r-unknown", "review", customer_key="nobody"), event("r1", "review")) == [None, None, None, 20]
        assert count(context, EventEarning) == 1

    def test_events_earn_growth_for_tiers(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, tiers=[{"code": "silver", "name": "Silver", "threshold": "40"}],
                          tier_rules={"metric": "growth", "growth_events": {"review": 25}},
                          events={"sign_in": {"points": 1}})
            member = enrol(session, workspace, "c1")
        now = datetime.now(UTC)
        assert post(context, workspace, event("r1", "review", now), event("r2", "review", now),
                    event("s1", "sign_in", now)) == [0, 0, 1]
        with context.store.read() as session:
            assert session.scalar(select(func.sum(GrowthMovement.value))) == 50
            held = tiers.tier_of(session, workspace.id, member)
            assert held is not None and held.tier == "silver"


def test_post_events_answers_the_points_each_earned(context: Context, workspace: Workspace) -> None:
    programme(context, workspace, review={"points": 20})
    with context.store.transaction() as session:
        auth = {"Authorization": f"Bearer {make_key(session, workspace, 'ingest')}"}
    body: dict[str, Sequence[dict[str, Any]]] = {"items": [
        {"channel": "pos", "event_id": "e1", "type": "review", "customer_key": "c1", "occurred_at": DAY1.isoformat()},
        {"channel": "pos", "event_id": "e2", "type": "page_view", "customer_key": "c1", "occurred_at": DAY1.isoformat()},
    ]}
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        first = client.post("/api/v1/events", json=body, headers=auth)
        again = client.post("/api/v1/events", json=body, headers=auth)
    assert first.status_code == 200, first.text
    assert [r["points_earned"] for r in first.json()["results"]] == [20, None]
    assert [(r["status"], r["points_earned"]) for r in again.json()["results"]] == [("duplicate", None)] * 2


@pytest.mark.parametrize("bad", [{"join": {"points": 10}}, {"review": {}}, {"Bad Type!": {"points": 1}},
                                 {"complete_profile": {"points": 5, "required_fields": ["city"]}}])
def test_invalid_event_rules_name_the_field(bad: dict[str, Any]) -> None:
    from memberops.loyalty.errors import InvalidProgramme
    from memberops.loyalty.programme import programme_from_dict

    with pytest.raises(InvalidProgramme) as caught:
        programme_from_dict({"events": bad})
    (error,) = caught.value.errors
    assert error["field"].startswith(f"events.{next(iter(bad))}")
    assert any(word in error["message"] for word in ("welcome_points", "points, a streak", "letters", "'phone'"))


def test_the_backfill_replays_rewarded_events_once(context: Context, workspace: Workspace) -> None:
    from memberops.loyalty.backfill import backfill_points
    from tests.insight.lake import AS_OF, Brand, at

    with context.store.transaction() as session:
        set_programme(session, workspace, events={"sign_in": {"points": 1, "max_per_day": 1,
                                                              "streak": {"days": 3, "bonus": 10}}})
        member = enrol(session, workspace, "c1", now=at(30))
    brand = Brand(workspace_id=workspace.id)
    customer = brand.person(member, channel="pos", source_id="c1")
    for days_before in (40, 5, 4, 3.5, 3, 1):  # before enrolment; a 3-day run (one day twice); a gap
        brand.event(customer, "sign_in", days_before, channel="pos")
    brand.event(customer, "page_view", 2, channel="pos")
    brand.write(context.settings.lake_path)
    first = backfill_points(context, workspace, now=AS_OF)
    assert (first.events, first.points_for_events) == (4, 1 + 1 + 11 + 1)
    again = backfill_points(context, workspace, now=AS_OF)
    assert (again.events, again.already_posted) == (0, 5)
    # the same event posted live later earns nothing more: it answers what it earned
    movements = count(context, PointsMovement)
    assert post(context, workspace, event("e1", "sign_in", at(5))) == [1]
    assert count(context, PointsMovement) == movements and count(context, EventEarning) == 5


class TestProfileCompleted:
    """``complete_profile`` also pays when the member's record becomes complete through the API or an import,
    once per member (and not after an explicit event paid it)."""

    RULE = {"points": 30, "required_fields": ["phone", "email"]}

    def _points(self, context: Context, member_id: str) -> int:
        with context.store.read() as session:
            return int(session.scalar(select(func.coalesce(func.sum(PointsMovement.points), 0)).where(
                PointsMovement.member_id == member_id, PointsMovement.source_type == "event")) or 0)

    def test_a_record_that_completes_the_profile_earns_once(self, context: Context, workspace: Workspace) -> None:
        from memberops.ingest.schemas import CustomerIn

        with context.store.transaction() as session:
            set_programme(session, workspace, events={"complete_profile": self.RULE})
            member = enrol(session, workspace, "c1", phone="+8613800000001")  # no e-mail yet: not complete
        assert self._points(context, member) == 0
        for source_id in ("app-1", "app-2"):  # the app posts the e-mail, then another record of the person
            with context.store.transaction() as session:
                (outcome,) = live.ingest_customers(session, workspace, [CustomerIn(
                    channel="app", source_id=source_id, phone="+8613800000001", email="mei@example.com")])
                assert outcome.member_id == member
        assert self._points(context, member) == 30
        with context.store.transaction() as session:  # the record path pays once per member
            assert event_earning.earn_if_profile_complete(session, workspace, member) == 0
        assert self._points(context, member) == 30
        with context.store.transaction() as session:
            complete = enrolment.enrol(session, workspace, channel="pos", source_id="c2",
                                       identifiers={"phone": "+8613800000002", "email": "li@example.com"}).member.id
        assert self._points(context, complete) == 30  # complete at enrolment

    def test_an_explicit_event_first_leaves_nothing_for_the_record(self, context: Context, workspace: Workspace) -> None:
        from memberops.identity.models import Identifier
        from memberops.loyalty.enrolment import sync_enrolment

        with context.store.transaction() as session:
            set_programme(session, workspace, events={"complete_profile": self.RULE})
            member = enrol(session, workspace, "c1", phone="+8613800000001")
            session.add(Identifier(workspace_id=workspace.id, member_id=member, type="email", value="mei@example.com"))
        assert post(context, workspace, event("e1", "complete_profile")) == [30]
        with context.store.transaction() as session:
            assert event_earning.earn_if_profile_complete(session, workspace, member) == 0
            assert sync_enrolment(session, workspace).profiles_completed == 0
        assert self._points(context, member) == 30

    def test_the_membership_job_pays_profiles_an_import_completed(self, context: Context,
                                                                   workspace: Workspace) -> None:
        from memberops.identity.models import Identifier
        from memberops.loyalty.enrolment import sync_enrolment

        with context.store.transaction() as session:
            set_programme(session, workspace, events={"complete_profile": self.RULE})
            member = enrol(session, workspace, "c1", phone="+8613800000001")
            enrol(session, workspace, "c2", phone="+8613800000002")
            assert sync_enrolment(session, workspace).profiles_completed == 0
            # a batch import's resolution gives c1 an e-mail
            session.add(Identifier(workspace_id=workspace.id, member_id=member, type="email", value="mei@example.com"))
            session.flush()
            assert sync_enrolment(session, workspace).profiles_completed == 1
            assert sync_enrolment(session, workspace).profiles_completed == 0
        assert self._points(context, member) == 30
