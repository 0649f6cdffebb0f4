"""Engines and transactions for the state store.

SQLite is configured for a server's life, not a script's: WAL so readers never wait for the writer,
``busy_timeout`` so a second writer waits instead of failing, foreign keys on, and ``BEGIN IMMEDIATE``
for write transactions so two writers never both hold a read lock and deadlock on the upgrade — the
"database is locked" failure (Prefect #10956). PostgreSQL needs none of this.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
PING_AFTER_IDLE_SECONDS = 10.0


def normalise_url(url: str) -> URL:
    """Accept the URLs operators write (``postgresql://…``) and pick the driver we ship (psycopg 3)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_store_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the state store at ``url``, configured for the dialect."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _configure_sqlite(engine)
        return engine
    engine = create_engine(parsed, **kwargs)
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """Check a pooled connection that sat idle for :data:`PING_AFTER_IDLE_SECONDS` before handing it out
    (a server restarted or a firewall that dropped it overnight), replacing it if it is dead.

    Like ``pool_pre_ping``, which pings on every checkout: a busy server reuses a connection within
    milliseconds, and that round trip (a ``SELECT 1`` the database runs too) cost each transaction of the
    points ledger a tenth of its time. A connection that breaks while busy fails the statement that finds
    out, and SQLAlchemy then replaces every connection the pool opened before it."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError(f"a pooled connection is dead: {error}") from error


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself, instead of pysqlite's implicit deferred BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


READING = "memberops.reading"  # marks sessions opened by Store.read


class Store:
    """The state store: one engine and the transactions opened on it.

    Faces (an HTTP request, a CLI command, a job) open exactly one transaction with :meth:`transaction`;
    services below them only ``flush()``.
    """

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.engine = create_store_engine(url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(sqlite_begin="DEFERRED", postgresql_readonly=True),
            expire_on_commit=False, info={READING: True},
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A reading transaction; on SQLite it takes no write lock, so it never waits for writers; on
        PostgreSQL it is ``READ ONLY``, so a write in it fails instead of happening.

        Objects read stay usable after the block (nothing is expired on its end).
        """
        with self._read_sessions() as session, session.begin():
            yield session

    @staticmethod
    def is_reading(session: Session) -> bool:
        """Whether ``session`` was opened by :meth:`read`."""
        return bool(session.info.get(READING))

    def dispose(self) -> None:
        self.engine.dispose()
