"""Jobs run on a real queue: huey on SQLite, and on Redis when MEMBEROPS_TEST_REDIS_URL is set."""

from __future__ import annotations

import os
import uuid

import pytest

from memberops.accounts.models import Workspace
from memberops.db.outbox import emit
from memberops.jobs.queue import build_queue, start_consumer, tasks_of
from memberops.lake.export import outbox_backlog
from memberops.runtime import Context

REDIS_URL = os.environ.get("MEMBEROPS_TEST_REDIS_URL", "")
QUEUES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=[
        pytest.mark.redis, pytest.mark.skipif(not REDIS_URL, reason="MEMBEROPS_TEST_REDIS_URL is not set")]),
]


@pytest.fixture(params=QUEUES)
def queued_context(request: pytest.FixtureRequest, context: Context) -> Context:
    if request.param == "redis":
        url = REDIS_URL
        settings = context.settings.model_copy(update={"queue_url": url})
        queued = Context(settings=settings, store=context.store)
        queued.queue().storage.conn.flushdb()
        return queued
    return context


class TestQueue:
    def test_worker_runs_the_outbox_export(self, queued_context: Context, workspace: Workspace) -> None:
        with queued_context.store.transaction() as session:
            emit(session, workspace_id=workspace.id, topic="events",
                 payload={"channel": "app", "event_id": str(uuid.uuid4()), "type": "sign_in",
                          "anonymous_id": "a", "occurred_at": "2026-03-01T00:00:00+00:00"})
        huey = queued_context.queue()
        result = tasks_of(huey).export_outbox()
        consumer = start_consumer(huey, workers=1)
        try:
            assert result.get(blocking=True, timeout=30) == 1
        finally:
            consumer.stop(graceful=True)
        assert outbox_backlog(queued_context.store) == 0

    def test_sqlite_queue_lives_in_the_data_dir(self, context: Context) -> None:
        huey = build_queue(context)
        assert huey.storage.filename == str(context.settings.data_dir / "queue.db")

    def test_unsupported_queue_url(self, context: Context) -> None:
        settings = context.settings.model_copy(update={"queue_url": "amqp://localhost"})
        with pytest.raises(ValueError, match="unsupported queue_url"):
            build_queue(Context(settings=settings, store=context.store))


def test_periodic_export_is_scheduled(context: Context) -> None:
    huey = build_queue(context)
    names = {task.__name__ for task in huey._registry._periodic_tasks}
    assert {"outbox.export.periodic", "lake.sweep_tmp"} <= names


def test_points_expiry_is_scheduled_and_runs_every_workspace(context: Context) -> None:
    from datetime import timedelta

    from memberops.accounts import service as accounts
    from memberops.db.base import utcnow
    from memberops.jobs.queue import tasks_of
    from tests.loyalty.factories import enrol, post_order

    huey = build_queue(context)
    assert "loyalty.expire.periodic" in {task.__name__ for task in huey._registry._periodic_tasks}
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session)
        enrol(session, workspace)
        post_order(session, workspace, ordered_at=utcnow() - timedelta(days=400))  # lapsed already
    huey.immediate = True
    assert tasks_of(huey).expire_points()() == 100
