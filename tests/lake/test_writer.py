from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memberops.lake import writer
from memberops.lake.registry import records_to_arrow, table_spec
from tests.lake.factories import order, orders_table

ORDERS = table_spec("orders")


class TestAppend:
    def test_one_file_per_day_partition(self, tmp_path: Path) -> None:
        written = writer.append(tmp_path, ORDERS, orders_table([order(1), order(2, day_offset=1), order(3)]), "b1")
        assert sorted(w.path.relative_to(tmp_path).as_posix() for w in written) == [
            "orders/day=2026-03-01/b1.parquet", "orders/day=2026-03-02/b1.parquet",
        ]
        assert sum(w.rows for w in written) == 3
        assert all(w.is_new for w in written)

    def test_same_stem_again_writes_nothing(self, tmp_path: Path) -> None:
        table = orders_table([order(1), order(2)])
        writer.append(tmp_path, ORDERS, table, "b1")
        again = writer.append(tmp_path, ORDERS, table, "b1")
        assert [w.is_new for w in again] == [False]
        assert pq.read_table(again[0].path).num_rows == 2

    def test_rows_without_partition_time_are_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="ordered_at"):
            writer.append(tmp_path, ORDERS, orders_table([order(1, ordered_at=None)]), "b1")

    def test_unknown_field_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown fields"):
            orders_table([order(1, colour="red")])


class TestAtomicity:
    def test_a_crash_mid_write_leaves_no_visible_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def crash(*_args: object, **_kwargs: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(writer.pq, "write_table", crash)
        with pytest.raises(OSError):
            writer.append(tmp_path, ORDERS, orders_table([order(1)]), "b1")
        assert not writer.has_files(tmp_path, ORDERS)
        assert list((tmp_path / writer.TMP_DIR).iterdir()) == []

    def test_sweep_removes_only_old_orphans(self, tmp_path: Path) -> None:
        import os
        import time

        tmp = tmp_path / writer.TMP_DIR
        tmp.mkdir()
        old, fresh = tmp / "old.parquet", tmp / "fresh.parquet"
        old.write_bytes(b"x")
        fresh.write_bytes(b"x")
        an_hour_ago = time.time() - 7200
        os.utime(old, (an_hour_ago, an_hour_ago))
        assert writer.sweep_tmp(tmp_path) == 1
        assert not old.exists() and fresh.exists()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.decimals("0", "99999.99", places=2)), min_size=1, max_size=60))
def test_append_keeps_every_row_and_amount(tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[int, Decimal]]) -> None:
    lake = tmp_path_factory.mktemp("lake")
    records = [order(i, day_offset=d, paid=str(a)) for i, (d, a) in enumerate(rows)]
    written = writer.append(lake, ORDERS, records_to_arrow(ORDERS, records), "p")
    back = [r for w in written for r in pq.read_table(w.path).to_pylist()]
    assert sorted((r["order_id"], r["paid_amount"]) for r in back) == sorted(
        (r["order_id"], r["paid_amount"]) for r in records
    )
    assert len(written) == len({d for d, _ in rows})
