"""Batch import: presets and mapping files, validation, quarantine, idempotency, encodings, formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.ingest.batch import import_file, retry_quarantine
from memberops.ingest.mapping import InvalidMapping
from memberops.ingest.models import QuarantinedRow
from memberops.ingest.quarantine import export_rows, list_imports
from memberops.runtime import Context

ORDERS_CSV = """order_id,customer_key,ordered_at,paid_amount,status,coupon_codes,colour
o1,c1,2026-01-02 10:00:00,100.50,paid,"A,B",red
o2,c2,2026-01-03T10:00:00+08:00,"1,200.00",completed,,red
o3,c3,not a date,50,paid,,red
o4,,2026-01-03 10:00:00,50,paid,,red
o5,c5,2026-01-03 10:00:00,-5,paid,,red
o1,c1,2026-01-02 10:00:00,100.50,paid,,red
o6,c6,2026-01-04 10:00:00,abc,paid,,red
o7,c7,2026-01-04 10:00:00,7,paid,,red,one too many
o8,c8,1970-01-01 00:00:00,9,paid,,red
"""


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _lake(context: Context, table: str, *columns: str) -> list[dict[str, Any]]:
    warehouse = context.warehouse()
    expr = warehouse.table(table)
    return warehouse.to_pyarrow(expr.select(*columns).order_by(columns[0])).to_pylist()


class TestBrokenRows:
    def test_good_rows_in_bad_rows_quarantined_with_reasons(
        self, context: Context, workspace: Workspace, tmp_path: Path
    ) -> None:
        summary = import_file(context, workspace, kind_name="orders", path=_write(tmp_path / "o.csv", ORDERS_CSV),
                              channel="shop")
        assert (summary.read, summary.accepted, summary.quarantined, summary.duplicates_in_file) == (9, 2, 6, 1)
        assert summary.quarantined_by_reason == {
            "invalid ordered_at": 2, "invalid paid_amount": 1, "missing customer_key": 1,
            "negative paid_amount": 1, "unreadable line: too many columns": 1,
        }
        assert summary.unknown_columns == ["colour"]
        rows = _lake(context, "orders", "order_id", "paid_amount", "coupon_codes")
        assert [(r["order_id"], str(r["paid_amount"]), r["coupon_codes"]) for r in rows] == [
            ("o1", "100.50", ["A", "B"]), ("o2", "1200.00", None)]
        with context.store.read() as session:
            stored = session.scalars(select(QuarantinedRow).order_by(QuarantinedRow.row_number)).all()
        assert [r.raw.get("order_id") for r in stored if "order_id" in r.raw] == ["o3", "o4", "o5", "o6", "o8"]
        assert stored[-1].raw == {"line": "o7,c7,2026-01-04 10:00:00,7,paid,,red,one too many"}

    def test_naive_times_are_read_in_the_mapping_time_zone(
        self, context: Context, workspace: Workspace, tmp_path: Path
    ) -> None:
        import_file(context, workspace, kind_name="orders", path=_write(tmp_path / "o.csv", ORDERS_CSV), channel="shop")
        times = {r["order_id"]: r["ordered_at"].isoformat() for r in _lake(context, "orders", "order_id", "ordered_at")}
        assert times == {"o1": "2026-01-02T02:00:00+00:00", "o2": "2026-01-03T02:00:00+00:00"}

    def test_wrong_encoding_bytes_are_quarantined(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        path = tmp_path / "bad-bytes.csv"
        path.write_bytes(b"order_id,customer_key,ordered_at,paid_amount\n"
                         b"o1,c1,2026-01-02 10:00:00,1\no2,\xff\xfe\xfa,2026-01-02 10:00:00,1\n")
        summary = import_file(context, workspace, kind_name="orders", path=path, channel="shop")
        assert summary.accepted == 1
        assert summary.quarantined == 1


class TestCustomers:
    CSV = """rec_id,given_name,surname,date_of_birth,mail,mobile,sex
r1,Ana,Li,19900315,ANA@Example.com ,138 0013 8000,F
r2,Bo,Wu,19901345,not-an-email,12,男
r3,Cy,Xu,,,,
,No,Id,19900101,,,
"""
    MAPPING = """columns: {source_id: rec_id, first_name: given_name, last_name: surname, birthday: date_of_birth,
          email: mail, phone: mobile, gender: sex}
formats: {birthday: "%Y%m%d"}
"""

    def test_mapping_file_and_field_warnings(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        mapping = _write(tmp_path / "map.yaml", self.MAPPING)
        summary = import_file(context, workspace, kind_name="customers", path=_write(tmp_path / "c.csv", self.CSV),
                              channel="crm", mapping_file=mapping)
        assert (summary.accepted, summary.accepted_with_warnings, summary.quarantined) == (3, 1, 1)
        assert summary.warnings_by_field == {"invalid birthday": 1, "invalid email": 1, "invalid phone": 1}
        assert summary.quarantined_by_reason == {"missing source_id": 1}
        rows = _lake(context, "identity_records", "source_id", "email", "phone", "birthday", "gender", "first_name")
        assert rows[0] == {"source_id": "r1", "email": "ana@example.com", "phone": "+8613800138000",
                           "birthday": __import__("datetime").date(1990, 3, 15), "gender": "female", "first_name": "Ana"}
        assert rows[1]["email"] is None and rows[1]["birthday"] is None and rows[1]["gender"] == "male"

    def test_changed_record_is_a_new_version_same_record_is_not(
        self, context: Context, workspace: Workspace, tmp_path: Path
    ) -> None:
        mapping = _write(tmp_path / "map.yaml", self.MAPPING)
        import_file(context, workspace, kind_name="customers", path=_write(tmp_path / "a.csv", self.CSV),
                    channel="crm", mapping_file=mapping)
        changed = self.CSV.replace("r3,Cy,Xu", "r3,Cyrus,Xu") + "r1,Ana,Li,19900315,ANA@Example.com ,138 0013 8000,F\n"
        summary = import_file(context, workspace, kind_name="customers", path=_write(tmp_path / "b.csv", changed),
                              channel="crm", mapping_file=mapping)
        assert summary.accepted == 1 and summary.duplicates == 3

    def test_bad_mapping_is_refused_with_its_reason(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        mapping = _write(tmp_path / "map.yaml", "columns: {shoe_size: size}\n")
        with pytest.raises(InvalidMapping, match="shoe_size"):
            import_file(context, workspace, kind_name="customers", path=_write(tmp_path / "c.csv", self.CSV),
                        channel="crm", mapping_file=mapping)


class TestIdempotency:
    def test_same_file_again_changes_nothing(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        path = _write(tmp_path / "o.csv", ORDERS_CSV)
        import_file(context, workspace, kind_name="orders", path=path, channel="shop")
        again = import_file(context, workspace, kind_name="orders", path=path, channel="shop")
        assert again.already_imported and again.accepted == 0
        assert len(_lake(context, "orders", "order_id")) == 2
        with context.store.read() as session:
            assert session.scalar(select(func.count(QuarantinedRow.id))) == 6

    def test_overlapping_file_adds_only_new_keys(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        import_file(context, workspace, kind_name="orders", path=_write(tmp_path / "a.csv", ORDERS_CSV), channel="shop")
        more = ORDERS_CSV + "o9,c9,2026-02-01 10:00:00,19,paid,,red\n"
        summary = import_file(context, workspace, kind_name="orders", path=_write(tmp_path / "b.csv", more),
                              channel="shop")
        assert (summary.accepted, summary.duplicates_existing) == (1, 2)
        other_channel = import_file(context, workspace, kind_name="orders", path=tmp_path / "b.csv", channel="jd-test")
        assert other_channel.accepted == 3  # order ids are unique per channel only


class TestFormats:
    def test_gb18030_marketplace_export_with_chinese_headers(
        self, context: Context, workspace: Workspace, tmp_path: Path
    ) -> None:
        text = ("订单编号,买家会员名,订单创建时间,买家实际支付金额,订单状态\n"
                "T1,买家甲,2026-03-01 12:00:00,88.00,交易成功\nT2,买家乙,2026-03-02 12:00:00,66.00,交易关闭\n")
        mapping = _write(tmp_path / "tmall.yaml", """
columns: {order_id: 订单编号, customer_key: 买家会员名, ordered_at: 订单创建时间, paid_amount: 买家实际支付金额, status: 订单状态}
values: {status: {交易成功: completed, 交易关闭: cancelled}}
""")
        summary = import_file(context, workspace, kind_name="orders", path=_write(tmp_path / "t.csv", text, "gb18030"),
                              channel="tmall-test", mapping_file=mapping)
        assert summary.accepted == 2
        rows = _lake(context, "orders", "order_id", "customer_key", "status")
        assert rows == [{"order_id": "T1", "customer_key": "买家甲", "status": "completed"},
                        {"order_id": "T2", "customer_key": "买家乙", "status": "cancelled"}]

    def test_events_jsonl_with_a_malformed_line(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        lines = [
            json.dumps({"event_id": "e1", "type": "page_view", "anonymous_id": "a1",
                        "occurred_at": "2026-03-01T10:00:00Z", "properties": {"path": "/"}}),
            "{not json",
            json.dumps({"event_id": "e2", "type": "sign_in", "occurred_at": "2026-03-01T10:00:00Z"}),
        ]
        summary = import_file(context, workspace, kind_name="events",
                              path=_write(tmp_path / "e.jsonl", "\n".join(lines) + "\n"), channel="web")
        assert summary.accepted == 1
        assert summary.quarantined_by_reason == {"malformed JSON line": 1, "missing customer_key and anonymous_id": 1}
        assert _lake(context, "events", "event_id", "properties") == [{"event_id": "e1", "properties": '{"path":"/"}'}]

    def test_parquet_and_generated_line_numbers(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        path = tmp_path / "items.parquet"
        pq.write_table(pa.table({"order_id": ["o1", "o1", "o2"], "sku": ["s1", "s2", "s1"], "quantity": [1, 2, 3],
                                 "amount": [10.0, 20.0, 30.0]}), path)
        summary = import_file(context, workspace, kind_name="order-items", path=path, channel="shop")
        assert summary.accepted == 3
        rows = _lake(context, "order_items", "order_id", "line_no", "sku")
        assert sorted((r["order_id"], r["line_no"], r["sku"]) for r in rows) == [
            ("o1", 1, "s1"), ("o1", 2, "s2"), ("o2", 1, "s1")]


class TestQuarantine:
    def test_export_fix_retry_resolves(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        first = import_file(context, workspace, kind_name="orders", path=_write(tmp_path / "o.csv", ORDERS_CSV),
                            channel="shop")
        out = tmp_path / "fix.csv"
        with context.store.read() as session:
            assert export_rows(session, workspace.id, first.import_id, out) == 6
        out.write_text(out.read_text().replace("not a date", "2026-01-05 09:00:00").replace(",-5,", ",5,"))
        retried = retry_quarantine(context, workspace, first.import_id, fixed_file=out)
        assert retried.accepted == 2
        with context.store.read() as session:
            overview = {o.run.id: o.open_rows for o in list_imports(session, workspace.id)}
        assert overview == {first.import_id: 4}
        assert {r["order_id"] for r in _lake(context, "orders", "order_id")} == {"o1", "o2", "o3", "o5"}


def test_imported_facts_read_the_same_on_every_engine(tmp_path: Path, warehouse: object) -> None:
    """Files written by the importer (DuckDB) are read alike by the DuckDB and the PySpark warehouse."""
    from memberops.accounts import service as accounts
    from memberops.config import Settings
    from memberops.db import migrate
    from memberops.lake.engine import Warehouse

    assert isinstance(warehouse, Warehouse)
    context = Context.from_settings(Settings(data_dir=warehouse.lake.parent, secret_key="x"))
    migrate.upgrade(context.store)
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session)
    import_file(context, workspace, kind_name="orders", path=_write(tmp_path / "o.csv", ORDERS_CSV), channel="shop")
    context.close()
    orders = warehouse.table("orders")
    rows = warehouse.to_pyarrow(orders.select("order_id", "paid_amount", "ordered_at", "day").order_by("order_id"))
    assert [(r["order_id"], str(r["paid_amount"]), r["day"].isoformat()) for r in rows.to_pylist()] == [
        ("o1", "100.50", "2026-01-02"), ("o2", "1200.00", "2026-01-03")]


class TestOnePass:
    """Facts with a one-column key go to the lake in one pass over the file; a key twice in the file sends it
    through staging instead. Both must give the same outcome for the same rows."""

    ROWS = """order_id,customer_key,ordered_at,paid_amount,gross_amount,status
 o1 ,c1,2026-01-02 10:00:00,100.50,101.00,paid
o2,c2,2026-01-03T10:00:00+08:00,20,n/a,paid
o3,c3,not a date,50,50,paid
,c4,2026-01-03 10:00:00,50,50,paid
o5,c5,2026-01-03 10:00:00,-5,-5,paid
o6,c6,2026-01-04 10:00:00,7,7,paid,one too many
o7,c7,2026-01-05 10:00:00,8,x,paid
"""

    @pytest.mark.parametrize("with_duplicate", [False, True], ids=["one-pass", "staged"])
    def test_same_outcome_either_way(
        self, context: Context, workspace: Workspace, tmp_path: Path, with_duplicate: bool
    ) -> None:
        text = self.ROWS + ("o7,c7,2026-01-05 10:00:00,8,x,paid\n" if with_duplicate else "")
        summary = import_file(context, workspace, kind_name="orders", path=_write(tmp_path / "o.csv", text),
                              channel="shop")
        assert summary.duplicates_in_file == (1 if with_duplicate else 0)
        assert (summary.accepted, summary.accepted_with_warnings, summary.quarantined) == (3, 2, 4)
        assert summary.read == 7 + with_duplicate
        assert summary.warnings_by_field == {"invalid gross_amount": 2 + with_duplicate}
        assert summary.quarantined_by_reason == {
            "invalid ordered_at": 1, "missing order_id": 1, "negative gross_amount": 1, "negative paid_amount": 1,
            "unreadable line: too many columns": 1,
        }
        with context.store.read() as session:
            stored = session.scalars(select(QuarantinedRow).order_by(QuarantinedRow.row_number)).all()
        assert [(r.row_number, r.reason, r.raw.get("order_id")) for r in stored[:3]] == [
            (3, "invalid ordered_at", "o3"), (4, "missing order_id", None),
            (5, "negative gross_amount; negative paid_amount", "o5")]
        assert stored[3].raw == {"line": "o6,c6,2026-01-04 10:00:00,7,7,paid,one too many"}
        rows = _lake(context, "orders", "order_id", "gross_amount", "ordered_at")
        assert [(r["order_id"], r["gross_amount"] and str(r["gross_amount"]), r["ordered_at"].isoformat())
                for r in rows] == [("o1", "101.00", "2026-01-02T02:00:00+00:00"),
                                   ("o2", None, "2026-01-03T02:00:00+00:00"),
                                   ("o7", None, "2026-01-05T02:00:00+00:00")]

    def test_keys_the_lake_has_are_skipped_and_their_warnings_still_reported(
        self, context: Context, workspace: Workspace, tmp_path: Path
    ) -> None:
        import_file(context, workspace, kind_name="orders", path=_write(tmp_path / "a.csv", self.ROWS), channel="shop")
        more = self.ROWS + "o8,c8,2026-01-06 10:00:00,9,bad,paid\no9,c9,2026-01-06 11:00:00,9,9,paid\n"
        summary = import_file(context, workspace, kind_name="orders", path=_write(tmp_path / "b.csv", more),
                              channel="shop")
        assert (summary.accepted, summary.accepted_with_warnings, summary.duplicates_existing) == (2, 1, 3)
        assert summary.warnings_by_field == {"invalid gross_amount": 3}
        assert [r["order_id"] for r in _lake(context, "orders", "order_id")] == ["o1", "o2", "o7", "o8", "o9"]
        again = import_file(context, workspace, kind_name="orders", path=tmp_path / "b.csv", channel="shop")
        assert again.already_imported
        assert len(_lake(context, "orders", "order_id")) == 5

    def test_lake_files_hold_only_the_table_columns(self, context: Context, workspace: Workspace, tmp_path: Path) -> None:
        import_file(context, workspace, kind_name="orders", path=_write(tmp_path / "a.csv", self.ROWS), channel="shop")
        files = sorted((context.settings.lake_path / "orders").glob("day=*/*.parquet"))
        assert [f.parent.name for f in files] == ["day=2026-01-02", "day=2026-01-03", "day=2026-01-05"]
        from memberops.lake.registry import table_spec

        assert all(pq.read_schema(f).names == table_spec("orders").schema.names for f in files)
        assert not list((context.settings.lake_path / "_tmp").iterdir())
