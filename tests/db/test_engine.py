from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text

from memberops.accounts.models import Workspace
from memberops.db.engine import Store
from memberops.db.migrate import upgrade
from memberops.runtime import Context


class TestSqlitePragmas:
    def test_wal_foreign_keys_busy_timeout(self, tmp_path: Path) -> None:
        store = Store(f"sqlite:///{tmp_path / 's.db'}")
        with store.read() as session:
            assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert session.execute(text("PRAGMA busy_timeout")).scalar_one() >= 5000
        store.dispose()


class TestTransactions:
    def test_rollback_on_error_keeps_nothing(self, context: Context) -> None:
        with pytest.raises(RuntimeError), context.store.transaction() as session:
            session.add(Workspace(slug="gone", name="Gone"))
            session.flush()
            raise RuntimeError("boom")
        with context.store.read() as session:
            assert session.scalar(select(Workspace).where(Workspace.slug == "gone")) is None

    def test_foreign_keys_are_enforced(self, context: Context) -> None:
        from sqlalchemy.exc import IntegrityError

        from memberops.identity.models import Member

        with pytest.raises(IntegrityError), context.store.transaction() as session:
            session.add(Member(workspace_id="no-such-workspace"))
            session.flush()

    def test_concurrent_writers_do_not_fail(self, context: Context) -> None:
        """Writers queue instead of failing with "database is locked" (SQLite) or losing updates."""
        with context.store.transaction() as session:
            session.add(Workspace(slug="counter", name="0"))
        errors: list[BaseException] = []

        def bump() -> None:
            try:
                for _ in range(20):
                    with context.store.transaction() as session:
                        from memberops.db.dialect import locked

                        ws = session.scalar(locked(select(Workspace).where(Workspace.slug == "counter")))
                        assert ws is not None
                        ws.name = str(int(ws.name) + 1)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=bump) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with context.store.read() as session:
            assert session.scalar(select(Workspace.name).where(Workspace.slug == "counter")) == "80"


def test_postgres_urls_use_psycopg3() -> None:
    from memberops.db.engine import normalise_url

    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"


def test_store_from_scratch_file(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'm.db'}")
    upgrade(store)
    store.dispose()
    assert (tmp_path / "nested" / "dir" / "m.db").exists()


class TestIdleConnections:
    """A pooled PostgreSQL connection is checked before use only after sitting idle; a dead one is replaced."""

    def test_a_connection_killed_while_idle_is_replaced(self, context: Context) -> None:
        if context.store.dialect != "postgresql":
            pytest.skip("SQLite has no server connection to lose")
        import psycopg

        from memberops.db import engine as engines

        with context.store.read() as session:
            first = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        dsn = context.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as other:  # outside the pool, which holds the idle one
            other.execute("SELECT pg_terminate_backend(%s)", (first,))
        for record in context.store.engine.pool._pool.queue:  # type: ignore[attr-defined]
            record.info["idle_since"] -= engines.PING_AFTER_IDLE_SECONDS
        with context.store.read() as session:
            assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() != first

    def test_a_busy_connection_is_not_pinged(self, context: Context) -> None:
        if context.store.dialect != "postgresql":
            pytest.skip("SQLite has no server connection to ping")
        from sqlalchemy import event

        with context.store.read() as session:
            session.execute(text("SELECT 1"))
        statements: list[str] = []
        event.listen(context.store.engine, "before_cursor_execute",
                     lambda _c, _cur, statement, *_: statements.append(statement))
        with context.store.read() as session:
            session.execute(text("SELECT 2"))
        assert statements == ["SELECT 2"]
