from __future__ import annotations

from sqlalchemy import inspect

from memberops.db import migrate
from memberops.db.models import Base
from memberops.runtime import Context


class TestMigrations:
    def test_single_head(self) -> None:
        assert migrate.head_revision()

    def test_upgrade_builds_every_model_table(self, context: Context) -> None:
        tables = set(inspect(context.store.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert migrate.current_revision(context.store) == migrate.head_revision()

    def test_upgrade_twice_is_a_no_op(self, context: Context) -> None:
        assert migrate.upgrade(context.store) == migrate.head_revision()

    def test_models_and_migrations_agree(self, context: Context) -> None:
        """A model change without its migration shows here as a non-empty autogenerate diff."""
        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        with context.store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
        assert diff == []
