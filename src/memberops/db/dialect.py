"""Every SQL difference between SQLite and PostgreSQL, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert


def insert_ignoring_conflicts(session: Session, table: Table, conflict_columns: Sequence[str]) -> Insert:
    """``INSERT … ON CONFLICT (cols) DO NOTHING`` for the session's dialect: the idempotent insert."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
    raise NotImplementedError(f"no idempotent insert for dialect {name}")


def upsert(
    session: Session, table: Table, conflict_columns: Sequence[str], update_columns: Sequence[str]
) -> Any:
    """``INSERT … ON CONFLICT (cols) DO UPDATE SET …`` for the session's dialect."""
    name = session.get_bind().dialect.name
    module: Any = postgresql if name == "postgresql" else sqlite if name == "sqlite" else None
    if module is None:
        raise NotImplementedError(f"no upsert for dialect {name}")
    statement = module.insert(table)
    return statement.on_conflict_do_update(
        index_elements=list(conflict_columns),
        set_={column: statement.excluded[column] for column in update_columns},
    )


def locked(statement: Select[Any]) -> Select[Any]:
    """Lock the selected rows until the transaction ends.

    PostgreSQL: ``SELECT … FOR UPDATE`` waits for other holders, so competing writers queue. SQLite has no
    row locks; the write transaction's ``BEGIN IMMEDIATE`` already serialises writers, and SQLAlchemy
    leaves ``FOR UPDATE`` out of SQLite's SQL.
    """
    return statement.with_for_update()


def locked_parent(statement: Select[Any]) -> Select[Any]:
    """Lock the selected rows without blocking inserts that refer to them, until the transaction ends.

    PostgreSQL: ``SELECT … FOR NO KEY UPDATE``. A row that other rows refer to (a member, whose orders a
    request has just inserted) carries ``FOR KEY SHARE`` locks from those inserts; ``FOR UPDATE`` would wait
    for them while the other request waits for this one (a deadlock), ``FOR NO KEY UPDATE`` does not.
    SQLite: as :func:`locked`.
    """
    return statement.with_for_update(key_share=True)


def utc_year_month(session: Session, column: Any) -> ColumnElement[str]:
    """``'YYYY-MM'`` of a UTC timestamp column, for grouping by month in the database."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)
