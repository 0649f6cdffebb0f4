"""Lake compaction: fewer files, the same rows, safe for readers and for outbox re-exports."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from memberops.accounts.models import Workspace
from memberops.lake import writer
from memberops.lake.compact import compact, compact_lake
from memberops.lake.engine import Warehouse
from memberops.lake.export import export_outbox
from memberops.lake.registry import table_spec
from memberops.runtime import Context
from tests.lake.factories import order, orders_table
from tests.lake.test_export import _emit_events, _lake_event_ids

ORDERS = table_spec("orders")


def _all_exported(batches: set[str]) -> set[str]:
    return set(batches)


def _none_exported(batches: set[str]) -> set[str]:
    return set()


def _files(lake: Path) -> list[Path]:
    return sorted((lake / "orders").glob("day=*/*.parquet"))


def _order_ids(warehouse: Warehouse) -> list[str]:
    table = warehouse.table("orders")
    return sorted(warehouse.to_pyarrow(table.select("order_id")).column("order_id").to_pylist())


def _load(lake: Path, batches: int, per_batch: int = 3, prefix: str = "import-") -> list[str]:
    ids = []
    for b in range(batches):
        records = [order(b * 100 + i, day_offset=i % 2) for i in range(per_batch)]
        writer.append(lake, ORDERS, orders_table(records), f"{prefix}{b}")
        ids += [r["order_id"] for r in records]
    return sorted(ids)


class TestCompact:
    def test_each_partition_becomes_one_file_with_the_same_rows(self, warehouse: Warehouse) -> None:
        ids = _load(warehouse.lake, batches=4)
        assert len(_files(warehouse.lake)) == 8
        assert _order_ids(warehouse) == ids

        result = compact(warehouse.lake, _all_exported)

        assert (result.partitions, result.files_merged, result.files_written, result.rows) == (2, 8, 2, 12)
        assert len(_files(warehouse.lake)) == 2
        assert _order_ids(warehouse) == ids
        assert not list((warehouse.lake / writer.TMP_DIR).iterdir())

    def test_running_again_changes_nothing(self, warehouse: Warehouse) -> None:
        ids = _load(warehouse.lake, batches=3)
        compact(warehouse.lake, _all_exported)
        files = _files(warehouse.lake)
        again = compact(warehouse.lake, _all_exported)
        assert again.partitions == 0
        assert _files(warehouse.lake) == files
        assert _order_ids(warehouse) == ids

    def test_files_of_batches_not_yet_exported_stay_as_they_are(self, warehouse: Warehouse) -> None:
        _load(warehouse.lake, batches=1, per_batch=1, prefix="outbox-")
        _load(warehouse.lake, batches=2, per_batch=1)
        compact(warehouse.lake, _none_exported)
        names = sorted(f.name for f in _files(warehouse.lake))
        assert "outbox-0.parquet" in names
        assert len(names) == 2  # the two import files merged, the pending batch's file kept

    def test_a_reexport_of_a_compacted_batch_writes_nothing(self, warehouse: Warehouse) -> None:
        records = [order(i) for i in range(3)]
        writer.append(warehouse.lake, ORDERS, orders_table(records), "outbox-b1")
        writer.append(warehouse.lake, ORDERS, orders_table([order(9)]), "outbox-b2")
        compact(warehouse.lake, _all_exported)
        assert not any(f.name.startswith("outbox-") for f in _files(warehouse.lake))

        written = writer.append(warehouse.lake, ORDERS, orders_table(records), "outbox-b1")

        assert [w.is_new for w in written] == [False]
        assert warehouse.count("orders") == 4

    def test_a_file_written_under_an_older_schema_is_read_and_merged(self, warehouse: Warehouse) -> None:
        _load(warehouse.lake, batches=1, per_batch=1)
        older = orders_table([order(7)]).drop_columns(["store_id"])  # as written before store_id existed
        pq.write_table(older, _files(warehouse.lake)[0].parent / "import-old.parquet")
        rows = warehouse.to_pyarrow(warehouse.table("orders").select("order_id", "store_id")).to_pylist()
        assert {"order_id": "o7", "store_id": None} in rows

        compact(warehouse.lake, _all_exported)

        merged = pq.read_table(_files(warehouse.lake)[0])
        assert merged.schema.names == ORDERS.schema.names
        assert merged.num_rows == 2

    def test_a_reader_never_sees_a_row_twice_or_misses_one(self, warehouse: Warehouse) -> None:
        ids = _load(warehouse.lake, batches=30, per_batch=2)
        counts: list[int] = []
        failures: list[Exception] = []
        stop = threading.Event()

        def read() -> None:
            glob = writer.table_glob(warehouse.lake, ORDERS)
            while not stop.is_set():
                try:
                    counts.append(pa.concat_tables(
                        [pq.read_table(p, columns=["order_id"]) for p in sorted(Path("/").glob(glob[1:]))]).num_rows)
                except FileNotFoundError as exc:  # listed before the swap, opened after: retried, never wrong
                    failures.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        for _ in range(5):
            compact(warehouse.lake, _all_exported)
            _load(warehouse.lake, batches=1, per_batch=2, prefix="import-more-")
        stop.set()
        reader.join()
        assert counts
        # Each round adds 2 rows (one file per day, each seen whole or not at all); a partition read twice
        # would add its 30 rows or more, one missed would take them away.
        assert all(len(ids) <= count <= len(ids) + 10 for count in counts), sorted(set(counts))


class TestWithTheOutbox:
    def test_only_exported_batches_are_merged_and_a_crashed_batch_finishes_exactly_once(
        self, context: Context, workspace: Workspace
    ) -> None:
        lake = context.settings.lake_path
        for first in (0, 5):
            _emit_events(context, workspace, first, 5)
            export_outbox(context.store, lake)

        def crash(stage: str, batch_id: str) -> None:
            if stage == "written":
                raise RuntimeError("crash after writing, before marking")

        _emit_events(context, workspace, 10, 5)
        with pytest.raises(RuntimeError):
            export_outbox(context.store, lake, on_stage=crash)
        result = compact_lake(context.store, lake, ["events"])
        names = [f.name for f in (lake / "events").glob("day=*/*.parquet")]
        assert result.files_merged == 2  # the two exported batches; the unmarked one is kept by name
        assert sum(name.startswith("outbox-") for name in names) == 1

        export_outbox(context.store, lake)  # finishes the crashed batch
        compact_lake(context.store, lake, ["events"])
        export_outbox(context.store, lake)

        assert sorted(_lake_event_ids(context), key=lambda e: int(e[1:])) == [f"e{n}" for n in range(15)]
        assert len(list((lake / "events").glob("day=*/*.parquet"))) == 1

    def test_a_derived_or_unknown_table_is_refused(self, context: Context) -> None:
        from memberops.errors import Invalid
        from memberops.lake.registry import UnknownLakeTable

        with pytest.raises(Invalid):
            compact_lake(context.store, context.settings.lake_path, ["identity_map"])
        with pytest.raises(UnknownLakeTable):
            compact_lake(context.store, context.settings.lake_path, ["nope"])
