"""The warehouse on every engine: the same expressions, the same answers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from memberops.lake import writer
from memberops.lake.engine import DuckDBWarehouse, Warehouse, WarehouseError
from memberops.lake.registry import TABLES, table_spec
from tests.lake.factories import order, orders_table


class TestEmptyLake:
    def test_every_table_is_visible_and_empty(self, warehouse: Warehouse) -> None:
        for name, spec in TABLES.items():
            table = warehouse.table(name)
            assert set(spec.read_schema.names) <= set(table.columns)
            assert warehouse.count(name) == 0


class TestQueries:
    def test_counts_and_sums_agree_with_what_was_written(self, warehouse: Warehouse) -> None:
        records = [order(i, day_offset=i % 3, channel="jd" if i % 2 else "tmall", paid=f"{i}.50") for i in range(10)]
        writer.append(warehouse.lake, table_spec("orders"), orders_table(records), "b1")
        orders = warehouse.table("orders")
        per_channel = warehouse.to_pyarrow(
            orders.group_by("channel").aggregate(n=orders.count(), paid=orders.paid_amount.sum()).order_by("channel")
        ).to_pylist()
        assert per_channel == [
            {"channel": "jd", "n": 5, "paid": Decimal("27.50")},
            {"channel": "tmall", "n": 5, "paid": Decimal("22.50")},
        ]

    def test_day_partition_column_is_a_date(self, warehouse: Warehouse) -> None:
        writer.append(warehouse.lake, table_spec("orders"), orders_table([order(1, day_offset=2)]), "b1")
        days = warehouse.to_pyarrow(warehouse.table("orders").select("day")).column("day").to_pylist()
        assert [d.isoformat() for d in days] == ["2026-03-03"]

    def test_new_files_are_seen_without_reconnecting(self, warehouse: Warehouse) -> None:
        assert warehouse.count("orders") == 0
        writer.append(warehouse.lake, table_spec("orders"), orders_table([order(1)]), "b1")
        assert warehouse.count("orders") == 1
        writer.append(warehouse.lake, table_spec("orders"), orders_table([order(2, day_offset=5)]), "b2")
        assert warehouse.count("orders") == 2

    def test_engine_errors_carry_the_sql(self, warehouse: Warehouse) -> None:
        import shutil

        writer.append(warehouse.lake, table_spec("orders"), orders_table([order(1)]), "b1")
        count = warehouse.table("orders").count()
        shutil.rmtree(warehouse.lake / "orders")  # the files vanish under a registered table
        with pytest.raises(WarehouseError) as raised:
            warehouse.execute(count)
        assert "SELECT" in raised.value.sql.upper()
        assert raised.value.code == "warehouse_error"


class TestEpochDay:
    MOMENTS = [datetime(1970, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
               datetime(2026, 6, 30, 20, 0, tzinfo=UTC), datetime(2026, 6, 30, 23, 59, 59, 700_000, tzinfo=UTC),
               datetime(2026, 7, 1, tzinfo=UTC)]

    def _days(self, warehouse: Warehouse) -> list[int]:
        moments = warehouse.upload(pa.table({"at": pa.array(self.MOMENTS, pa.timestamp("us", tz="UTC"))}))
        return warehouse.to_pyarrow(moments.select(day=warehouse.epoch_day(moments.at))).column("day").to_pylist()

    def test_the_utc_day_of_each_instant(self, warehouse: Warehouse) -> None:
        # instants count to the nearest second on every engine: the last half second goes to the next day
        assert self._days(warehouse) == [0, -1, 20634, 20635, 20635]

    def test_the_session_time_zone_does_not_move_a_day(self, tmp_path: Path) -> None:
        warehouse = DuckDBWarehouse(tmp_path)
        try:
            warehouse.con.raw_sql("SET TimeZone = 'Asia/Shanghai'")  # 20:00 UTC is the next day there
            assert self._days(warehouse) == [0, -1, 20634, 20635, 20635]
        finally:
            warehouse.close()


class TestRefresh:
    def test_an_unreadable_file_is_a_warehouse_error(self, warehouse: Warehouse) -> None:
        writer.append(warehouse.lake, table_spec("orders"), orders_table([order(1)]), "b1")
        partition = next((warehouse.lake / "orders").glob("day=*"))
        (partition / "broken.parquet").write_bytes(b"not parquet at all")
        with pytest.raises(WarehouseError) as raised:
            warehouse.table("orders")
            warehouse.count("orders")
        assert raised.value.code == "warehouse_error"

    def test_the_table_expression_is_reused_until_the_table_changes(self, warehouse: Warehouse) -> None:
        first = warehouse.table("orders")
        assert warehouse.table("orders") is first or warehouse.lists_files_once
        writer.append(warehouse.lake, table_spec("orders"), orders_table([order(1)]), "b1")
        assert warehouse.count("orders") == 1
