"""Coupon benchmark: redeeming coupons one transaction each, as point-of-sale requests do.

- ``coupon_redeem``: ours is ``loyalty.coupons.redeem_coupon`` in its own write transaction per coupon
  (member check, the coupon and its template version's terms read, eligibility and discount, the
  conditional ``UPDATE … WHERE status = 'issued'``, the redemption row) on a SQLite state store built by
  the migrations. The baseline is the floor of the same write on the same database: Python's ``sqlite3``
  running only the conditional ``UPDATE`` and the ``INSERT`` of the redemption in a ``BEGIN IMMEDIATE``
  transaction per coupon — what any implementation must write, with nothing checked.

Run with ``memberops bench coupon_redeem`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert

from memberops.audit.service import Actor
from memberops.benchmarks import Benchmark, load_bench_module
from memberops.db.base import utcnow
from memberops.db.engine import Store
from memberops.identity.models import Member
from memberops.ids import new_id
from memberops.loyalty import coupon_templates, coupons
from memberops.loyalty.coupon_models import Coupon
from memberops.loyalty.coupon_rules import generate_code
from memberops.loyalty.coupon_schemas import CouponTemplateIn, CouponTerms

REPEATS = 5

fixtures = load_bench_module(Path(__file__).resolve().with_name("fixtures.py"))  # the shared store set-up


class Setup:
    """The store and the coupons each timed run redeems."""

    def __init__(self, root: Path, store: Store, workspace_id: str, member_id: str, batches: list[list[str]]) -> None:
        self.root, self.store, self.workspace_id, self.member_id = root, store, workspace_id, member_id
        self.batches = batches  # coupon codes, one list per timed run

    def next_batch(self) -> list[str]:
        return self.batches.pop()


def _setup(quick: bool) -> Setup:
    per_run = 200 if quick else 2_000
    root, store, workspace_id = fixtures.sqlite_store("coupons")
    now = utcnow()
    with store.transaction() as session:
        member = Member(workspace_id=workspace_id, is_enrolled=True)
        session.add(member)
        session.flush()
        terms = CouponTerms(kind="percent_off", percent_off=Decimal("10"), max_discount=Decimal("30"), valid_days=30,
                            min_spend=Decimal("50"))
        template = coupon_templates.create_template(session, workspace_id, CouponTemplateIn(
            code="BENCH", name="bench", terms=terms), actor=Actor.system())
        batches = []
        for _ in range(2 * (REPEATS + 1)):
            codes = [generate_code() for _ in range(per_run)]
            session.execute(insert(Coupon), [
                {"id": new_id(), "workspace_id": workspace_id, "template_id": template.id, "template_version": 1,
                 "code": code, "unique_code": code, "member_id": member.id, "status": "issued",
                 "issue_key": f"bench-{code}", "issued_at": now, "valid_from": now,
                 "valid_until": now + timedelta(days=30), "restored_count": 0}
                for code in codes
            ])
            batches.append(codes)
    return Setup(root, store, workspace_id, member.id, batches)


def _ours(data: Setup) -> int:
    redeemed = 0
    for i, code in enumerate(data.next_batch()):
        order = coupons.OrderContext(member_id=data.member_id, channel="pos", amount=Decimal("120.00"),
                                     store_id="S1", order_key=f"order:pos:ours-{len(data.batches)}-{i}")
        with data.store.transaction() as session:
            coupons.redeem_coupon(session, data.workspace_id, code, order)
        redeemed += 1
    return redeemed


def _baseline(data: Setup) -> int:
    connection = sqlite3.connect(data.root / "memberops.db", isolation_level=None, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    ids = dict(connection.execute("SELECT unique_code, id FROM coupon").fetchall())
    redeemed = 0
    try:
        for i, code in enumerate(data.next_batch()):
            now = utcnow().isoformat(sep=" ")
            connection.execute("BEGIN IMMEDIATE")
            changed = connection.execute(
                "UPDATE coupon SET status = 'redeemed', redeemed_at = ? WHERE id = ? AND status = 'issued'",
                (now, ids[code])).rowcount
            connection.execute(
                "INSERT INTO coupon_redemption (workspace_id, coupon_id, member_id, order_key, channel, store_id, "
                "amount, discount, redeemed_at) VALUES (?, ?, ?, ?, 'pos', 'S1', '120.00', '12.00', ?)",
                (data.workspace_id, ids[code], data.member_id, f"order:pos:base-{len(data.batches)}-{i}", now))
            connection.execute("COMMIT")
            redeemed += changed
    finally:
        connection.close()
    return redeemed


BENCHMARKS = [
    Benchmark(
        name="coupon_redeem", description="redeem coupons, one write transaction each (SQLite)",
        baseline_name="sqlite3: the bare conditional UPDATE + INSERT", setup=_setup, ours=_ours, baseline=_baseline,
        check=fixtures.same, repeats=REPEATS, teardown=fixtures.teardown, unit_of_work="2,000 redeems (200 with --quick)",
    ),
]
