"""State store: SQLAlchemy 2 on SQLite (default) or PostgreSQL, migrated by Alembic."""
