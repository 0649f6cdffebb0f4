"""Versioned settings (OneID's and insight's, one helper) under concurrent saves, on every store: a save
that started from a version no longer in force, and the loser of two saves at the same instant, get 409
``settings_conflict`` — never a database error — and exactly the winner's version is stored and audited."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.models import AuditEntry
from memberops.audit.service import Actor
from memberops.identity import config as identity_config
from memberops.insight import config_store
from memberops.runtime import Context
from memberops.settings_versions import SettingsConflict, VersionedSettings
from tests.factories import make_key

KINDS: dict[str, tuple[VersionedSettings[Any], str, dict[str, Any], dict[str, Any]]] = {
    "insight": (config_store.STORE, "/api/v1/insight/config", {"rfm": {"window_days": 200}},
                {"rfm": {"window_days": 300}}),
    "identity": (identity_config.STORE, "/api/v1/identity/config", {"max_records_per_identifier": 5},
                 {"max_records_per_identifier": 6}),
}


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _versions(context: Context, workspace: Workspace, store: VersionedSettings[Any]) -> list[int]:
    with context.store.read() as session:
        return list(session.scalars(select(store.row.version).where(store.row.workspace_id == workspace.id)
                                    .order_by(store.row.version)))


def _audited(context: Context, store: VersionedSettings[Any]) -> int:
    with context.store.read() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEntry)
                                  .where(AuditEntry.action == store.audit_action)) or 0)


def _wait_until_blocked(context: Context, thread: threading.Thread) -> None:
    """Until the other writer waits on our uncommitted version: on PostgreSQL behind the unique key (a
    backend waiting for a lock), on SQLite behind the write lock (no way to see it: a pause)."""
    if context.store.dialect != "postgresql":
        time.sleep(0.5)
        return
    deadline = time.monotonic() + 20
    # Autocommit: PostgreSQL takes one snapshot of pg_stat_activity per transaction, so polling inside
    # one would keep seeing the first answer.
    with context.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
        while time.monotonic() < deadline and thread.is_alive():
            waiting = watcher.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar()
            if waiting:
                return
            time.sleep(0.02)
    assert not thread.is_alive(), "the second save never reached the unique key"


def _race(context: Context, first: Callable[[Any], Any], second: Callable[[], Any]) -> Any:
    """Run ``second`` while ``first``'s transaction holds a new version it has not committed yet."""
    outcome: dict[str, Any] = {}

    def run_second() -> None:
        try:
            outcome["value"] = second()
        except Exception as exc:  # the result under test, whatever it is
            outcome["value"] = exc

    with context.store.transaction() as session:
        first_result = first(session)
        thread = threading.Thread(target=run_second)
        thread.start()
        _wait_until_blocked(context, thread)
    thread.join(30)
    assert not thread.is_alive()
    return first_result, outcome["value"]


class TestConcurrentSaves:
    def test_an_edit_of_an_older_version_is_refused(self, context: Context, workspace: Workspace, kind: str) -> None:
        store, _, mine, theirs = KINDS[kind]
        with context.store.transaction() as session:
            store.update(session, workspace.id, theirs, actor=Actor.cli(), based_on=0)
        with pytest.raises(SettingsConflict) as caught, context.store.transaction() as session:
            store.update(session, workspace.id, mine, actor=Actor.cli(), based_on=0)
        assert caught.value.code == "settings_conflict" and caught.value.facts["current_version"] == 1
        assert "version 1 is now in force" in caught.value.message
        assert _versions(context, workspace, store) == [1]

    def test_two_saves_at_the_same_instant(self, context: Context, workspace: Workspace, kind: str) -> None:
        store, _, mine, theirs = KINDS[kind]

        def second() -> Any:
            with context.store.transaction() as session:
                return store.update(session, workspace.id, theirs, actor=Actor.cli())

        _, result = _race(context, lambda session: store.update(session, workspace.id, mine, actor=Actor.cli()),
                          second)

        if context.store.dialect == "postgresql":  # both read version 0 and wrote 1: the unique key decides
            assert isinstance(result, SettingsConflict), result
            assert result.code == "settings_conflict" and result.facts["current_version"] == 1
            assert _versions(context, workspace, store) == [1] and _audited(context, store) == 1
        else:  # SQLite writers queue (BEGIN IMMEDIATE): the second one read version 1 and saved 2
            assert result[1] == 2
            assert _versions(context, workspace, store) == [1, 2] and _audited(context, store) == 2

    def test_two_saves_from_the_same_version_one_wins(self, context: Context, workspace: Workspace,
                                                      kind: str) -> None:
        store, _, mine, theirs = KINDS[kind]

        def second() -> Any:
            with context.store.transaction() as session:
                return store.update(session, workspace.id, theirs, actor=Actor.cli(), based_on=0)

        _, result = _race(context, lambda session: store.update(session, workspace.id, mine, actor=Actor.cli(),
                                                                based_on=0), second)

        assert isinstance(result, SettingsConflict), result
        assert _versions(context, workspace, store) == [1] and _audited(context, store) == 1
        with context.store.read() as session:
            assert store.current(session, workspace.id)[0] == store.parse(mine)


class TestApi:
    def test_a_stale_save_is_409_settings_conflict(self, context: Context, workspace: Workspace, kind: str) -> None:
        store, path, mine, theirs = KINDS[kind]
        with context.store.transaction() as session:
            admin = {"Authorization": f"Bearer {make_key(session, workspace, 'admin')}"}
            store.update(session, workspace.id, mine, actor=Actor.cli())  # a colleague's version 1
        with TestClient(create_app(context)) as client:
            stale = client.put(path, params={"based_on": 0}, json=theirs, headers=admin)
            current = client.put(path, params={"based_on": 1}, json=theirs, headers=admin)
            again = client.put(path, params={"based_on": 1}, json=theirs, headers=admin)  # a retry: no new version

        assert stale.status_code == 409, stale.text
        assert stale.json()["code"] == "settings_conflict" and stale.json()["facts"]["current_version"] == 1
        assert current.status_code == 200 and current.json()["version"] == 2
        assert again.status_code == 200 and again.json()["version"] == 2
        assert _versions(context, workspace, store) == [1, 2]
