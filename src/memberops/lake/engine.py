"""The warehouse engine: one Ibis connection with every lake table visible, on DuckDB or PySpark.

This is the only place that knows which engine runs. Queries are Ibis expressions written once; the
engine hooks below (``_register`` / ``_register_empty``) are all that differs. An engine error is
re-raised as :class:`WarehouseError` carrying the SQL that failed.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import pyarrow as pa
from ibis.expr.types import Expr, IntegerValue, Table, TimestampValue

from memberops.config import EngineKind, Settings
from memberops.errors import DomainError
from memberops.lake.registry import PARTITION_COLUMN, TABLES, TableSpec, table_spec
from memberops.lake.writer import has_files, table_glob

SECONDS_PER_DAY = 86_400


class WarehouseError(DomainError):
    code = "warehouse_error"

    def __init__(self, message: str, sql: str) -> None:
        super().__init__(f"{message}\n-- while running:\n{sql}", sql=sql)
        self.sql = sql


class Warehouse(ABC):
    """An Ibis backend over the lake. Thread-safe: one query runs at a time per warehouse."""

    kind: EngineKind
    # DuckDB expands a view's file glob at every query; Spark lists files once, when the view is made.
    lists_files_once: bool = False

    def __init__(self, lake: Path) -> None:
        self.lake = lake
        self._lock = threading.RLock()
        self._registered: dict[str, bool] = {}  # table name -> had files when registered
        self._tables: dict[str, Table] = {}  # Ibis expressions, valid until the table is registered again

    @property
    @abstractmethod
    def con(self) -> Any:
        """The Ibis backend."""

    @abstractmethod
    def _register(self, spec: TableSpec, glob: str) -> None:
        """Make ``spec.name`` a view over the Parquet files matching ``glob`` (hive partition ``day``)."""

    @abstractmethod
    def _register_empty(self, spec: TableSpec) -> None:
        """Make ``spec.name`` an empty table of ``spec.read_schema`` (no file written yet)."""

    def refresh(self, name: str | None = None) -> None:
        """(Re)register lake tables whose files appeared since they were last registered.

        A file the engine cannot read (truncated, not Parquet) raises :class:`WarehouseError`.
        """
        with self._lock:
            for spec in [table_spec(name)] if name else TABLES.values():
                present = has_files(self.lake, spec)
                unchanged = self._registered.get(spec.name) is present
                if unchanged and not (present and self.lists_files_once):
                    continue
                glob = table_glob(self.lake, spec)
                self._tables.pop(spec.name, None)
                self._registered.pop(spec.name, None)
                try:
                    if present:
                        self._register(spec, glob)
                    else:
                        self._register_empty(spec)
                except Exception as exc:  # every engine's error type differs
                    raise WarehouseError(f"cannot read lake table {spec.name}: {exc}",
                                         f"-- registering {spec.name} over {glob}") from exc
                self._registered[spec.name] = present

    def table(self, name: str) -> Table:
        """The lake table ``name`` as an Ibis table, including its ``day`` partition column.

        The expression is kept until :meth:`refresh` registers the table again (new files on an engine that
        lists files once, or the first file of an empty table): building it reads the view's schema.
        """
        with self._lock:
            self.refresh(name)
            cached = self._tables.get(name)
            if cached is None:
                cached = self._tables[name] = self.con.table(name)
            return cached

    def to_pyarrow(self, expr: Expr) -> pa.Table:
        with self._lock:
            try:
                return expr.to_pyarrow()
            except Exception as exc:  # every engine's error type differs; keep the SQL with it
                raise WarehouseError(str(exc), self._sql(expr)) from exc

    def execute(self, expr: Expr) -> Any:
        """Run ``expr``: a scalar for a scalar expression, a pandas object otherwise."""
        with self._lock:
            try:
                return expr.execute()
            except Exception as exc:
                raise WarehouseError(str(exc), self._sql(expr)) from exc

    def upload(self, table: pa.Table) -> Table:
        """``table`` (Arrow) as a table of this engine, usable in any later query or :meth:`materialise`.

        An Ibis memtable belongs to no engine until a query of this engine runs it; Spark registers it only
        then, so a cached query built on an unregistered one would not find it. Registering it here avoids that.
        """
        expr = ibis.memtable(table)
        with self._lock:
            try:
                self.con.execute(expr.count())
            except Exception as exc:
                raise WarehouseError(str(exc), self._sql(expr)) from exc
        return expr

    def materialise(self, expr: Table) -> Table:
        """Compute ``expr`` once and keep it for the session (DuckDB: a temp table; Spark: a cached frame).

        Iterative algorithms materialise each step so the next one does not recompute the whole history.
        """
        with self._lock:
            try:
                return expr.cache()
            except Exception as exc:
                raise WarehouseError(str(exc), self._sql(expr)) from exc

    def numbered(self, expr: Table, column: str) -> Table:
        """``expr`` materialised with a unique int64 ``column`` (0, 1, 2 …; no order promised).

        A global ``row_number()`` sorts the whole table on one thread; engines number rows more cheaply.
        """
        materialised = self.materialise(expr)
        return self.materialise(materialised.mutate(**{column: ibis.row_number().over().cast("int64")}))

    def count(self, name: str) -> int:
        return int(self.execute(self.table(name).count()))

    def epoch_day(self, moment: TimestampValue) -> IntegerValue:
        """The UTC day number (days since 1970-01-01) of each instant of a time zone aware ``moment`` column."""
        return (moment.epoch_seconds().cast("int64") // SECONDS_PER_DAY).cast("int64")

    def _sql(self, expr: Expr) -> str:
        try:
            return str(ibis.to_sql(expr, dialect=self.con.name))
        except Exception:  # noqa: BLE001 - the SQL is a diagnostic; never mask the real error
            return "(SQL unavailable)"

    def close(self) -> None:  # noqa: B027 - engines with nothing to release keep this default
        """Release the engine's resources."""


class DuckDBWarehouse(Warehouse):
    kind = EngineKind.duckdb

    def __init__(self, lake: Path, database: str = ":memory:") -> None:
        super().__init__(lake)
        self._con = ibis.duckdb.connect(database)
        # Keep each Parquet file's footer (schema, row-group statistics) in memory between queries: lake
        # files are immutable (written once, replaced only by compaction under a new name).
        self._con.raw_sql("SET parquet_metadata_cache = true")

    @property
    def con(self) -> Any:
        return self._con

    def _drop(self, name: str) -> None:
        kind = self._con.raw_sql(
            "SELECT table_type FROM information_schema.tables WHERE table_name = ?", parameters=[name]
        ).fetchone()
        if kind:
            self._con.raw_sql(f'DROP {"VIEW" if kind[0] == "VIEW" else "TABLE"} "{name}"')

    def _register(self, spec: TableSpec, glob: str) -> None:
        self._drop(spec.name)
        columns = ", ".join(f'"{n}"' for n in spec.read_schema.names)
        options = "hive_partitioning = false" if spec.derived else (
            f"hive_partitioning = true, hive_types = {{'{PARTITION_COLUMN}': DATE}}")
        if self._older_files(spec, glob):
            options += ", union_by_name = true"
        # Names come from the registry, the glob from our own lake path (quoted): no outside input here.
        self._con.raw_sql(
            f'CREATE VIEW "{spec.name}" AS SELECT {columns} FROM read_parquet('  # noqa: S608
            f"'{_sql_literal(glob)}', {options})"
        )

    def _older_files(self, spec: TableSpec, glob: str) -> bool:
        """Whether a file lacks one of the registry's columns (written before the schema grew).

        The writer writes ``spec.schema``, so files agree and the view reads them by the first file's
        schema; ``union_by_name`` (which reads every file's schema at every query, and fills a missing
        column with nulls) is only paid for while such an older file is in the lake. One pass over the
        footers, which the metadata cache keeps for the queries after.
        """
        names = ", ".join(f"'{_sql_literal(n)}'" for n in spec.schema.names)
        older = self._con.raw_sql(
            f"SELECT file_name FROM parquet_schema('{_sql_literal(glob)}') "  # noqa: S608
            f"GROUP BY file_name HAVING count(*) FILTER (WHERE name IN ({names})) < {len(spec.schema.names)} "
            "LIMIT 1"
        ).fetchone()
        return older is not None

    def _register_empty(self, spec: TableSpec) -> None:
        self._drop(spec.name)
        self._con.create_table(spec.name, schema=ibis.Schema.from_pyarrow(spec.read_schema), temp=True)

    def epoch_day(self, moment: TimestampValue) -> IntegerValue:
        """From the instant's microseconds: Ibis's ``epoch_seconds`` casts the instant to a local TIMESTAMP
        first (a time zone conversion per row, ~5× the cost, and the session's zone rather than UTC)."""
        # to the nearest second first, as epoch_seconds does here and on Spark
        return ((_epoch_us(moment) + 500_000) // (SECONDS_PER_DAY * 1_000_000)).cast("int64")

    def numbered(self, expr: Table, column: str) -> Table:
        """A materialised table's ``rowid`` numbers its rows at no cost: the column reads it, so the rows are
        not copied into a second table (the temp table is never modified, so its row ids stay put)."""
        materialised = self.materialise(expr)
        return materialised.mutate(**{column: materialised.rowid().cast("int64")})

    def close(self) -> None:
        # Cached (materialised) tables are temp tables: they go with the connection. Detach Ibis's
        # finalizers first, or each would try to drop its table later on a closed connection.
        for entry in list(self._con._cache_name_to_entry.values()):
            entry.finalizer.detach()
        self._con._cache_name_to_entry.clear()
        self._con._cache_op_to_entry.clear()
        self._con.disconnect()


class SparkWarehouse(Warehouse):
    kind = EngineKind.pyspark
    lists_files_once = True

    def __init__(self, lake: Path, master: str = "local[2]") -> None:
        super().__init__(lake)
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise DomainError(
                "ENGINE=pyspark needs PySpark: pip install 'memberops[spark]' (and a Java 17+ runtime)"
            ) from exc
        self.session = (
            SparkSession.builder.master(master)
            .appName("memberops")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.driver.memory", "2g")
            .getOrCreate()
        )
        self._con = ibis.pyspark.connect(self.session)

    @property
    def con(self) -> Any:
        return self._con

    def _register(self, spec: TableSpec, glob: str) -> None:
        reader = self.session.read.schema(spark_schema(spec.read_schema))
        if not spec.derived:
            reader = reader.option("basePath", str(self.lake / spec.name))
        frame = reader.parquet(str(Path(glob).parent))
        frame.createOrReplaceTempView(spec.name)

    def _register_empty(self, spec: TableSpec) -> None:
        self.session.createDataFrame([], spark_schema(spec.read_schema)).createOrReplaceTempView(spec.name)


def spark_schema(schema: pa.Schema) -> Any:
    """The Spark ``StructType`` of an Arrow schema (the lake's types only)."""
    from pyspark.sql import types as T

    def convert(type_: pa.DataType) -> Any:
        if pa.types.is_string(type_):
            return T.StringType()
        if pa.types.is_int64(type_):
            return T.LongType()
        if pa.types.is_int32(type_):
            return T.IntegerType()
        if pa.types.is_boolean(type_):
            return T.BooleanType()
        if pa.types.is_floating(type_):
            return T.DoubleType()
        if pa.types.is_decimal(type_):
            return T.DecimalType(type_.precision, type_.scale)
        if pa.types.is_timestamp(type_):
            return T.TimestampType()
        if pa.types.is_date(type_):
            return T.DateType()
        if pa.types.is_list(type_):
            return T.ArrayType(convert(type_.value_type))
        raise TypeError(f"no Spark type for {type_}")

    return T.StructType([T.StructField(f.name, convert(f.type), f.nullable) for f in schema])


@ibis.udf.scalar.builtin(name="epoch_us")
def _epoch_us(moment: dt.Timestamp(timezone="UTC")) -> dt.int64:  # type: ignore[valid-type, empty-body]
    """DuckDB's microseconds since 1970-01-01 UTC of an instant."""


def _sql_literal(text: str) -> str:
    return text.replace("'", "''")


def connect_warehouse(settings: Settings) -> Warehouse:
    """The warehouse for ``settings``: DuckDB in-process by default, PySpark when ``engine=pyspark``."""
    settings.lake_path.mkdir(parents=True, exist_ok=True)
    warehouse: Warehouse
    if settings.engine == EngineKind.pyspark:
        warehouse = SparkWarehouse(settings.lake_path, settings.spark_master)
    else:
        warehouse = DuckDBWarehouse(settings.lake_path)
    warehouse.refresh()
    return warehouse
