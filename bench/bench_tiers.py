"""Tier evaluation benchmark: ``memberops loyalty evaluate-tiers`` over every member of a programme.

- ``loyalty_tier_evaluation``: ours is ``loyalty.tiers.evaluate_tiers`` (set-based: one lock statement,
  one grouped metric statement over a temporary table of per-member windows, the pure rules over plain
  rows, bulk writes of tier rows, history, events and benefit grants) on a SQLite state store built by the
  migrations with 20,000 members (2,000 with ``--quick``): anniversary windows in a non-UTC zone, three
  orders each on average over 30 months (some refunded), 60 % holding a tier, a benefit on the top tier.
  The baseline is ``loyalty.tiers.evaluate_tiers_per_member``, the member-by-member evaluation it
  replaced (each member's lock, two metric queries, tier and keep look-ups, writes and grants in turn).
  Each run is one write transaction rolled back afterwards, so every run judges the same state; both must
  decide the same (checked).

Run with ``memberops bench loyalty_tier_evaluation`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.benchmarks import Benchmark, load_bench_module
from memberops.db.engine import Store
from memberops.identity.models import Member
from memberops.ids import new_id
from memberops.ingest.models import LiveOrder
from memberops.loyalty import benefits, programmes, tiers
from memberops.loyalty.benefit_schemas import BenefitDefinitionIn
from memberops.loyalty.models import Membership, PointsAccount
from memberops.loyalty.programme import programme_from_dict
from memberops.loyalty.tier_models import MemberTier

AS_OF = datetime.fromisoformat("2026-03-10T05:30:00+00:00")

fixtures = load_bench_module(Path(__file__).resolve().with_name("fixtures.py"))  # the shared store set-up


class Setup:
    def __init__(self, root: Path, store: Store, workspace_id: str) -> None:
        self.root, self.store, self.workspace_id = root, store, workspace_id


class _Rollback(Exception):
    pass


def _setup(quick: bool) -> Setup:
    size = 2_000 if quick else 20_000
    rng = random.Random(6)
    data = Setup(*fixtures.sqlite_store("tiers"))
    with data.store.transaction() as session:
        workspace = session.get_one(Workspace, data.workspace_id)
        workspace.timezone = "Asia/Shanghai"
        programmes.save_programme(session, workspace, programme_from_dict({
            "tiers": [{"code": "silver", "name": "Silver", "threshold": "500"},
                      {"code": "gold", "name": "Gold", "threshold": "1000",
                       "benefits": [{"code": "lounge", "quantity": 2}]}],
            "tier_rules": {"window": "anniversary", "metric": "spend", "keep_ratio": "0.8", "grace_months": 1}}),
            actor=Actor.cli())
        benefits.define_benefit(session, workspace.id, BenefitDefinitionIn(code="lounge", name="Lounge pass",
                                                                           category="other"), actor=Actor.cli())
        ids = [new_id() for _ in range(size)]
        session.execute(insert(Member), [{"id": m, "workspace_id": workspace.id, "is_enrolled": True} for m in ids])
        start = AS_OF - timedelta(days=3 * 365)
        session.execute(insert(Membership), [
            {"workspace_id": workspace.id, "member_id": m, "programme_version": 1, "channel": "pos",
             "enrolled_at": start + timedelta(minutes=rng.randrange(3 * 365 * 24 * 60))} for m in ids])
        session.execute(insert(PointsAccount), [{"workspace_id": workspace.id, "member_id": m} for m in ids])
        session.execute(insert(MemberTier), [
            {"workspace_id": workspace.id, "member_id": m, "tier": rng.choice(["silver", "gold"]),
             "since": AS_OF - timedelta(days=rng.randrange(1, 900)), "programme_version": 1, "updated_at": AS_OF}
            for m in ids if rng.random() < 0.6])
        orders = []
        for index, member in enumerate(ids):
            for n in range(rng.randrange(0, 7)):
                when = AS_OF - timedelta(minutes=rng.randrange(0, 30 * 31 * 24 * 60))
                paid = Decimal(rng.randrange(5000, 60000)) / 100
                orders.append({"workspace_id": workspace.id, "channel": "pos", "order_id": f"o{index}-{n}",
                               "customer_key": f"c{index}", "member_id": member, "ordered_at": when,
                               "paid_amount": paid, "refunded_amount": rng.choice([Decimal(0)] * 4 + [paid]),
                               "received_at": when})
        session.execute(insert(LiveOrder), orders)
    return data


def _evaluate(data: Setup, evaluate: Any) -> tuple[Any, ...]:
    result: list[tuple[Any, ...]] = []
    try:
        with data.store.transaction() as session:
            workspace = session.get(Workspace, data.workspace_id)
            run = evaluate(session, workspace, as_of=AS_OF)
            result.append((run.members, run.upgraded, run.downgraded, run.kept, run.benefits_granted,
                           sorted(run.by_tier.items())))
            raise _Rollback
    except _Rollback:
        pass
    return result[0]


def _ours(data: Setup) -> tuple[Any, ...]:
    return _evaluate(data, tiers.evaluate_tiers)


def _baseline(data: Setup) -> tuple[Any, ...]:
    return _evaluate(data, tiers.evaluate_tiers_per_member)


BENCHMARKS = [
    Benchmark(
        name="loyalty_tier_evaluation", description="evaluate every member's tier (SQLite, anniversary windows)",
        baseline_name="the member-by-member evaluation", setup=_setup, ours=_ours, baseline=_baseline,
        check=fixtures.same, repeats=2, teardown=fixtures.teardown, unit_of_work="20,000 members (2,000 with --quick)",
    ),
]
