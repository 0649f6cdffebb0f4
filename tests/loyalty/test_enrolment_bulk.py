"""The bulk enrolment (:func:`enrolment.ensure_memberships`) records exactly what the member by member one
(:func:`enrolment.ensure_membership`) does: the same memberships, member flags, points accounts, welcome
movements and lots, referral codes and ``member_enrolled`` events, row for row and in the same id order, on
every store — for members new to the programme, one already enrolled, one whose points account exists with
points in it, one already given their welcome points; and running it again changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from memberops.accounts import service as accounts
from memberops.accounts.models import Workspace
from memberops.identity.models import Member
from memberops.identity.service import resolve_customer
from memberops.loyalty import enrolment, points
from memberops.loyalty.models import LoyaltyEvent, Membership, PointsAccount, PointsLot, PointsMovement
from memberops.loyalty.programmes import active_programme
from memberops.loyalty.referral_models import ReferralCode
from memberops.loyalty.referrals import ALPHABET, CODE_LENGTH
from memberops.runtime import Context
from tests.loyalty.factories import set_programme
from tests.loyalty.test_points import check_ledger

START = datetime(2025, 1, 30, 17, 0, tzinfo=UTC)
CUSTOMERS = 12
WELCOME = {"enrolment": {"mode": "free", "welcome_points": 100},
           "expiry": {"policy": "rolling_months", "months": 12}}
NO_WELCOME = {"enrolment": {"mode": "free", "welcome_points": 0}}


def _joinings(members: dict[str, str]) -> list[enrolment.Joining]:
    return [enrolment.Joining(member_id, START + timedelta(days=number * 37, hours=number),
                              number % 12 + 1 if number % 3 else None)
            for number, (_, member_id) in enumerate(sorted(members.items()))]


def _twin(context: Context, slug: str, programme: dict[str, Any]) -> tuple[Workspace, dict[str, str]]:
    """A workspace whose customers are known but not enrolled, except c03 (enrolled already); c05 has a
    points account with points in it, c07 was given their welcome points already."""
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session, slug=slug, name=slug, timezone="Asia/Shanghai")
        set_programme(session, workspace, **programme)
        members = {f"c{number:02d}": resolve_customer(session, workspace, channel="pos", source_id=f"c{number:02d}",
                                                      identifiers={}).member.id
                   for number in range(CUSTOMERS)}
        enrolled = session.get(Member, members["c03"])
        assert enrolled is not None
        enrolment.ensure_membership(session, workspace, enrolled, channel="pos", now=START - timedelta(days=3))
        active = active_programme(session, workspace.id)
        zone = points.zone_of(workspace)
        for customer, key in (("c05", "gift:c05"), ("c07", f"welcome:{members['c07']}")):
            account = points.open_account(session, workspace.id, members[customer])
            points.grant(session, account, active, points=40, key=key, kind="earn", earned_at=START, available_at=START,
                         source_type="manual", source_id=customer, zone=zone, now=START)
    return workspace, members


def _state(context: Context, workspace: Workspace, members: dict[str, str], *, clock_free: bool) -> dict[str, Any]:
    """Every row the enrolment writes, with member ids as customer keys and rows in id order."""
    customer = {member_id: key for key, member_id in members.items()}
    ws = workspace.id
    with context.store.read() as session:
        def rows(model: Any) -> list[Any]:
            return list(session.scalars(select(model).where(model.workspace_id == ws).order_by(model.id)))

        moves = rows(PointsMovement)
        move_rank = {move.id: rank for rank, move in enumerate(moves)}
        for member_id in members.values():
            if session.scalar(select(PointsAccount.id).where(PointsAccount.member_id == member_id)) is not None:
                check_ledger(session, member_id)
        codes = rows(ReferralCode)
        assert all(len(code.code) == CODE_LENGTH and set(code.code) <= set(ALPHABET) for code in codes)
        assert len({code.code for code in codes}) == len(codes)
        return {
            "memberships": [(customer[m.member_id], m.programme_version, m.status, m.channel, m.birth_month,
                             m.enrolled_at, m.ends_at, m.auto_renew, m.cancelled_at, m.renewal_requested_for)
                            for m in rows(Membership)],
            "members": sorted((customer[m.id], m.is_enrolled, m.enrolled_at) for m in session.scalars(
                select(Member).where(Member.workspace_id == ws))),
            # an account opened without welcome points is dated by the wall clock
            "accounts": [(customer[a.member_id], a.available, a.pending, a.debt, None if clock_free else a.updated_at)
                         for a in rows(PointsAccount)],
            "movements": [(customer[m.member_id], m.kind, m.points, m.available_delta, m.pending_delta, m.debt_delta,
                           m.idempotency_key.replace(m.member_id, customer[m.member_id]), m.source_type,
                           m.source_id.replace(m.member_id, customer[m.member_id]), m.reason, m.actor,
                           m.programme_version, m.reverses_id, m.outcome, m.occurred_at, m.created_at) for m in moves],
            "lots": [(customer[lot.member_id], move_rank[lot.movement_id], lot.points, lot.remaining, lot.state,
                      lot.earned_at, lot.available_at, lot.expires_at, lot.warned_at, lot.origin_lot_id)
                     for lot in rows(PointsLot)],
            "codes": [(customer[code.member_id], code.created_at) for code in codes],
            "events": [(customer[e.member_id], e.type, e.occurred_at, e.payload) for e in rows(LoyaltyEvent)],
        }


@pytest.mark.parametrize("programme", [WELCOME, NO_WELCOME], ids=["welcome-points", "no-welcome-points"])
def test_the_bulk_enrolment_records_what_the_member_by_member_one_does(
        context: Context, workspace: Workspace, programme: dict[str, Any]) -> None:
    by_member, member_ids = _twin(context, "by-member", programme)
    in_bulk, bulk_ids = _twin(context, "in-bulk", programme)
    with context.store.transaction() as session:
        ws = session.get(Workspace, by_member.id)
        assert ws is not None
        for joining in _joinings(member_ids):
            member = session.get(Member, joining.member_id)
            assert member is not None
            enrolment.ensure_membership(session, ws, member, channel="import", now=joining.joined_at,
                                        birth_month=joining.birth_month)
    with context.store.transaction() as session:
        ws = session.get(Workspace, in_bulk.id)
        assert ws is not None
        assert enrolment.ensure_memberships(session, ws, _joinings(bulk_ids), channel="import") == CUSTOMERS - 1

    clock_free = not programme["enrolment"]["welcome_points"]
    reference = _state(context, by_member, member_ids, clock_free=clock_free)
    recorded = _state(context, in_bulk, bulk_ids, clock_free=clock_free)
    assert recorded == reference
    assert len(recorded["memberships"]) == CUSTOMERS
    assert sum(event[1] == "member_enrolled" for event in recorded["events"]) == CUSTOMERS
    if not clock_free:  # everyone but c07 (given them before) got their welcome points
        assert sum(move[6].startswith("welcome:") for move in recorded["movements"]) == CUSTOMERS
        assert ("c05", 140, 0, 0, _joinings(bulk_ids)[5].joined_at) in recorded["accounts"]

    with context.store.transaction() as session:  # again: nothing changes
        ws = session.get(Workspace, in_bulk.id)
        assert ws is not None
        assert enrolment.ensure_memberships(session, ws, _joinings(bulk_ids), channel="import") == 0
    again = _state(context, in_bulk, bulk_ids, clock_free=clock_free)
    assert again == recorded


def test_a_paid_programme_enrols_member_by_member_through_the_bulk_call(context: Context,
                                                                        workspace: Workspace) -> None:
    paid = {"enrolment": {"mode": "paid", "welcome_points": 10,
                          "paid": {"fee": "99", "term_months": 12, "auto_renew": True}}}
    in_bulk, members = _twin(context, "paid", paid)
    with context.store.transaction() as session:
        ws = session.get(Workspace, in_bulk.id)
        assert ws is not None
        assert enrolment.ensure_memberships(session, ws, _joinings(members), channel="import") == CUSTOMERS - 1
    with context.store.read() as session:
        rows = session.scalars(select(Membership).where(Membership.workspace_id == in_bulk.id)).all()
        assert len(rows) == CUSTOMERS and all(row.ends_at is not None for row in rows)
