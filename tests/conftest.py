"""Fixtures shared by the whole suite.

Every test that takes ``context`` (or anything built on it) runs once per state store: SQLite always,
PostgreSQL when ``MEMBEROPS_TEST_DATABASE_URL`` is set. Every test that takes ``warehouse`` runs once per
engine: DuckDB always, PySpark when it is installed and a Java runtime is found. The store is built by
the Alembic migrations, never by ``create_all`` — once per run, into a template each test's database is
copied from; each test starts on a database equal to the template (SQLite: a copy of the file; PostgreSQL:
one copy per worker, emptied after each test).

`make test` runs the suite in parallel (pytest-xdist, one process per core): each worker builds its own
templates and PostgreSQL test database (unique names), servers bind port 0, and each worker uses a Redis
database of its own (below). Tests that share a module- or class-scoped fixture (a seeded server, a browser)
run on one worker, so that set-up is made once.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from memberops.accounts import service as accounts
from memberops.accounts.models import Workspace
from memberops.config import EngineKind, Settings
from memberops.db import migrate
from memberops.runtime import Context

if TYPE_CHECKING:
    import psycopg
    from playwright.sync_api import Browser, Page


def _worker_redis_url(url: str) -> str:
    """Under pytest-xdist, worker ``gwN`` uses the Redis database N below the one configured (15, 14, …), so a
    test that empties its database never empties another worker's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not url or not worker.startswith("gw"):
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(base - int(worker[2:])) % 16}"))


PG_URL = os.environ.get("MEMBEROPS_TEST_DATABASE_URL", "")
REDIS_URL = _worker_redis_url(os.environ.get("MEMBEROPS_TEST_REDIS_URL", ""))
if REDIS_URL:  # set back in the environment: test modules read the variable themselves
    os.environ["MEMBEROPS_TEST_REDIS_URL"] = REDIS_URL


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


def _admin_dsn() -> str:
    from sqlalchemy.engine import make_url

    return make_url(PG_URL).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def _database_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def _migrated(url: str) -> None:
    """Build the store at ``url`` by the Alembic migrations."""
    from memberops.db.engine import Store

    store = Store(url)
    try:
        migrate.upgrade(store)
    finally:
        store.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store built once per run by the migrations; each test gets a copy of the file."""
    path = tmp_path_factory.mktemp("template") / "memberops.db"
    _migrated(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A PostgreSQL database built once per run (per xdist worker) by the migrations; the worker's test
    database is created from it (``CREATE DATABASE … TEMPLATE``, a file copy instead of running every migration
    again) and made equal to it again after each test (``_WorkerDatabase``)."""
    import psycopg

    name = f"memberops_template_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        _migrated(_database_url(name))
        yield name
    finally:
        with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The schema as the catalog has it: a test that changes it (a migration test) gets the next test a new copy.
_SCHEMA_DIGEST = """
SELECT md5(coalesce(string_agg(c.relname || ':' || c.relkind::text || ':' || coalesce(a.attname, '') || ':'
                               || coalesce(format_type(a.atttypid, a.atttypmod), ''), ','
                               ORDER BY c.relname, a.attnum), '')
           || (SELECT coalesce(string_agg(conname, ',' ORDER BY conname), '') FROM pg_constraint
               WHERE connamespace = 'public'::regnamespace)
           || (SELECT coalesce(string_agg(version_num, ','), '') FROM alembic_version))
FROM pg_class c
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relnamespace = 'public'::regnamespace
"""


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    """The single value of a query that always answers one row."""
    row = conn.execute(query).fetchone()
    assert row is not None, query
    return row[0]


class _WorkerDatabase:
    """The worker's PostgreSQL test database: a copy of the template made once, emptied after each test.

    Copying a database (``CREATE DATABASE … TEMPLATE``) and dropping it costs seconds under load; emptying the
    few tables a test wrote costs milliseconds. After a test, other sessions on the database are ended, every
    table that has rows is emptied and every used sequence restarts, so the next test sees exactly the
    template. A test that changed the schema gets the database dropped and copied afresh. When the template
    holds rows (a migration that seeds data), each test gets a fresh copy instead.
    """

    def __init__(self, template: str) -> None:
        import psycopg

        self.template = template
        self.name: str | None = None
        with psycopg.connect(_database_url(template), autocommit=True) as conn:
            self.digest = _one(conn, _SCHEMA_DIGEST)
            self.tables = [row[0] for row in conn.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version' ORDER BY tablename")]
            seeded = " UNION ALL ".join(f"SELECT {t!r} FROM {t} HAVING count(*) > 0" for t in self.tables)
            self.reusable = not seeded or not conn.execute(seeded).fetchall()
            self.superuser = _one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")

    def checkout(self) -> str:
        import psycopg

        if self.name is None:
            self.name = f"memberops_test_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}" TEMPLATE "{self.template}"')
        return _database_url(self.name)

    def reset(self) -> None:
        """Make the database the template again (or drop it, to be copied afresh by the next test)."""
        import psycopg

        if self.name is None:
            return
        with psycopg.connect(_admin_dsn(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (self.name,))
        if self.reusable:
            with psycopg.connect(_database_url(self.name)) as conn:
                if _one(conn, _SCHEMA_DIGEST) == self.digest:
                    query = " UNION ALL ".join(f"SELECT {t!r} WHERE EXISTS (SELECT 1 FROM {t})" for t in self.tables)
                    written = [row[0] for row in conn.execute(query)] if query else []
                    if self.superuser:  # DELETE is quicker than TRUNCATE on a few rows; no foreign-key order
                        conn.execute("SET LOCAL session_replication_role = replica")
                        for table in written:
                            conn.execute(f"DELETE FROM {table}")
                    elif written:
                        conn.execute(f"TRUNCATE {', '.join(written)} CASCADE")
                    conn.execute("SELECT setval(format('%I.%I', schemaname, sequencename), 1, false) "
                                 "FROM pg_sequences WHERE schemaname = 'public' AND last_value IS NOT NULL")
                    conn.commit()
                    return
        self.drop()

    def drop(self) -> None:
        import psycopg

        if self.name is not None:
            with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.name = None


@pytest.fixture(scope="session")
def postgres_database(postgres_template: str) -> Iterator[_WorkerDatabase]:
    database = _WorkerDatabase(postgres_template)
    try:
        yield database
    finally:
        database.drop()


def _postgres_database(database: _WorkerDatabase) -> Iterator[str]:
    """A PostgreSQL database for one test, at the newest schema and empty; made the template again after."""
    try:
        yield database.checkout()
    finally:
        database.reset()


@pytest.fixture(params=STORES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own, already at the newest schema (a copy of the run's migrated template)."""
    if request.param == "sqlite":
        path = tmp_path / "memberops.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        yield from _postgres_database(request.getfixturevalue("postgres_database"))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, secret_key="test-secret-key")


@pytest.fixture
def context(settings: Settings) -> Iterator[Context]:
    """A context over the test's own database, which is a copy of the migrated template (no migration to run)."""
    context = Context.from_settings(settings)
    yield context
    context.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep on one xdist worker (``--dist loadgroup``) the tests of a module that share a module- or
    class-scoped fixture, so it is built once rather than once per worker."""
    for item in items:
        fixtureinfo = getattr(item, "_fixtureinfo", None)
        if fixtureinfo is None:
            continue
        shared = any(defs[-1].scope in ("module", "class", "package")
                     for defs in fixtureinfo.name2fixturedefs.values() if defs)
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.fixture
def workspace(context: Context) -> Workspace:
    with context.store.transaction() as session:
        return accounts.ensure_workspace(session, name="Test brand")


@pytest.fixture(params=ENGINES)
def engine_kind(request: pytest.FixtureRequest) -> EngineKind:
    return request.param


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


@pytest.fixture(scope="module", params=STORES)
def console_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The state store of a console served to a module's browser tests, once per store: "" for the SQLite
    file in its data dir, or a PostgreSQL database of its own (a copy of the migrated template), dropped
    after the module."""
    if request.param == "sqlite":
        yield ""
        return
    import psycopg

    template = request.getfixturevalue("postgres_template")
    name = f"memberops_console_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _database_url(name)
    finally:
        with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, started once for a module's browser tests (``tests/browser.py`` says how)."""
    from tests.browser import chromium

    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser, console_url: str) -> Iterator[Page]:
    """A fresh browser profile on the console that the test module serves at its ``console_url`` fixture;
    fails the test if the page loads anything off-site."""
    from tests.browser import open_page

    with open_page(browser, console_url) as page:
        yield page
