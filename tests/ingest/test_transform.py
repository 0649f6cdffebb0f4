"""The SQL that reads canonical values out of a source's text: checked against DuckDB's own functions."""

from __future__ import annotations

import duckdb
import pytest

from memberops.ingest.canonical import ORDERS
from memberops.ingest.mapping import Mapping
from memberops.ingest.transform import is_iso_ordered, literal, parsed_value, trimmed

ORDERED_AT = next(f for f in ORDERS.fields if f.name == "ordered_at")


def _value(sql: str) -> object:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    row = con.execute(f"SELECT CAST({sql} AS VARCHAR)").fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize("text", [
    "plain", " lead", "trail ", "  both  ", "", "   ", "\u3000全角\u3000", "\u00a0nbsp\u00a0", "tab\t", "中文", "a b",
])
def test_trimmed_is_duckdb_trim(text: str) -> None:
    """The cheap path must give exactly what ``NULLIF(trim(x), '')`` gives, Unicode spaces included."""
    x = literal(text)
    assert _value(trimmed(x)) == _value(f"NULLIF(trim({x}), '')")


@pytest.mark.parametrize(("fmt", "expected"), [
    ("%Y-%m-%d %H:%M", True), ("%Y-%m-%d %H:%M:%S", True), ("%Y/%m/%d %H:%M:%S", True), ("%Y%m%d", True),
    ("%Y-%m-%dT%H:%M:%S.%f", True), ("%d/%m/%Y", False), ("%Y-%d-%m", False), ("%Y-%m-%dT%H:%M:%SZ", False),
    ("%Y年%m月%d日", False), ("%Y-%m-%d %I:%M %p", False), ("%y-%m-%d", False), ("", False),
])
def test_iso_ordered_formats(fmt: str, expected: bool) -> None:
    assert is_iso_ordered(fmt) is expected


@pytest.mark.parametrize(("fmt", "text", "utc"), [
    ("%Y-%m-%d %H:%M", "2026-01-02 10:00", "2026-01-02 02:00:00+00"),
    ("%Y-%m-%d %H:%M", "2026-01-02 10:00:30", "2026-01-02 02:00:30+00"),  # more precise than the format
    ("%Y-%m-%d %H:%M", "2026-01-02T10:00:00+00:00", "2026-01-02 10:00:00+00"),
    ("%Y-%m-%d %H:%M", "2026-01-02T10:00:00-05:00", "2026-01-02 15:00:00+00"),
    ("%Y-%m-%d %H:%M", "2026-01-02 10:00:00+0100", "2026-01-02 09:00:00+00"),
    ("%Y-%m-%d %H:%M", "2026-01-02T10:00:00Z", "2026-01-02 10:00:00+00"),
    ("%Y-%m-%d %H:%M", "2026-01-02", "2026-01-01 16:00:00+00"),
    ("%d/%m/%Y %H:%M", "03/04/2026 10:00", "2026-04-03 02:00:00+00"),  # day first: the format decides
    ("%Y-%d-%m %H:%M", "2026-03-04 10:00", "2026-04-03 02:00:00+00"),  # unusual order: the format decides
    ("%Y-%m-%dT%H:%M:%SZ", "2026-01-02T10:00:00Z", "2026-01-02 02:00:00+00"),  # literal Z: the format decides
    ("%Y-%m-%d %H:%M", "yesterday", None),
])
def test_timestamps_read_with_a_format(fmt: str, text: str, utc: str | None) -> None:
    mapping = Mapping(kind="orders", formats={"ordered_at": fmt}, timezone="Asia/Shanghai")
    assert _value(parsed_value(ORDERED_AT, literal(text), mapping)) == utc
