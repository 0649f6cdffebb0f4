"""The canonical model every channel is mapped onto (see DESIGN.md, "Canonical field names").

Pure definitions: which fields each kind of record has, their types, which are required and which form
the natural key that makes an import or an API call idempotent. The batch importer, the HTTP schemas
and the lake registry all read these.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FieldType(StrEnum):
    string = "string"
    phone = "phone"  # normalised to E.164 with the mapping's default region
    email = "email"  # trimmed, lower-cased, checked
    identifier = "identifier"  # an opaque id (unionid, buyer id…): trimmed
    date = "date"
    timestamp = "timestamp"  # naive values are read in the mapping's time zone, stored in UTC
    money = "money"  # decimal(18,2), never a float
    integer = "integer"
    boolean = "boolean"
    gender = "gender"  # female | male | other (from 女/男, F/M, 0/1/2 …)
    string_list = "string_list"  # e.g. coupon codes, separated by , ; or |
    json = "json"  # a JSON object kept as text (event properties, custom attributes)


@dataclass(frozen=True)
class CanonicalField:
    name: str
    type: FieldType
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class RecordKind:
    """One kind of record an import or an API call brings in."""

    name: str  # as the CLI and the API say it: customers, orders, order-items, refunds, events
    lake_table: str
    natural_key: tuple[str, ...]  # unique within a channel: replays of the same key change nothing
    fields: tuple[CanonicalField, ...]

    def field(self, name: str) -> CanonicalField:
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)


F = CanonicalField
T = FieldType

CONSENT_CHANNELS = ("email", "sms", "wechat", "phone")

CUSTOMERS = RecordKind(
    "customers", "identity_records", ("source_id",),
    (
        F("source_id", T.identifier, True, "the customer's id in the channel"),
        F("phone", T.phone), F("email", T.email), F("wechat_unionid", T.identifier),
        F("wechat_openid", T.identifier), F("buyer_id", T.identifier), F("member_card_no", T.identifier),
        F("first_name", T.string), F("last_name", T.string), F("full_name", T.string), F("gender", T.gender),
        F("birthday", T.date), F("street_number", T.string), F("address_line", T.string), F("city", T.string),
        F("province", T.string), F("postcode", T.string), F("country", T.string), F("joined_at", T.timestamp),
        F("join_source", T.string), F("store_id", T.identifier), F("associate_id", T.identifier),
        F("referrer_code", T.identifier),
        *(F(f"consent_{c}", T.boolean, description=f"opted in to {c} messages") for c in CONSENT_CHANNELS),
        F("attributes", T.json, description="custom attributes declared by the workspace"),
    ),
)

ORDERS = RecordKind(
    "orders", "orders", ("order_id",),
    (
        F("order_id", T.identifier, True), F("customer_key", T.identifier, True, "the buyer's source_id"),
        F("store_id", T.identifier), F("ordered_at", T.timestamp, True), F("status", T.string),
        F("gross_amount", T.money), F("discount_amount", T.money), F("shipping_amount", T.money),
        F("paid_amount", T.money, True), F("currency", T.string), F("coupon_codes", T.string_list),
    ),
)

ORDER_ITEMS = RecordKind(
    "order-items", "order_items", ("order_id", "line_no"),
    (
        F("order_id", T.identifier, True),
        F("line_no", T.integer, description="position in the order; numbered in file order when absent"),
        F("sku", T.identifier, True),
        F("category", T.string), F("brand", T.string), F("quantity", T.integer, True),
        F("unit_price", T.money), F("amount", T.money, True),
    ),
)

REFUNDS = RecordKind(
    "refunds", "refunds", ("refund_id",),
    (
        F("refund_id", T.identifier, True), F("order_id", T.identifier, True), F("refunded_at", T.timestamp, True),
        F("amount", T.money, True), F("sku", T.identifier), F("quantity", T.integer),
    ),
)

EVENT_TYPES = (
    "page_view", "product_view", "add_to_cart", "coupon_claim", "bottle_code_scan", "share", "content_view",
    "sign_in", "search", "checkout", "review", "follow", "live_view",
)

EVENTS = RecordKind(
    "events", "events", ("event_id",),
    (
        F("event_id", T.identifier, True), F("type", T.string, True), F("customer_key", T.identifier),
        F("anonymous_id", T.identifier), F("occurred_at", T.timestamp, True), F("properties", T.json),
    ),
)

KINDS: dict[str, RecordKind] = {kind.name: kind for kind in (CUSTOMERS, ORDERS, ORDER_ITEMS, REFUNDS, EVENTS)}

ORDER_STATUSES = ("created", "paid", "shipped", "completed", "cancelled", "refunded")

# How values are spelled in channel exports and API calls; the importer (SQL) and the API (pydantic)
# read the same lists.
GENDER_FEMALE = ("f", "female", "woman", "w", "女", "2")
GENDER_MALE = ("m", "male", "man", "男", "1")
GENDER_UNKNOWN = ("0", "u", "unknown", "未知", "保密", "-")
BOOLEAN_TRUE = ("1", "true", "t", "yes", "y", "on", "是", "同意", "opt-in", "opted_in", "subscribed")
BOOLEAN_FALSE = ("0", "false", "f", "no", "n", "off", "否", "不同意", "opt-out", "opted_out", "unsubscribed")
