"""The job queue and the tasks registered on it.

Tasks are registered on the queue built for a :class:`~memberops.runtime.Context` (not on a module-level
``huey`` object), so a test, a CLI command and ``memberops serve`` each get a queue over their own
settings. ``serve`` runs one worker and the scheduler in its own process; ``memberops worker`` runs more.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from memberops.runtime import Context

log = logging.getLogger(__name__)
QUEUE_NAME = "memberops"


def _make_huey(queue_url: str) -> Huey:
    url = make_url(queue_url)
    if url.drivername in ("redis", "rediss"):
        try:
            import redis  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("a redis:// queue needs the redis client: pip install 'memberops[redis]'") from exc
        return RedisHuey(QUEUE_NAME, url=queue_url)
    if url.drivername == "sqlite" and url.database:
        from pathlib import Path

        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(QUEUE_NAME, filename=url.database)
    raise ValueError(f"unsupported queue_url {url.drivername}://…; use sqlite:///FILE or redis://HOST:PORT/DB")


@dataclass(frozen=True)
class Tasks:
    """Handles of the registered tasks, for callers that enqueue them."""

    export_outbox: Any
    compute_insight: Any
    expire_points: Any
    run_memberships: Any = None


def build_queue(context: Context) -> Huey:
    """The queue of ``context.settings.queue_url`` with every memberops task registered."""
    huey = _make_huey(context.settings.queue_url)
    huey.memberops_tasks = register_tasks(huey, context)  # type: ignore[attr-defined]
    return huey


def tasks_of(huey: Huey) -> Tasks:
    return huey.memberops_tasks  # type: ignore[attr-defined,no-any-return]


def register_tasks(huey: Huey, context: Context) -> Tasks:
    from memberops.lake.export import export_outbox
    from memberops.lake.writer import sweep_tmp

    def run_export() -> int:
        result = export_outbox(context.store, context.settings.lake_path,
                               batch_size=context.settings.outbox_batch_size)
        if result.rows:
            log.info("outbox export moved %d rows in %d batches", result.rows, result.batches)
        return result.rows

    def run_points_expiry() -> int:
        """Every workspace's points run: release past the return window, expire, warn (one transaction each)."""
        from memberops.accounts.service import list_workspaces
        from memberops.loyalty.expiry import run_expiry

        with context.store.read() as session:
            workspaces = list(list_workspaces(session))
        expired = 0
        for workspace in workspaces:
            with context.store.transaction() as session:
                run = run_expiry(session, workspace)
            expired += run.expired_points
            if run.members or run.warned_members:
                log.info("points run: %d members caught up, %d points released, %d expired, %d warned",
                         run.members, run.released_points, run.expired_points, run.warned_members)
        return expired

    def run_tier_evaluation() -> int:
        """Every workspace's tier evaluation (one transaction each): downgrades only happen here."""
        from memberops.accounts.service import list_workspaces
        from memberops.loyalty.tiers import evaluate_tiers

        with context.store.read() as session:
            workspaces = list(list_workspaces(session))
        changed = 0
        for workspace in workspaces:
            with context.store.transaction() as session:
                run = evaluate_tiers(session, workspace)
            changed += run.upgraded + run.downgraded
            if run.upgraded or run.downgraded or run.kept:
                log.info("tier evaluation: %d members, %d upgraded, %d downgraded, %d kept by the lower bar",
                         run.members, run.upgraded, run.downgraded, run.kept)
        return changed

    def run_memberships() -> int:
        """Every workspace's membership run (one transaction each): absorbed members' loyalty moved to their
        survivors, paid memberships lapsed after their grace days expired, enrolled flags kept in step."""
        from memberops.accounts.service import list_workspaces
        from memberops.loyalty.enrolment import sync_enrolment
        from memberops.loyalty.memberships import expire_memberships
        from memberops.loyalty.merge import absorb_merged_members

        with context.store.read() as session:
            workspaces = list(list_workspaces(session))
        ended = 0
        for workspace in workspaces:
            with context.store.transaction() as session:
                absorb_merged_members(session, workspace)
                run = expire_memberships(session, workspace)
                sync_enrolment(session, workspace)
            ended += run.expired + run.cancelled
            if run.expired or run.cancelled or run.renewals_requested:
                log.info("memberships: %d expired, %d cancelled at term end, %d renewals requested",
                         run.expired, run.cancelled, run.renewals_requested)
        return ended

    export_task = huey.task(name="outbox.export", retries=3, retry_delay=5)(run_export)
    expiry_task = huey.task(name="loyalty.expire", retries=3, retry_delay=30)(run_points_expiry)
    huey.periodic_task(crontab(minute="*"), name="outbox.export.periodic")(run_export)
    huey.periodic_task(crontab(minute="17"), name="lake.sweep_tmp")(lambda: sweep_tmp(context.settings.lake_path))
    huey.periodic_task(crontab(minute="23"), name="coupons.expire")(lambda: expire_coupons(context))
    huey.periodic_task(crontab(minute="10", hour="2"), name="lake.compact.nightly")(lambda: compact(context))

    def run_insight() -> int:
        from memberops.audit.service import Actor
        from memberops.insight import fact_index
        from memberops.insight.snapshot import compute_every_workspace

        summaries = compute_every_workspace(context, actor=Actor.system())
        for summary in summaries:
            log.info("insight computed for %d members in %.1f s", summary.members, summary.seconds)
        rebuilt = fact_index.refresh(context.settings.lake_path)  # the profile's first look-up stays fast
        if rebuilt:
            log.info("profile index rebuilt: %s", ", ".join(rebuilt))
        return len(summaries)

    insight_task = huey.task(name="insight.compute", retries=1, retry_delay=60)(run_insight)
    # nightly, after the day's facts are in: every trait, tag and change as of the night
    huey.periodic_task(crontab(minute="30", hour="2"), name="insight.compute.nightly")(run_insight)
    huey.periodic_task(crontab(minute="7"), name="loyalty.expire.periodic")(run_points_expiry)
    # daily, after midnight UTC: windows and grace periods turn over at day boundaries
    huey.periodic_task(crontab(minute="40", hour="0"), name="loyalty.tiers.periodic")(run_tier_evaluation)
    # daily, after midnight UTC: a term's grace days end at a day boundary
    huey.periodic_task(crontab(minute="50", hour="0"), name="loyalty.memberships.periodic")(run_memberships)
    memberships_task = huey.task(name="loyalty.memberships", retries=3, retry_delay=30)(run_memberships)
    return Tasks(export_outbox=export_task, compute_insight=insight_task, expire_points=expiry_task,
                 run_memberships=memberships_task)


def compact(context: Context) -> int:
    """The nightly lake compaction (before insight's nightly run reads the lake); partitions compacted."""
    from memberops.lake.compact import compact_lake

    result = compact_lake(context.store, context.settings.lake_path)
    if result.partitions:
        log.info("compacted %d lake partitions (%d files into %d)", result.partitions, result.files_merged,
                 result.files_written)
    return result.partitions


def expire_coupons(context: Context) -> int:
    """The hourly coupon expiry, one transaction: unused coupons past their validity become ``expired``."""
    from memberops.loyalty.coupons import expire_coupons as expire

    with context.store.transaction() as session:
        count = expire(session)
    if count:
        log.info("expired %d coupons", count)
    return count


class InProcessConsumer(Consumer):  # type: ignore[misc]
    """A consumer that leaves signal handling to its host (uvicorn), so Ctrl-C still stops the server."""

    def _set_signal_handlers(self) -> None:
        return None


def start_consumer(huey: Huey, workers: int = 1) -> Consumer:
    """Start ``workers`` worker threads and the periodic scheduler in this process; returns the consumer."""
    consumer = InProcessConsumer(huey, workers=workers, worker_type="thread", periodic=True,
                                 check_worker_health=False)
    consumer.start()
    return consumer
