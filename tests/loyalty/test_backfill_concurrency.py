"""The points backfill while the point of sale keeps posting (issue 6, "no movement is ever applied twice"):
a live order of a member the backfill is replaying — the same order the nightly export also brought to the
lake — is counted exactly once, and the backfill completes, whether the order is committed after the
backfill read the ledger's keys (every store) or waits on, and then beats, the chunk's lock (PostgreSQL).

Each test has twins with the same history: the first twin's order is posted live during the backfill, the
second twin's just before it; the two ledgers must come out the same."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text

from memberops.accounts.models import Workspace
from memberops.loyalty import points
from memberops.loyalty.backfill import BackfillSummary, backfill_points, chunks_for
from memberops.loyalty.models import PointsLot, PointsMovement
from memberops.runtime import Context
from tests.insight.lake import Brand
from tests.loyalty.factories import enrol, post_order, set_programme
from tests.loyalty.test_backfill import JOINED, ORDERS, PROGRAMME, _lake_brand
from tests.loyalty.test_points import check_ledger

PAID = {order_id: (at, paid) for order_id, at, paid in ORDERS}
# "recent" has no refund in the lake (the member's chunk is replayed in memory); "birthday" is refunded
# twice there (a refund of an order posted live is replayed through the ledger's own calls)
POSTED_LIVE = ["recent", "birthday"]


def _twins(context: Context, workspace: Workspace) -> tuple[str, str]:
    """Two enrolled members with the same history in the lake (orders ``a-…`` and ``b-…``)."""
    with context.store.transaction() as session:
        set_programme(session, workspace, **PROGRAMME)
        first = enrol(session, workspace, "during", birthday=date(1990, 5, 4), now=JOINED)
        second = enrol(session, workspace, "before", birthday=date(1990, 5, 4), now=JOINED)
    _write_lake(context, workspace, [("during", first, "a-"), ("before", second, "b-")])
    return first, second


def _write_lake(context: Context, workspace: Workspace, customers: list[tuple[str, str, str]]) -> None:
    """The lake history of each ``(customer, member id, order id prefix)``."""
    both = Brand(workspace_id=workspace.id)
    for customer, member_id, prefix in customers:
        part = _lake_brand(workspace, customer, member_id, prefix)
        both.links += part.links
        both.records += part.records
        both.orders += part.orders
        both.refunds += part.refunds
    both.write(context.settings.lake_path)


def _post_live(context: Context, workspace: Workspace, customer: str, order_id: str) -> int | None:
    """The POS posts the order live, in its own transaction."""
    at, paid = PAID[order_id]
    with context.store.transaction() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        prefix = "a-" if customer == "during" else "b-"
        return post_order(session, ws, f"{prefix}{order_id}", customer_key=customer, paid=paid, ordered_at=at).points


def _ledger(context: Context, member_id: str) -> tuple[Any, ...]:
    with context.store.read() as session:
        account = check_ledger(session, member_id)
        lots = sorted((lot.points, lot.remaining, lot.state, lot.earned_at, lot.expires_at) for lot in session.scalars(
            select(PointsLot).where(PointsLot.member_id == member_id)))
        kinds = sorted(tuple(row) for row in session.execute(select(PointsMovement.kind, PointsMovement.points)
                                       .where(PointsMovement.member_id == member_id)).all())
    return (account.available, account.pending, account.debt), lots, kinds


def _check_once(context: Context, order_id: str, summary: BackfillSummary, first: str, second: str) -> None:
    """Each twin's order earned once; the backfill counted both live posts as already posted; the ledgers
    are the same."""
    with context.store.read() as session:
        for prefix in ("a-", "b-"):
            assert session.scalar(select(func.count()).select_from(PointsMovement).where(
                PointsMovement.idempotency_key == points.order_key("pos", f"{prefix}{order_id}"))) == 1
    # each twin: four orders from enrolment on, one of them posted live
    assert summary.orders == 2 * 3 and summary.already_posted == 2
    assert _ledger(context, first) == _ledger(context, second)


@pytest.mark.parametrize("order_id", POSTED_LIVE)
def test_a_live_order_committed_while_the_backfill_runs_counts_once(
        context: Context, workspace: Workspace, order_id: str) -> None:
    first, second = _twins(context, workspace)
    assert _post_live(context, workspace, "before", order_id)
    posted: list[int | None] = []

    def live_order_between_chunks(done: int, total: int) -> None:
        if done == 0:  # after the backfill read the ledger's keys, before its chunk locks the members
            posted.append(_post_live(context, workspace, "during", order_id))

    summary = backfill_points(context, workspace, progress=live_order_between_chunks)
    assert posted and posted[0]
    _check_once(context, order_id, summary, first, second)


def _wait_until_blocked(context: Context, thread: threading.Thread) -> None:
    """Until another backend waits for a lock (the backfill's chunk, behind the live order's)."""
    deadline = time.monotonic() + 30
    # Autocommit: PostgreSQL takes one snapshot of pg_stat_activity per transaction.
    with context.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
        while time.monotonic() < deadline and thread.is_alive():
            if watcher.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND wait_event_type = 'Lock'")).scalar():
                return
            time.sleep(0.02)
    assert not thread.is_alive(), "the backfill never waited for the live order's lock"


def _backfill_in_thread(context: Context, workspace: Workspace) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run_backfill() -> None:
        try:
            outcome["summary"] = backfill_points(context, workspace)
        except Exception as exc:  # the result under test, whatever it is
            outcome["summary"] = exc

    thread = threading.Thread(target=run_backfill)
    thread.start()
    return thread, outcome


def _finished(thread: threading.Thread, outcome: dict[str, Any]) -> BackfillSummary:
    thread.join(60)
    assert not thread.is_alive()
    summary = outcome["summary"]
    assert isinstance(summary, BackfillSummary), summary
    return summary


@pytest.mark.parametrize("order_id", POSTED_LIVE)
def test_a_live_order_holding_the_lock_when_the_chunk_starts_counts_once(
        context: Context, workspace: Workspace, order_id: str) -> None:
    if context.store.dialect != "postgresql":
        pytest.skip("SQLite serialises whole write transactions: the backfill cannot reach a member's lock "
                    "while a live order holds the store (the other test covers what it can meet)")
    first, second = _twins(context, workspace)
    assert _post_live(context, workspace, "before", order_id)

    at, paid = PAID[order_id]
    with context.store.transaction() as session:  # the POS's request, not committed yet
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        assert post_order(session, ws, f"a-{order_id}", customer_key="during", paid=paid, ordered_at=at).points
        thread, outcome = _backfill_in_thread(context, workspace)
        _wait_until_blocked(context, thread)
    summary = _finished(thread, outcome)
    _check_once(context, order_id, summary, first, second)


def test_progress_reports_each_chunk(context: Context, workspace: Workspace) -> None:
    _twins(context, workspace)
    seen: list[tuple[int, int]] = []
    backfill_points(context, workspace, now=datetime(2026, 11, 20, 4, 0, tzinfo=UTC),
                    progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 2), (2, 2)]


def test_a_chunk_and_a_merge_lock_members_in_one_order(context: Context, workspace: Workspace) -> None:
    """A OneID merge (or a referral reward) locks two members' points in member id order; the chunk locks
    its members in that order too, so the two queue instead of deadlocking — even when the members' points
    accounts were opened in the other order."""
    if context.store.dialect != "postgresql":
        pytest.skip("SQLite has no row locks: its writers queue whole")
    from memberops.loyalty import enrolment
    from tests.loyalty.coupon_factories import make_member

    with context.store.transaction() as session:
        set_programme(session, workspace, **PROGRAMME)
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        low, high = sorted(make_member(session, workspace.id) for _ in range(2))
        for member_id in (high, low):  # the accounts' ids in the other order than the members'
            enrolment.ensure_memberships(session, ws, [enrolment.Joining(member_id, JOINED)], channel="import")
    _write_lake(context, workspace, [("low", low, "a-"), ("high", high, "b-")])

    with context.store.transaction() as session:  # the merge's two locks, in member id order
        points.lock_account(session, workspace.id, low)
        thread, outcome = _backfill_in_thread(context, workspace)
        _wait_until_blocked(context, thread)
        points.lock_account(session, workspace.id, high)
    summary = _finished(thread, outcome)
    assert summary.orders == 2 * 4 and summary.refunds == 2 * 2


class TestChunksLetThePointOfSaleIn:
    """On SQLite a chunk holds the store's one write lock, which every live order waits for: chunks there
    are small, so a live order waits for one short chunk, never for the whole backfill; PostgreSQL locks the
    chunk's members alone and keeps its large chunks."""

    MEMBERS = 120

    def _members(self, context: Context, workspace: Workspace) -> list[str]:
        """``MEMBERS`` enrolled members, each with one imported order (``o-{n}``) in the lake."""
        with context.store.transaction() as session:
            set_programme(session, workspace, **PROGRAMME)
            members = [enrol(session, workspace, f"c{n}", now=JOINED) for n in range(self.MEMBERS)]
        brand = Brand(workspace_id=workspace.id)
        for n, member_id in enumerate(members):
            brand.person(member_id, channel="pos", source_id=f"c{n}")
            brand.orders.append({**brand._common(), "channel": "pos", "order_id": f"o-{n}", "customer_key": f"c{n}",
                                 "store_id": None, "ordered_at": PAID["plain"][0], "status": "paid",
                                 "gross_amount": None, "discount_amount": None, "shipping_amount": None,
                                 "paid_amount": PAID["plain"][1], "currency": "CNY", "coupon_codes": None})
        brand.write(context.settings.lake_path)
        return members

    def test_a_live_order_completes_between_two_chunks(self, context: Context, workspace: Workspace) -> None:
        self._members(context, workspace)
        chunk = chunks_for(context.store.dialect).bulk_members
        if context.store.dialect == "sqlite":
            assert chunk < self.MEMBERS  # several short transactions here
        steps: list[int] = []
        between, posted = threading.Event(), threading.Event()
        outcome: dict[str, Any] = {}

        def progress(done: int, total: int) -> None:
            steps.append(done)
            if 0 < done < total and not between.is_set():  # the first chunk has committed
                between.set()
                posted.wait(30)

        def run_backfill() -> None:
            try:
                outcome["summary"] = backfill_points(context, workspace, progress=progress)
            except Exception as exc:  # the result under test, whatever it is
                outcome["summary"] = exc

        thread = threading.Thread(target=run_backfill)
        thread.start()
        if chunk < self.MEMBERS:
            assert between.wait(60), "the backfill never finished its first chunk"
            # the POS posts the last member's order (its twin is in the lake) while the backfill is running
            with context.store.transaction() as session:
                ws = session.get(Workspace, workspace.id)
                assert ws is not None
                live = post_order(session, ws, f"o-{self.MEMBERS - 1}", customer_key=f"c{self.MEMBERS - 1}",
                                  paid=str(PAID["plain"][1]), ordered_at=PAID["plain"][0])
            assert thread.is_alive() and live.points == int(Decimal(str(PAID["plain"][1])))
            posted.set()
        summary = _finished(thread, outcome)
        # each transaction replayed at most one chunk of members: the lock is held for that long at most
        assert all(later - earlier <= chunk for earlier, later in zip(steps, steps[1:], strict=False))
        assert len(steps) == 1 + -(-self.MEMBERS // chunk)  # one report per transaction, and the last
        live_posts = 1 if chunk < self.MEMBERS else 0
        assert summary.orders == self.MEMBERS - live_posts and summary.already_posted == live_posts
        with context.store.read() as session:
            assert session.scalar(select(func.count()).select_from(PointsMovement).where(
                PointsMovement.kind == "earn")) == self.MEMBERS  # the live order earned once
