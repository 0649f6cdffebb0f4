"""Fixtures shared by the whole suite.

Every test that takes ``context`` (or anything built on it) runs once per state store: SQLite always,
PostgreSQL when ``MEMBEROPS_TEST_DATABASE_URL`` is set. Every test that takes ``warehouse`` runs once per
engine: DuckDB always, PySpark when it is installed and a Java runtime is found. The store is built by
the Alembic migrations, never by ``create_all``; each test gets a database of its own.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from memberops.accounts import service as accounts
from memberops.accounts.models import Workspace
from memberops.config import EngineKind, Settings
from memberops.db import migrate
from memberops.runtime import Context

PG_URL = os.environ.get("MEMBEROPS_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("MEMBEROPS_TEST_REDIS_URL", "")


def _spark_missing() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "PySpark is not installed (pip install 'memberops[spark]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime for PySpark"
    return None


SPARK_MISSING = _spark_missing()

STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql", id="postgresql",
        marks=[pytest.mark.postgres, pytest.mark.skipif(not PG_URL, reason="MEMBEROPS_TEST_DATABASE_URL is not set")],
    ),
]
ENGINES = [
    pytest.param(EngineKind.duckdb, id="duckdb"),
    pytest.param(EngineKind.pyspark, id="pyspark",
                 marks=[pytest.mark.spark, pytest.mark.skipif(SPARK_MISSING is not None, reason=SPARK_MISSING or "")]),
]


def _postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    name = f"memberops_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=STORES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'memberops.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, secret_key="test-secret-key")


@pytest.fixture
def context(settings: Settings) -> Iterator[Context]:
    context = Context.from_settings(settings)
    migrate.upgrade(context.store)
    yield context
    context.close()


@pytest.fixture
def workspace(context: Context) -> Workspace:
    with context.store.transaction() as session:
        return accounts.ensure_workspace(session, name="Test brand")


@pytest.fixture(params=ENGINES)
def engine_kind(request: pytest.FixtureRequest) -> EngineKind:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def lake_settings(tmp_path: Path, engine_kind: EngineKind) -> Settings:
    """Settings on SQLite with the parametrised engine: for tests about the lake and the warehouse."""
    return Settings(data_dir=tmp_path / "data", engine=engine_kind, spark_master="local[1]", secret_key="x")


@pytest.fixture
def warehouse(lake_settings: Settings) -> Iterator[object]:
    from memberops.lake.engine import connect_warehouse

    warehouse = connect_warehouse(lake_settings)
    yield warehouse
    warehouse.close()
