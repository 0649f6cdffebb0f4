"""The serving traits' JSON, written a column at a time, reads back exactly as ``json.dumps`` of each value made
JSON-ready one by one (the way ``save_serving_traits`` wrote it before): same values, same types."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from memberops.insight.documents import json_documents, json_tokens, json_value


def _one_by_one(values: list[Any]) -> list[Any]:
    return [json.loads(json.dumps(json_value(v))) for v in values]


def _typed(values: list[Any]) -> list[tuple[type, Any]]:
    """Values with their types (``1 == 1.0`` in Python, but an API client sees ``1`` and ``1.0``)."""
    return [(type(v), v) for v in values]


def _read(tokens: pa.Array) -> list[Any]:
    return [json.loads(token) for token in tokens.to_pylist()]


FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=False),
    st.floats(min_value=-1e6, max_value=1e6),
    st.integers(-10**9, 10**9).map(lambda n: n / 10**7),  # halves and near-halves at the 6th decimal
    st.integers(-10**6, 10**6).map(lambda n: n * 5e-7),
    st.sampled_from([0.0, -0.0, 100.0, 1e-05, 1.5e-07, 2.5e-06, 1e15, 1e16, 123456.7890125, 0.1 + 0.2]),
    st.none(),
)
MOMENTS = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


class TestJsonTokens:
    @settings(max_examples=200, deadline=None)
    @given(st.lists(FLOATS, max_size=40))
    def test_floats_round_to_six_decimals_and_stay_floats(self, values: list[float | None]) -> None:
        column = pa.array(values, pa.float64())
        assert _typed(_read(json_tokens(column))) == _typed(_one_by_one(values))

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.one_of(st.text(), st.none()), max_size=30))
    def test_strings_any_text(self, values: list[str | None]) -> None:
        assert _read(json_tokens(pa.array(values, pa.string()))) == _one_by_one(values)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.one_of(MOMENTS, st.none()), max_size=30))
    def test_timestamps_as_isoformat(self, values: list[datetime | None]) -> None:
        column = pa.array(values, pa.timestamp("us", tz="UTC"))
        assert _read(json_tokens(column)) == _one_by_one(column.to_pylist())

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.one_of(st.decimals(min_value=-10**15, max_value=10**15, places=2), st.none()), max_size=30))
    def test_money_as_decimal_strings(self, values: list[Decimal | None]) -> None:
        column = pa.array(values, pa.decimal128(18, 2))
        assert _read(json_tokens(column)) == _one_by_one(column.to_pylist())

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.one_of(st.lists(st.one_of(st.text(max_size=8), st.none()), max_size=4), st.none()), max_size=20))
    def test_lists_of_strings(self, values: list[list[str | None] | None]) -> None:
        column = pa.array(values, pa.list_(pa.string()))
        assert _read(json_tokens(column)) == _one_by_one(values)
        assert _read(json_tokens(column.slice(1))) == _one_by_one(values[1:])

    def test_integers_booleans_dates_and_chunks(self) -> None:
        ints = pa.chunked_array([[1, None], [-(2**62)]], pa.int64())
        assert _typed(_read(json_tokens(ints))) == _typed([1, None, -(2**62)])
        assert _read(json_tokens(pa.array([True, None, False]))) == [True, None, False]
        days = [date(2026, 1, 2), None, date(1999, 12, 31)]
        assert _read(json_tokens(pa.array(days, pa.date32()))) == ["2026-01-02", None, "1999-12-31"]

    def test_infinity_is_written_as_json_dumps_writes_it(self) -> None:
        tokens = json_tokens(pa.array([math.inf, -math.inf, math.nan], pa.float64())).to_pylist()
        assert tokens == ["Infinity", "-Infinity", "null"]


class TestJsonDocuments:
    def test_a_document_per_row_with_the_columns_in_order(self) -> None:
        at = datetime(2026, 6, 30, 12, tzinfo=UTC)
        rows: list[dict[str, Any]] = [
            {"orders": 2, "net_spend": Decimal("150.00"), "share": 1 / 3, "segment": 'Can\'t "Lose" Them',
             "last": at, "next": date(2026, 7, 1), "tags": ["new_mom"]},
            {"orders": None, "net_spend": None, "share": math.nan, "segment": None, "last": at + timedelta(microseconds=5),
             "next": None, "tags": None},
        ]
        table = pa.table({
            "orders": pa.array([r["orders"] for r in rows], pa.int64()),
            "net_spend": pa.array([r["net_spend"] for r in rows], pa.decimal128(18, 2)),
            "share": pa.array([r["share"] for r in rows], pa.float64()),
            "segment": pa.array([r["segment"] for r in rows], pa.string()),
            "last": pa.array([r["last"] for r in rows], pa.timestamp("us", tz="UTC")),
            "next": pa.array([r["next"] for r in rows], pa.date32()),
            "tags": pa.array([r["tags"] for r in rows], pa.list_(pa.string())),
        })
        names = list(table.column_names)
        documents = json_documents(table, names).to_pylist()
        expected = [json.dumps({name: json_value(row[name]) for name in names}) for row in rows]
        assert documents == expected  # the very text json.dumps writes
        assert json_documents(table.slice(0, 0), names).to_pylist() == []
