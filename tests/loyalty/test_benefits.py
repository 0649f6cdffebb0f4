"""Benefits on every state store: definitions, idempotent grants, consumption nearest-expiry-first that
never goes below zero (also under concurrency), replays, and the HTTP endpoints."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.service import Actor
from memberops.db.base import utcnow
from memberops.errors import DomainError
from memberops.loyalty import benefits
from memberops.loyalty.benefit_models import BenefitGrant
from memberops.loyalty.benefit_schemas import BenefitDefinitionIn
from memberops.loyalty.coupon_errors import IdempotencyKeyReused, InsufficientBenefitQuota
from memberops.runtime import Context
from tests.factories import make_key
from tests.loyalty.coupon_factories import make_member


@pytest.fixture
def member(context: Context, workspace: Workspace) -> str:
    with context.store.transaction() as session:
        benefits.define_benefit(session, workspace.id, BenefitDefinitionIn(
            code="queue-skip", name="Queue-skip pass", category="queue_skip", valid_days=90), actor=Actor.cli())
        return make_member(session, workspace.id)


def grant(context: Context, workspace: Workspace, member: str, quantity: int, key: str, **kw: object) -> benefits.Granted:
    with context.store.transaction() as session:
        return benefits.grant_benefit(session, workspace.id, member, "queue-skip", quantity, "api", key, **kw)  # type: ignore[arg-type]


def consume(context: Context, workspace: Workspace, member: str, quantity: int, key: str) -> benefits.Consumed:
    with context.store.transaction() as session:
        return benefits.consume_benefit(session, workspace.id, member, "queue-skip", quantity, key)


def remaining(context: Context, workspace: Workspace, member: str) -> int:
    with context.store.read() as session:
        return sum(b.remaining for b in benefits.member_benefits(session, workspace.id, member))


def grants_agree_with_their_consumptions(context: Context) -> bool:
    with context.store.read() as session:
        return all(g.consumed == benefits.consumed_total(session, g.id) and 0 <= g.consumed <= g.quantity
                   for g in session.scalars(select(BenefitGrant)))


class TestGrant:
    def test_replay_gives_nothing_more(self, context: Context, workspace: Workspace, member: str) -> None:
        first, again = grant(context, workspace, member, 2, "g1"), grant(context, workspace, member, 2, "g1")
        assert again.is_replay and again.grant.id == first.grant.id
        assert remaining(context, workspace, member) == 2
        assert first.grant.valid_until is not None  # the benefit's 90 days
        with context.store.transaction() as session:
            other = make_member(session, workspace.id)
        with pytest.raises(IdempotencyKeyReused):
            grant(context, workspace, other, 2, "g1")


class TestGrantInBulk:
    """``grant_benefits`` (a tier's benefits for all its members in one call) makes the rows a loop of
    ``grant_benefit`` makes, and answers replays, merged and unknown members and reused keys as it does."""

    @staticmethod
    def _rows(context: Context, prefix: str) -> list[tuple[object, ...]]:
        with context.store.read() as session:
            return sorted((g.member_id, g.benefit_id, g.quantity, g.consumed, g.source, g.valid_from, g.valid_until)
                          for g in session.scalars(select(BenefitGrant).where(BenefitGrant.grant_key.like(f"{prefix}%"))))

    def test_the_rows_of_one_grant_at_a_time(self, context: Context, workspace: Workspace, member: str) -> None:
        from memberops.identity.models import Member

        now = utcnow()
        with context.store.transaction() as session:
            others = [make_member(session, workspace.id) for _ in range(3)]
            absorbed = make_member(session, workspace.id)
            session.get(Member, absorbed).merged_into_id = others[0]  # type: ignore[union-attr]
        wanted = [(member, 2, None), (others[0], 1, now + timedelta(days=5)), (others[1], 3, None),
                  (absorbed, 1, None), (others[2], 1, None)]
        with context.store.transaction() as session:
            made = benefits.grant_benefits(session, workspace.id, "queue-skip", [
                benefits.GrantRequest(m, quantity, f"bulk:{index}", until)
                for index, (m, quantity, until) in enumerate(wanted)] + [
                benefits.GrantRequest(member, 2, "bulk:0")], "tier:gold", now=now)
            for index, (m, quantity, until) in enumerate(wanted):
                benefits.grant_benefit(session, workspace.id, m, "queue-skip", quantity, "tier:gold", f"loop:{index}",
                                       valid_until=until, now=now)
        assert (made.made, made.replayed) == (5, 1)
        assert self._rows(context, "bulk:") == self._rows(context, "loop:")
        assert absorbed not in {row[0] for row in self._rows(context, "bulk:")}  # the survivor holds it
        with context.store.transaction() as session:  # a replay gives nothing more
            again = benefits.grant_benefits(session, workspace.id, "queue-skip", [
                benefits.GrantRequest(m, quantity, f"bulk:{index}", until)
                for index, (m, quantity, until) in enumerate(wanted)], "tier:gold", now=now)
        assert (again.made, again.replayed) == (0, 5)

    def test_a_reused_key_or_an_unknown_member_writes_nothing(
            self, context: Context, workspace: Workspace, member: str) -> None:
        from memberops.identity.errors import MemberNotFound

        grant(context, workspace, member, 2, "taken")
        with context.store.transaction() as session:
            other = make_member(session, workspace.id)
        for requests, error in (([benefits.GrantRequest(other, 1, "fresh"), benefits.GrantRequest(other, 1, "taken")],
                                 IdempotencyKeyReused),
                                ([benefits.GrantRequest(other, 1, "fresh"), benefits.GrantRequest("nobody", 1, "x")],
                                 MemberNotFound)):
            with pytest.raises(error), context.store.transaction() as session:
                benefits.grant_benefits(session, workspace.id, "queue-skip", requests, "api")
            assert self._rows(context, "fresh") == []


class TestConsume:
    def test_nearest_expiry_first_and_never_below_zero(self, context: Context, workspace: Workspace, member: str) -> None:
        late = grant(context, workspace, member, 2, "late", valid_until=utcnow() + timedelta(days=60)).grant
        soon = grant(context, workspace, member, 1, "soon", valid_until=utcnow() + timedelta(days=5)).grant
        used = consume(context, workspace, member, 2, "c1")
        assert (used.quantity, used.remaining) == (2, 1)
        with context.store.read() as session:
            assert session.get_one(BenefitGrant, soon.id).consumed == 1
            assert session.get_one(BenefitGrant, late.id).consumed == 1
        with pytest.raises(InsufficientBenefitQuota) as caught:
            consume(context, workspace, member, 2, "c2")
        assert caught.value.facts["available"] == 1
        assert remaining(context, workspace, member) == 1 and grants_agree_with_their_consumptions(context)

    def test_replay_consumes_nothing_more(self, context: Context, workspace: Workspace, member: str) -> None:
        grant(context, workspace, member, 3, "g1")
        consume(context, workspace, member, 1, "c1")
        again = consume(context, workspace, member, 1, "c1")
        assert again.is_replay and again.remaining == 2

    def test_expired_grants_do_not_count(self, context: Context, workspace: Workspace, member: str) -> None:
        grant(context, workspace, member, 3, "g1", now=utcnow() - timedelta(days=100))
        with pytest.raises(InsufficientBenefitQuota):
            consume(context, workspace, member, 1, "c1")

    def test_concurrent_consumers_never_overdraw(self, context: Context, workspace: Workspace, member: str) -> None:
        grant(context, workspace, member, 2, "g1")
        grant(context, workspace, member, 1, "g2")
        barrier = threading.Barrier(6)
        results: list[benefits.Consumed | DomainError] = []

        def run(i: int) -> None:
            barrier.wait()
            try:
                results.append(consume(context, workspace, member, 1, f"c{i}"))
            except DomainError as exc:
                results.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(isinstance(r, benefits.Consumed) for r in results) == 3
        assert sum(isinstance(r, InsufficientBenefitQuota) for r in results) == 3
        assert remaining(context, workspace, member) == 0 and grants_agree_with_their_consumptions(context)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["grant", "consume"]), st.integers(1, 4), st.integers(0, 5)),
                      max_size=12))
def test_any_sequence_keeps_quota_equal_to_grants_minus_consumptions(
    context: Context, workspace: Workspace, member: str, steps: list[tuple[str, int, int]]
) -> None:
    """Whatever grants and consumes arrive (keys repeating = replays), the remaining quota is granted minus
    consumed, never negative, and every grant's counter equals its consumption rows."""
    run = f"{uuid.uuid4().hex}-"
    with context.store.transaction() as session:
        member = make_member(session, workspace.id)  # each example its own member: nothing carries over
    granted: dict[str, int] = {}
    consumed: dict[str, int] = {}
    for action, quantity, key in steps:
        if action == "grant":
            first = grant(context, workspace, member, quantity, f"{run}g{key}").grant
            granted.setdefault(f"g{key}", first.quantity)
        else:
            try:
                used = consume(context, workspace, member, quantity, f"{run}c{key}")
                consumed.setdefault(f"c{key}", used.quantity)
            except (InsufficientBenefitQuota, IdempotencyKeyReused):
                pass
    with context.store.read() as session:
        grants = session.scalars(select(BenefitGrant).where(BenefitGrant.grant_key.startswith(run))).all()
        left = sum(g.quantity - g.consumed for g in grants)
    assert left == sum(granted.values()) - sum(consumed.values()) >= 0
    assert grants_agree_with_their_consumptions(context)


class TestBenefitApi:
    @pytest.fixture
    def client(self, context: Context) -> Iterator[TestClient]:
        with TestClient(create_app(context), raise_server_exceptions=False) as client:
            yield client

    def test_define_grant_consume_list(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            admin = {"Authorization": f"Bearer {make_key(session, workspace, 'admin')}"}
            pos = {"Authorization": f"Bearer {make_key(session, workspace, 'loyalty')}"}
            member = make_member(session, workspace.id)
        defined = client.post("/api/v1/benefit-definitions", headers=admin,
                              json={"code": "alteration", "name": "Free alteration", "category": "free_alteration"})
        assert defined.status_code == 201
        assert client.post("/api/v1/benefit-definitions", headers=pos, json={
            "code": "x", "name": "x", "category": "other"}).status_code == 403
        url = f"/api/v1/members/{member}/benefits"
        body = {"benefit_code": "alteration", "quantity": 2, "idempotency_key": "g1"}
        assert client.post(f"{url}/grant", headers=pos, json=body).status_code == 201
        assert client.post(f"{url}/grant", headers=pos, json=body).status_code == 200
        used = client.post(f"{url}/alteration/consume", headers=pos, json={"idempotency_key": "c1"})
        assert used.status_code == 200 and used.json()["remaining"] == 1
        short = client.post(f"{url}/alteration/consume", headers=pos, json={"quantity": 2, "idempotency_key": "c2"})
        assert short.status_code == 409 and short.json()["code"] == "insufficient_benefit_quota"
        listed = client.get(url, headers=pos).json()["benefits"]
        assert [(b["benefit_code"], b["remaining"]) for b in listed] == [("alteration", 1)]
        missing = client.post(f"{url}/nope/consume", headers=pos, json={"idempotency_key": "c3"})
        assert missing.status_code == 404 and missing.json()["code"] == "benefit_not_found"

    def test_grant_to_many_members_in_one_request(self, client: TestClient, context: Context,
                                                  workspace: Workspace) -> None:
        with context.store.transaction() as session:
            admin = {"Authorization": f"Bearer {make_key(session, workspace, 'admin')}"}
            pos = {"Authorization": f"Bearer {make_key(session, workspace, 'loyalty')}"}
            members = [make_member(session, workspace.id) for _ in range(3)]
        assert client.post("/api/v1/benefit-definitions", headers=admin, json={
            "code": "lounge", "name": "Lounge", "category": "other"}).status_code == 201
        body = {"source": "tier:gold", "grants": [{"member_id": m, "quantity": 2, "idempotency_key": f"gold:{m}"}
                                                  for m in members]}
        first = client.post("/api/v1/benefit-definitions/lounge/grants", headers=pos, json=body)
        again = client.post("/api/v1/benefit-definitions/lounge/grants", headers=pos, json=body)
        assert first.status_code == 200, first.text
        assert (first.json()["granted"], again.json()["granted"], again.json()["replayed"]) == (3, 0, 3)
        held = client.get(f"/api/v1/members/{members[1]}/benefits", headers=pos).json()["benefits"]
        assert [(b["benefit_code"], b["remaining"]) for b in held] == [("lounge", 2)]
        unknown = client.post("/api/v1/benefit-definitions/lounge/grants", headers=pos, json={
            "grants": [{"member_id": "nobody", "quantity": 1, "idempotency_key": "x"}]})
        assert unknown.status_code == 404 and unknown.json()["code"] == "member_not_found"
