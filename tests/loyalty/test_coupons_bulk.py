"""Issuing coupons in bulk (:func:`coupons.issue_coupons`) records and answers what issuing them one by one
(:func:`coupons.issue_coupon`) does, row for row, on every store: new coupons (unique and shared codes),
replays of a key (stored, or earlier in the same batch), the per-member limit and the stock reached, a key
reused for another member, and an absorbed member's coupon issued to the survivor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from memberops.accounts import service as accounts
from memberops.accounts.models import Workspace
from memberops.errors import DomainError
from memberops.identity.models import Member
from memberops.loyalty import coupon_rules, coupons
from memberops.loyalty.coupon_models import Coupon, CouponTemplate
from memberops.runtime import Context
from tests.loyalty.coupon_factories import WHEN, make_member, make_template

Issue = tuple[str, str]


def _setup(session: Session, slug: str) -> tuple[str, list[str]]:
    """A workspace with templates of every kind of limit, eight members (m7 absorbed into m6) and two coupons
    issued before (m0's LIMITED, m1's SHARED under key ``before``)."""
    workspace = accounts.ensure_workspace(session, slug=slug, name=slug)
    make_template(session, workspace.id, "PLAIN")
    make_template(session, workspace.id, "LIMITED", per_member_limit=2)
    make_template(session, workspace.id, "SHARED", shared_code="SPRING2026")
    make_template(session, workspace.id, "SCARCE", stock=3)
    members = [make_member(session, workspace.id) for _ in range(8)]
    absorbed = session.get(Member, members[7])
    assert absorbed is not None
    absorbed.merged_into_id = members[6]
    coupons.issue_coupon(session, workspace.id, "LIMITED", members[0], "limited:m0:a", now=WHEN - timedelta(days=3))
    coupons.issue_coupon(session, workspace.id, "SHARED", members[1], "before", now=WHEN - timedelta(days=2))
    return workspace.id, members


def _batches(members: list[str]) -> list[tuple[str, list[Issue]]]:
    m = members
    return [
        ("PLAIN", [(member, f"plain:{n}") for n, member in enumerate(m)] + [(m[2], "plain:2")]),
        ("LIMITED", [(m[0], "limited:m0:a"), (m[0], "limited:m0:b"), (m[1], "limited:m1:a"), (m[1], "limited:m1:b")]),
        ("LIMITED", [(m[2], "limited:m2:a"), (m[0], "limited:m0:c"), (m[3], "limited:m3:a")]),  # m0 at the limit
        ("SHARED", [(m[1], "before"), (m[2], "shared:m2"), (m[3], "shared:m3")]),
        ("SCARCE", [(m[n], f"scarce:{n}") for n in range(5)]),  # sold out at the fourth
        ("SHARED", [(m[4], "shared:m4"), (m[5], "shared:m3")]),  # a key reused for another member
    ]


def _one_by_one(session: Session, workspace_id: str, template: str, issues: Sequence[Issue]) -> list[coupons.Issued]:
    return [coupons.issue_coupon(session, workspace_id, template, member, key, now=WHEN) for member, key in issues]


def _in_bulk(session: Session, workspace_id: str, template: str, issues: Sequence[Issue]) -> list[coupons.Issued]:
    return coupons.issue_coupons(session, workspace_id, template, issues, now=WHEN)


Issuer = Callable[[Session, str, str, Sequence[Issue]], list[coupons.Issued]]


def _run(context: Context, slug: str, issuer: Issuer) -> dict[str, Any]:
    """Each batch in its own transaction; what every batch answered or raised, and the rows left."""
    with context.store.transaction() as session:
        workspace_id, members = _setup(session, slug)
    name = {member_id: f"m{n}" for n, member_id in enumerate(members)}
    outcomes: list[Any] = []
    for code, issues in _batches(members):
        try:
            with context.store.transaction() as session:
                issued = issuer(session, workspace_id, code, issues)
                outcomes.append([(name[i.coupon.member_id], i.coupon.issue_key, i.is_replay, i.coupon.status)
                                 for i in issued])
        except DomainError as exc:
            outcomes.append((type(exc).__name__, exc.code))
    with context.store.read() as session:
        templates = {t.id: t for t in session.scalars(select(CouponTemplate).where(
            CouponTemplate.workspace_id == workspace_id))}
        rows = session.scalars(select(Coupon).where(Coupon.workspace_id == workspace_id)).all()
        for row in rows:
            shared = templates[row.template_id].shared_code
            assert row.code == (shared or row.unique_code) and (row.unique_code is None) == bool(shared)
            if row.unique_code is not None:
                assert len(row.code) == coupon_rules.CODE_LENGTH
        assert len({row.unique_code for row in rows if row.unique_code}) == sum(1 for row in rows if row.unique_code)
        return {
            "outcomes": outcomes,
            "coupons": sorted((templates[r.template_id].code, r.template_version, name[r.member_id], r.status,
                               r.issue_key, r.issued_at, r.valid_from, r.valid_until, r.redeemed_at, r.restored_count,
                               r.code if r.unique_code is None else "unique") for r in rows),
            "issued_counts": sorted((t.code, t.issued_count) for t in templates.values()),
        }


def test_issuing_in_bulk_records_and_answers_what_issuing_one_by_one_does(context: Context,
                                                                          workspace: Workspace) -> None:
    reference = _run(context, "one-by-one", _one_by_one)
    bulk = _run(context, "in-bulk", _in_bulk)
    assert bulk == reference
    outcomes = reference["outcomes"]
    assert outcomes[0][-1] == ("m2", "plain:2", True, "issued")  # a key repeated in the batch: a replay
    assert outcomes[0][-2] == ("m6", "plain:7", False, "issued")  # the absorbed member's coupon: the survivor's
    assert outcomes[2] == ("CouponIssueLimitReached", "coupon_issue_limit_reached")
    assert outcomes[4] == ("CouponSoldOut", "coupon_sold_out")
    assert outcomes[5] == ("IdempotencyKeyReused", "idempotency_key_reused")
    assert ("SCARCE", 0) in reference["issued_counts"] and ("PLAIN", 8) in reference["issued_counts"]


@pytest.mark.parametrize("template", ["PLAIN", "SHARED"])
def test_a_bulk_issue_again_answers_replays_and_changes_nothing(context: Context, workspace: Workspace,
                                                                template: str) -> None:
    with context.store.transaction() as session:
        workspace_id, members = _setup(session, "again")
        issues = [(member, f"again:{member}") for member in members[:6]]
        first = coupons.issue_coupons(session, workspace_id, template, issues, now=WHEN)
    with context.store.transaction() as session:
        again = coupons.issue_coupons(session, workspace_id, template, issues, now=WHEN + timedelta(days=1))
        assert [i.is_replay for i in again] == [True] * 6
        assert [i.coupon.id for i in again] == [i.coupon.id for i in first]
        count = session.scalar(select(CouponTemplate.issued_count).where(CouponTemplate.workspace_id == workspace_id,
                                                                         CouponTemplate.code == template))
        assert count == 6 + (template == "SHARED")
