"""The lake's tables: their names, Arrow schemas and the time column each is partitioned by.

Every table also carries ``workspace_id``, ``batch_id`` (the load that wrote the row) and ``ingested_at``;
files live under ``<lake>/<table>/day=YYYY-MM-DD/`` where the day is the UTC date of ``partition_by``.
Readers take the ``day`` column from the folder name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from memberops.errors import DomainError

MONEY = pa.decimal128(18, 2)
TIMESTAMP = pa.timestamp("us", tz="UTC")
PARTITION_COLUMN = "day"

_COMMON = [
    pa.field("workspace_id", pa.string(), nullable=False),
    pa.field("batch_id", pa.string(), nullable=False),
    pa.field("ingested_at", TIMESTAMP, nullable=False),
]


@dataclass(frozen=True)
class TableSpec:
    name: str
    fields: tuple[pa.Field, ...]
    partition_by: str
    natural_key: tuple[str, ...]
    derived: bool = False  # a snapshot computed from facts (one file per workspace, replaced), not a fact table

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([*_COMMON, *self.fields])

    @property
    def read_schema(self) -> pa.Schema:
        """The schema a reader sees: the stored columns plus, for fact tables, the ``day`` partition column."""
        if self.derived:
            return self.schema
        return self.schema.append(pa.field(PARTITION_COLUMN, pa.date32()))


# Member insight (``memberops.insight``): one row per member and workspace, replaced by each computation.
MEMBER_TRAIT_FIELDS: tuple[pa.Field, ...] = tuple(pa.field(n, t) for n, t in (
    ("member_id", pa.string()), ("computed_at", TIMESTAMP), ("as_of", TIMESTAMP),
    ("orders", pa.int64()), ("units", pa.int64()), ("gross_spend", MONEY), ("refunded", MONEY),
    ("net_spend", MONEY), ("aov", MONEY), ("items_per_order", pa.float64()),
    ("first_purchase_at", TIMESTAMP), ("last_purchase_at", TIMESTAMP), ("days_since_last_purchase", pa.int64()),
    ("mean_interpurchase_days", pa.float64()), ("median_interpurchase_days", pa.float64()),
    ("discount_share", pa.float64()), ("refund_rate", pa.float64()), ("online_share", pa.float64()),
    ("preferred_channel", pa.string()), ("preferred_category", pa.string()), ("preferred_store", pa.string()),
    ("associate_id", pa.string()), ("purchase_days", pa.int64()), ("frequency", pa.int64()),
    ("recency", pa.int64()), ("tenure_days", pa.int64()), ("repeat_value", pa.float64()),
    ("rfm_recency_days", pa.int64()), ("rfm_frequency", pa.int64()), ("rfm_monetary", MONEY),
    ("rfm_r", pa.int32()), ("rfm_f", pa.int32()), ("rfm_m", pa.int32()), ("rfm_score", pa.string()),
    ("rfm_segment", pa.string()), ("lifecycle_stage", pa.string()), ("aipl_stage", pa.string()),
    ("interest_events", pa.int64()), ("next_purchase_from", pa.date32()), ("next_purchase_expected", pa.date32()),
    ("next_purchase_to", pa.date32()), ("expected_purchases_90d", pa.float64()),
    ("expected_purchases_365d", pa.float64()), ("p_alive", pa.float64()), ("churn_risk", pa.float64()),
    ("expected_spend", MONEY), ("clv", MONEY), ("referrals", pa.int64()), ("referrals_converted", pa.int64()),
    ("referred_value", MONEY), ("shares", pa.int64()), ("koc_score", pa.float64()),
    ("tags", pa.list_(pa.string())),
))


def _spec(name: str, partition_by: str, natural_key: tuple[str, ...], *fields: tuple[str, pa.DataType]) -> TableSpec:
    return TableSpec(name, tuple(pa.field(n, t) for n, t in fields), partition_by, natural_key)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "identity_records", "ingested_at", ("channel", "source_id"),
            ("channel", pa.string()), ("source_id", pa.string()), ("member_id", pa.string()),
            ("phone", pa.string()), ("email", pa.string()), ("wechat_unionid", pa.string()),
            ("wechat_openid", pa.string()), ("buyer_id", pa.string()), ("member_card_no", pa.string()),
            ("first_name", pa.string()), ("last_name", pa.string()), ("full_name", pa.string()),
            ("gender", pa.string()), ("birthday", pa.date32()), ("street_number", pa.string()),
            ("address_line", pa.string()), ("city", pa.string()), ("province", pa.string()),
            ("postcode", pa.string()), ("country", pa.string()), ("joined_at", TIMESTAMP),
            ("join_source", pa.string()), ("store_id", pa.string()), ("associate_id", pa.string()),
            ("referrer_code", pa.string()), ("consents", pa.string()), ("attributes", pa.string()),
            ("record_hash", pa.string()),
        ),
        _spec(
            "orders", "ordered_at", ("channel", "order_id"),
            ("channel", pa.string()), ("order_id", pa.string()), ("customer_key", pa.string()),
            ("store_id", pa.string()), ("ordered_at", TIMESTAMP), ("status", pa.string()),
            ("gross_amount", MONEY), ("discount_amount", MONEY), ("shipping_amount", MONEY),
            ("paid_amount", MONEY), ("currency", pa.string()), ("coupon_codes", pa.list_(pa.string())),
        ),
        _spec(
            "order_items", "ingested_at", ("channel", "order_id", "line_no"),
            ("channel", pa.string()), ("order_id", pa.string()), ("line_no", pa.int32()),
            ("sku", pa.string()), ("category", pa.string()), ("brand", pa.string()),
            ("quantity", pa.int32()), ("unit_price", MONEY), ("amount", MONEY),
        ),
        _spec(
            "refunds", "refunded_at", ("channel", "refund_id"),
            ("channel", pa.string()), ("refund_id", pa.string()), ("order_id", pa.string()),
            ("refunded_at", TIMESTAMP), ("amount", MONEY), ("sku", pa.string()), ("quantity", pa.int32()),
        ),
        _spec(
            "events", "occurred_at", ("channel", "event_id"),
            ("channel", pa.string()), ("event_id", pa.string()), ("type", pa.string()),
            ("customer_key", pa.string()), ("anonymous_id", pa.string()), ("occurred_at", TIMESTAMP),
            ("properties", pa.string()),
        ),
        TableSpec(
            "identity_map", (pa.field("channel", pa.string()), pa.field("source_id", pa.string()),
                             pa.field("member_id", pa.string())),
            "ingested_at", ("channel", "source_id"), derived=True,
        ),
        TableSpec(
            "golden_records", (
                pa.field("member_id", pa.string()), pa.field("full_name", pa.string()),
                pa.field("first_name", pa.string()), pa.field("last_name", pa.string()),
                pa.field("gender", pa.string()), pa.field("birthday", pa.date32()), pa.field("phone", pa.string()),
                pa.field("email", pa.string()), pa.field("province", pa.string()), pa.field("city", pa.string()),
                pa.field("address_line", pa.string()), pa.field("street_number", pa.string()),
                pa.field("postcode", pa.string()), pa.field("country", pa.string()),
            ),
            "ingested_at", ("member_id",), derived=True,
        ),
        TableSpec("member_traits", MEMBER_TRAIT_FIELDS, "computed_at", ("member_id",), derived=True),
        _spec(
            "trait_changes", "changed_at", ("run_id", "member_id", "kind", "to_value"),
            ("run_id", pa.string()), ("member_id", pa.string()), ("kind", pa.string()),
            ("from_value", pa.string()), ("to_value", pa.string()), ("changed_at", TIMESTAMP),
        ),
        _spec(
            "message_events", "occurred_at", ("message_id", "type"),
            ("message_id", pa.string()), ("member_id", pa.string()), ("channel", pa.string()),
            ("type", pa.string()), ("occurred_at", TIMESTAMP), ("properties", pa.string()),
        ),
    )
}


class UnknownLakeTable(DomainError):
    code = "unknown_lake_table"

    def __init__(self, name: str) -> None:
        super().__init__(f"no lake table named {name!r}; known: {', '.join(sorted(TABLES))}")
        self.name = name


def table_spec(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise UnknownLakeTable(name) from None


def _coerce(value: Any, type_: pa.DataType) -> Any:
    """Turn a JSON-friendly value (as kept in the outbox) into what Arrow expects for ``type_``."""
    if value is None:
        return None
    if pa.types.is_timestamp(type_):
        return datetime.fromisoformat(value) if isinstance(value, str) else value
    if pa.types.is_date(type_):
        return date.fromisoformat(value) if isinstance(value, str) else value
    if pa.types.is_decimal(type_):
        return Decimal(str(value))
    if pa.types.is_string(type_) and isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def records_to_arrow(spec: TableSpec, records: list[dict[str, Any]]) -> pa.Table:
    """Build an Arrow table of ``spec``'s schema from dicts; unknown keys are an error, missing ones null."""
    schema = spec.schema
    known = set(schema.names)
    for record in records:
        unknown = set(record) - known
        if unknown:
            raise ValueError(f"{spec.name}: unknown fields {sorted(unknown)}")
    columns = {
        field.name: pa.array([_coerce(r.get(field.name), field.type) for r in records], type=field.type)
        for field in schema
    }
    return pa.table(columns, schema=schema)
