"""Every SQL difference between SQLite and PostgreSQL, in one place."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import ColumnElement, Select, Table, bindparam, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
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


def insert_many(session: Session, statement: Insert, columns: Mapping[str, Sequence[Any]],
                constants: Mapping[str, Any], *, chunk: int = 10_000) -> None:
    """Run the INSERT ``statement`` (its ``ON CONFLICT`` clause too, if any) once per row of ``columns``
    (equal-length value lists by column name) with ``constants``, the same for every row, at the
    driver's own speed.

    SQLAlchemy's executemany converts every row's every value through its column's type (a timestamp
    formatted anew for each row on SQLite) and builds a parameter dictionary per row: most of a bulk
    write's time. Here a constant is converted once, a varying column only if its type converts at all,
    and the rows go to the driver's ``executemany`` as tuples (SQLite ``?``) or dictionaries (psycopg
    ``%(name)s``). Every column with a Python-side default must be given (a ``ValueError`` says which):
    no default is filled in here.

    Examples:
        >>> insert_many(session, insert(Member), {"id": ["m1", "m2"]},  # doctest: +SKIP
        ...             {"workspace_id": "w1", "created_at": now, "updated_at": now, "is_enrolled": False})
    """
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise ValueError("insert_many: the columns differ in length")
    size = lengths.pop() if lengths else 0
    dialect = session.get_bind().dialect
    table = statement.table
    names = [*columns, *constants]
    # for_executemany: no RETURNING of the new ids (PostgreSQL's single-row form asks for them)
    compiled = statement.values({name: bindparam(name) for name in names}).compile(dialect=dialect,
                                                                                    for_executemany=True)
    missing = set(compiled.binds) - set(names)
    if missing:
        raise ValueError(f"insert_many needs a value for {sorted(missing)} (a column with a Python-side default)")
    order = list(compiled.positiontup or []) if compiled.positional else names

    def converted(name: str) -> Sequence[Any] | Any:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)  # type: ignore[attr-defined]
        if name in constants:
            value = constants[name]
            return process(value) if process is not None and value is not None else value
        values = columns[name]
        return values if process is None else [None if v is None else process(v) for v in values]

    prepared = {name: converted(name) for name in names}
    connection = session.connection()
    for start in range(0, size, chunk):
        stop = min(start + chunk, size)
        parts = [prepared[name][start:stop] if name in columns else itertools.repeat(prepared[name], stop - start)
                 for name in order]
        rows: list[Any] = list(zip(*parts, strict=True))
        if not compiled.positional:
            rows = [dict(zip(order, row, strict=True)) for row in rows]
        connection.exec_driver_sql(compiled.string, rows)


def reserve_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` new ids of ``table``'s autoincrement ``id``, ascending, for rows a bulk write refers to
    before they exist (a lot names its movement). PostgreSQL draws them from the column's sequence, so a
    writer inserting meanwhile gets others; SQLite hands out ``max(id) + 1`` on as a plain insert would
    (its writers are serialised by ``BEGIN IMMEDIATE``, so the ids stay this transaction's)."""
    if count <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        drawn = session.execute(text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
                                {"table": table.name, "n": count}).scalars().all()
        return sorted(int(value) for value in drawn)
    last = int(session.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one())
    return list(range(last + 1, last + 1 + count))


def writes_together(session: Session) -> bool:
    """Whether the session's database runs several writes as one statement (``INSERT``/``UPDATE`` inside
    ``WITH``, each seeing the others' ``RETURNING``): PostgreSQL does, in one round trip; SQLite does not,
    and runs them one by one (in-process, where a round trip costs nothing)."""
    return session.get_bind().dialect.name == "postgresql"


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


def create_temporary(session: Session, table: Table) -> Table:
    """Create ``table`` (declared with ``prefixes=["TEMPORARY"]`` on a MetaData of its own, never the models')
    on the session's connection: ``CREATE TEMPORARY TABLE``, seen by this connection only, on both
    dialects. The caller drops it (:func:`drop_temporary`) before the transaction ends; on a rollback
    PostgreSQL and SQLite both undo the creation with the transaction."""
    table.create(session.connection())
    return table


def drop_temporary(session: Session, table: Table) -> None:
    table.drop(session.connection())


def _copy_text(values: pa.Array) -> pa.Array:
    """Strings escaped for ``COPY … FROM STDIN``'s text format (a backslash, tab, newline or return)."""
    data = values.buffers()[2]
    # a search of the raw bytes is much cheaper than rewriting every value; most text holds none of them
    raw = np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8)
    for char, escaped in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
        if (raw == ord(char)).any():
            values = pc.replace_substring(values, char, escaped)
    return values


def copy_rows(session: Session, table: Table, columns: Mapping[str, pa.Array], constants: Mapping[str, Any],
              *, chunk: int = 100_000) -> None:
    """Insert one row per element of ``columns`` (equal-length Arrow string arrays without nulls, each value
    the text its column's type reads: a JSON column's document as JSON text) with ``constants`` (strings or
    timestamps, the same for every row), in the session's transaction, at the store's bulk-load speed.

    PostgreSQL: ``COPY … FROM STDIN`` (psycopg 3 ``cursor.copy``) on the session's own connection, the rows
    formatted by Arrow a chunk at a time, so a failure rolls back with the rest of the transaction. SQLite:
    one prepared ``INSERT`` run by the driver's ``executemany`` over tuples. No ``ON CONFLICT``: the caller
    has removed the rows these would collide with. Every column with a default must be given.

    Examples:
        >>> copy_rows(session, MemberTrait.__table__,  # doctest: +SKIP
        ...           {"member_id": ids, "traits": documents, "tags": tag_lists}, {"workspace_id": "w1", "computed_at": now})
    """
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise ValueError("copy_rows: the columns differ in length")
    size = lengths.pop() if lengths else 0
    if not size:
        return
    names = [*columns, *constants]
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        fixed = {name: _copy_text(pa.array([value.isoformat() if isinstance(value, datetime) else str(value)]))[0]
                 for name, value in constants.items()}
        escaped = {name: _copy_text(values) for name, values in columns.items()}
        statement = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
        driver = session.connection().connection.driver_connection
        assert driver is not None  # a checked-out connection always has its driver's
        try:
            with driver.cursor() as cursor, cursor.copy(statement) as copy:
                for start in range(0, size, chunk):
                    parts = [escaped[name].slice(start, chunk) if name in escaped else fixed[name] for name in names]
                    lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*parts, "\t"), "\n", "")
                    # a string array's values lie end to end in its data buffer: the chunk is that buffer's span
                    offsets = np.frombuffer(lines.buffers()[1], np.int32, len(lines) + 1, lines.offset * 4)
                    copy.write(memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]])
        except dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy raises it for any other statement
            raise DBAPIError.instance(statement, None, exc, dialect.loaded_dbapi.Error) from exc
        return
    compiled = insert(table).values({name: bindparam(name) for name in names}).compile(dialect=dialect)
    order = list(compiled.positiontup or [])

    def constant(name: str) -> Any:
        value = constants[name]
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)  # type: ignore[attr-defined]
        return process(value) if process is not None and value is not None else value

    connection = session.connection()
    for start in range(0, size, chunk):
        stop = min(start + chunk, size)
        parts = [columns[name].slice(start, stop - start).to_pylist() if name in columns
                 else itertools.repeat(constant(name), stop - start) for name in order]
        connection.exec_driver_sql(compiled.string, list(zip(*parts, strict=False)))
