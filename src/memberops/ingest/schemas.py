"""What the HTTP ingest endpoints accept and answer, and how a request body becomes validated items.

One model per kind of fact, field names as in ``canonical.py``. Values are checked and normalised here,
once, at the edge: money is an exact ``Decimal`` (never a float), times carry their time zone, identifiers
are normalised as identity resolution expects them. A body is one item or a batch ``{"items": […]}``;
:func:`parse_body` validates each item on its own, so a bad item is reported without failing its batch.
A customer record with a bad *optional* field is kept without that field and the problem becomes a
warning: losing the person is worse than losing one field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from memberops.identity.normalise import normalise_email, normalise_phone
from memberops.ingest.canonical import (
    CONSENT_CHANNELS,
    GENDER_FEMALE,
    GENDER_MALE,
    GENDER_UNKNOWN,
    ORDER_STATUSES,
)

MAX_BATCH = 1_000
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)  # as the batch importer (ingest/transform.py) checks
EARLIEST_BIRTHDAY = date(1900, 1, 1)

# --- money -------------------------------------------------------------------------------------------

CENT = Decimal("0.01")
MAX_MONEY = Decimal("9999999999999999.99")  # decimal(18,2), as stored
SAFE_FLOAT_DIGITS = 15  # a JSON number of up to 15 significant digits survives a binary double exactly
_MONEY_TEXT_CHARS = frozenset("0123456789.+-")


def parse_money(value: object) -> Decimal:
    """An amount of money as an exact ``Decimal`` with two places, or a ``PydanticCustomError``.

    Accepted: a string (``"19.99"``), an integer, a ``Decimal``, or a JSON number — which parsers hand
    over as a binary double, so it is read back through its shortest representation (``repr``) and
    accepted only when that has at most 15 significant digits: then it is exactly the number the client
    wrote (every amount below 10 trillion with cents qualifies). Anything more precise must come as a
    string. Refused: negatives, more than two decimal places (``19.999``; ``19.990`` is fine), NaN,
    infinities, exponents in strings, booleans, and amounts beyond ``decimal(18,2)``.
    """
    if isinstance(value, bool):
        raise PydanticCustomError("money_type", "give an amount as a string such as \"19.99\", not a boolean")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or not _MONEY_TEXT_CHARS.issuperset(text):
            raise PydanticCustomError("money_parsing", "give an amount as a plain decimal such as \"19.99\"")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise PydanticCustomError("money_parsing", "give an amount as a plain decimal such as \"19.99\"") from None
    elif isinstance(value, float):
        amount = Decimal(repr(value))
        if amount.is_finite() and len(amount.as_tuple().digits) > SAFE_FLOAT_DIGITS:
            raise PydanticCustomError(
                "money_precision",
                "an amount with more than 15 significant digits cannot be read exactly from a JSON number; "
                "send it as a string",
            )
    else:
        raise PydanticCustomError("money_type", "give an amount as a string such as \"19.99\" or a number")
    if not amount.is_finite():
        raise PydanticCustomError("money_parsing", "an amount must be a finite number")
    if amount < 0:
        raise PydanticCustomError("money_negative", "an amount must not be negative")
    if amount > MAX_MONEY:
        raise PydanticCustomError("money_too_large", "an amount must be below 10 quadrillion")
    rounded = amount.quantize(CENT)
    if rounded != amount:
        raise PydanticCustomError("money_places", "an amount has at most 2 decimal places")
    return rounded


Money = Annotated[Decimal, BeforeValidator(parse_money)]

# --- time --------------------------------------------------------------------------------------------


TIMEZONE_REQUIRED = (
    "a time zone is required (such as \"2026-03-01T10:15:00+08:00\" or \"…Z\"): a time without one is ambiguous"
)


def _plausible_time(value: datetime) -> datetime:
    if not EARLIEST_TIME <= value <= datetime.now(UTC) + timedelta(days=1):
        raise PydanticCustomError("timestamp_range", "a time must lie between 2000-01-01 and tomorrow")
    return value


# ISO 8601 text with an offset (or a Unix time, which is UTC); a naive time is refused (timezone_aware).
Timestamp = Annotated[AwareDatetime, AfterValidator(_plausible_time)]


def _plausible_birthday(value: date) -> date:
    if not EARLIEST_BIRTHDAY <= value <= date.today():
        raise PydanticCustomError("birthday_range", "a birthday must lie between 1900-01-01 and today")
    return value


Birthday = Annotated[date, AfterValidator(_plausible_birthday)]

# --- identifiers and text ----------------------------------------------------------------------------

Channel = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32,
                                           pattern=r"^[a-z0-9_\-]+$")]


Key64 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Key128 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Key200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text200 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


# Optional text, trimmed; a blank value counts as absent.
Opt64 = Annotated[Key64 | None, BeforeValidator(_blank_is_none)]
Opt128 = Annotated[Key128 | None, BeforeValidator(_blank_is_none)]
Opt200 = Annotated[Key200 | None, BeforeValidator(_blank_is_none)]
Opt500 = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] | None,
    BeforeValidator(_blank_is_none),
]


Count = Annotated[int, Field(ge=0, le=2_147_483_647)]

# The batch importer reads the same vocabulary (ingest/canonical.py).
_FEMALE = frozenset(GENDER_FEMALE)
_MALE = frozenset(GENDER_MALE)
_UNKNOWN = frozenset((*GENDER_UNKNOWN, ""))


def normalise_gender(value: object) -> str | None:
    """``female`` | ``male`` | ``other``, or ``None`` when unknown (女/男, F/M, WeChat's 0/1/2 …)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PydanticCustomError("gender_type", "give gender as text such as \"female\", \"male\" or \"other\"")
    text = str(value).strip().lower()
    if text in _FEMALE:
        return "female"
    if text in _MALE:
        return "male"
    if text in _UNKNOWN:
        return None
    return "other"


# --- the facts -----------------------------------------------------------------------------------------

_FORBID = ConfigDict(extra="forbid", frozen=True)


class EventIn(BaseModel):
    """Something a customer (or an anonymous visitor) did: a page view, a scan, a coupon claim…"""

    model_config = _FORBID

    channel: Channel = Field(examples=["app"])
    event_id: Key200 = Field(description="unique within the channel; a replay of it changes nothing")
    type: Key64 = Field(description="free text, e.g. page_view, add_to_cart, bottle_code_scan")
    customer_key: Key200 | None = Field(default=None, description="the customer's source_id in the channel")
    anonymous_id: Key200 | None = Field(default=None, validate_default=True,
                                           description="a visitor's id before sign-in; one of the two is required")
    occurred_at: Timestamp
    properties: dict[str, Any] | None = None

    @field_validator("anonymous_id")
    @classmethod
    def _someone_did_it(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("customer_key") is None:
            raise PydanticCustomError("who_required", "give customer_key or anonymous_id: who did this?")
        return value


class OrderItemIn(BaseModel):
    model_config = _FORBID

    line_no: Annotated[int, Field(ge=1, le=2_147_483_647)]
    sku: Key128
    category: Text200 | None = None
    brand: Text200 | None = None
    quantity: Count
    unit_price: Money | None = None
    amount: Money


def _known_status(value: str) -> str:
    if value not in ORDER_STATUSES:
        raise PydanticCustomError("status_unknown", "status is one of {accepted}", {"accepted": ", ".join(ORDER_STATUSES)})
    return value


OrderStatus = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True), AfterValidator(_known_status)]


def _codes(value: object) -> object:
    """Coupon codes as a list, or as one string separated by , ; or | (as files carry them)."""
    if isinstance(value, str):
        return [part for part in value.replace(";", ",").replace("|", ",").split(",") if part.strip()]
    return value


class OrderIn(BaseModel):
    """An order, optionally with its lines; idempotent on ``(channel, order_id)``."""

    model_config = _FORBID

    channel: Channel = Field(examples=["pos"])
    order_id: Key128
    customer_key: Key200 = Field(description="the buyer's source_id in the channel")
    store_id: Key64 | None = None
    ordered_at: Timestamp
    status: OrderStatus = "paid"
    gross_amount: Money | None = None
    discount_amount: Money | None = None
    shipping_amount: Money | None = None
    paid_amount: Money
    currency: Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{3}$")] = "CNY"
    coupon_codes: Annotated[list[Key64], BeforeValidator(_codes), Field(max_length=100)] = []
    items: Annotated[list[OrderItemIn], Field(max_length=1_000)] = []

    @field_validator("items")
    @classmethod
    def _distinct_lines(cls, items: list[OrderItemIn]) -> list[OrderItemIn]:
        numbers = [item.line_no for item in items]
        if len(set(numbers)) != len(numbers):
            raise PydanticCustomError("line_no_repeated", "each line of an order needs its own line_no")
        return items


class RefundIn(BaseModel):
    """A refund against an order posted live; idempotent on ``(channel, refund_id)``."""

    model_config = _FORBID

    channel: Channel = Field(examples=["pos"])
    refund_id: Key128
    order_id: Key128
    refunded_at: Timestamp
    amount: Money
    sku: Key128 | None = None
    quantity: Count | None = None


def _phone(value: str) -> str:
    normalised = normalise_phone(value)
    if normalised is None:
        raise PydanticCustomError("phone_invalid", "not a valid phone number")
    return normalised


def _email(value: str) -> str:
    normalised = normalise_email(value)
    if normalised is None:
        raise PydanticCustomError("email_invalid", "not a valid e-mail address")
    return normalised


Phone = Annotated[
    Annotated[str, StringConstraints(max_length=40), AfterValidator(_phone)] | None, BeforeValidator(_blank_is_none)
]
Email = Annotated[
    Annotated[str, StringConstraints(max_length=320), AfterValidator(_email)] | None, BeforeValidator(_blank_is_none)
]


class CustomerIn(BaseModel):
    """A channel's customer record: identifiers, attributes and consents; idempotent on
    ``(channel, source_id)``. Identifiers are normalised (phones to E.164, e-mails lower-cased)."""

    model_config = _FORBID

    channel: Channel = Field(examples=["wechat"])
    source_id: Key200 = Field(description="the customer's id in the channel")
    is_enrolled: bool = Field(default=False, description="the customer joined the loyalty programme")
    phone: Phone = None
    email: Email = None
    wechat_unionid: Opt128 = None
    wechat_openid: Opt128 = None
    buyer_id: Opt128 = None
    member_card_no: Opt64 = None
    first_name: Opt200 = None
    last_name: Opt200 = None
    full_name: Opt200 = None
    gender: Annotated[str | None, BeforeValidator(normalise_gender)] = None
    birthday: Birthday | None = None
    street_number: Opt200 = None
    address_line: Opt500 = None
    city: Opt200 = None
    province: Opt200 = None
    postcode: Opt64 = None
    country: Opt64 = None
    joined_at: Timestamp | None = None
    join_source: Opt200 = None
    store_id: Opt64 = None
    associate_id: Opt64 = None
    referrer_code: Opt64 = None
    consent_email: bool | None = None
    consent_sms: bool | None = None
    consent_wechat: bool | None = None
    consent_phone: bool | None = None
    attributes: dict[str, Any] | None = Field(default=None, description="the workspace's custom attributes")

    def identifiers(self) -> dict[str, str | None]:
        return {"phone": self.phone, "email": self.email, "wechat_unionid": self.wechat_unionid,
                "wechat_openid": self.wechat_openid, "buyer_id": self.buyer_id,
                "member_card_no": self.member_card_no}

    def consents(self) -> dict[str, bool]:
        return {c: given for c in CONSENT_CHANNELS if (given := getattr(self, f"consent_{c}")) is not None}


# Fields whose bad value rejects a customer record; any other bad field is dropped with a warning.
CUSTOMER_ESSENTIALS = frozenset(("channel", "source_id", "is_enrolled"))

ITEM_MODELS: dict[str, type[BaseModel]] = {
    "customers": CustomerIn, "orders": OrderIn, "refunds": RefundIn, "events": EventIn,
}
NATURAL_KEYS = {"customers": "source_id", "orders": "order_id", "refunds": "refund_id", "events": "event_id"}


# --- answers ------------------------------------------------------------------------------------------


class Issue(BaseModel):
    field: str = Field(description="the field, dotted for nested ones (items.2.amount); empty for the item")
    message: str
    code: str = Field(description="stable, for clients to switch on (e.g. missing, refund_exceeds_order)")


class ItemResult(BaseModel):
    index: int = Field(description="the item's position in the batch (0 for a single item)")
    status: Literal["accepted", "duplicate", "rejected"]
    key: str | None = Field(description="the item's natural key (order_id, event_id, refund_id, source_id)")
    member_id: str | None = Field(default=None, description="customers: the member; orders: the buyer, if known")
    errors: list[Issue] = []
    warnings: list[Issue] = Field(default=[], description="fields dropped as invalid; the item was kept")
    points_earned: int | None = Field(default=None, description="orders: loyalty points the buyer earned "
                                      "(null when the buyer is not an enrolled member; on a replay, null); "
                                      "events: points the event earned, for the types the programme rewards")
    points_reversed: int | None = Field(default=None, description="refunds: loyalty points taken back "
                                        "(null when the order earned none)")


class BatchTotals(BaseModel):
    accepted: int
    duplicate: int
    rejected: int


class BatchResult(BaseModel):
    results: list[ItemResult] = Field(description="one per item, in the order sent")
    totals: BatchTotals


# --- parsing a body ------------------------------------------------------------------------------------


@dataclass(slots=True)
class ParsedItem:
    """One item of a body: valid (``value``) or not (``errors``), with warnings for dropped fields.

    (Slots and shared empty tuples: a batch holds a thousand of these, and fewer objects per request
    means less work for the garbage collector.)
    """

    index: int
    value: Any
    key: str | None
    errors: Sequence[Issue] = ()
    warnings: Sequence[Issue] = ()


@dataclass
class ParsedBody:
    is_batch: bool
    items: list[ParsedItem]
    body_errors: list[dict[str, Any]] = field(default_factory=list)  # not JSON, or not an object
    batch_size: int = 0  # the number of items sent, kept when the batch is over the limit (items is empty)

    @property
    def is_too_large(self) -> bool:
        return self.batch_size > MAX_BATCH


_MESSAGES = {"missing": "required", "extra_forbidden": "unknown field", "timezone_aware": TIMEZONE_REQUIRED}


def _issue(error: Any, *, dropped: bool = False) -> Issue:
    message = _MESSAGES.get(error["type"], error["msg"])
    return Issue(field=".".join(str(part) for part in error["loc"]), code=error["type"],
                 message=f"dropped: {message}" if dropped else message)


def request_errors(item: ParsedItem) -> list[dict[str, Any]]:
    """``item``'s errors shaped as FastAPI's ``RequestValidationError`` wants them (for a single item)."""
    return [{"type": e.code, "loc": ("body", *e.field.split(".")) if e.field else ("body",), "msg": e.message}
            for e in item.errors]


_LIST_ADAPTERS: dict[type[BaseModel], TypeAdapter[list[Any]]] = {}


def _list_adapter(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    if model not in _LIST_ADAPTERS:
        _LIST_ADAPTERS[model] = TypeAdapter(list[model])  # type: ignore[valid-type]
    return _LIST_ADAPTERS[model]


def _validate_one(kind: str, index: int, raw: object) -> ParsedItem:
    model = ITEM_MODELS[kind]
    key_value = raw.get(NATURAL_KEYS[kind]) if isinstance(raw, dict) else None
    key = key_value.strip() if isinstance(key_value, str) else None
    if not isinstance(raw, dict):
        return ParsedItem(index, None, None, [Issue(field="", message="each item must be a JSON object",
                                                    code="model_type")])
    try:
        return ParsedItem(index, model.model_validate(raw), key)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
    if kind != "customers":
        return ParsedItem(index, None, key, [_issue(e) for e in errors])
    fatal = [e for e in errors if not e["loc"] or e["loc"][0] in CUSTOMER_ESSENTIALS or e["type"] == "extra_forbidden"]
    if fatal:
        return ParsedItem(index, None, key, [_issue(e) for e in errors])
    dropped = {e["loc"][0] for e in errors}
    kept = {name: value for name, value in raw.items() if name not in dropped}
    try:
        value = model.model_validate(kept)
    except ValidationError as exc:  # not expected: what is left was valid; report everything if not
        return ParsedItem(index, None, key, [_issue(e) for e in (*errors, *exc.errors(include_url=False))])
    return ParsedItem(index, value, key, warnings=[_issue(e, dropped=True) for e in errors])


def _validate_all(kind: str, raw_items: Sequence[object]) -> list[ParsedItem]:
    """Every item validated; the whole list at once first (pydantic's fast path), one by one if any is bad."""
    try:
        values = _list_adapter(ITEM_MODELS[kind]).validate_python(raw_items)
    except ValidationError:
        return [_validate_one(kind, index, raw) for index, raw in enumerate(raw_items)]
    key_name = NATURAL_KEYS[kind]
    return [ParsedItem(index, value, getattr(value, key_name)) for index, value in enumerate(values)]


def parse_body(kind: str, body: bytes) -> ParsedBody:
    """Read a request body of ``kind`` (customers, orders, refunds, events): one item, or a batch.

    A batch is an object whose only key is ``items``; anything else is one item. Nothing here raises: a
    body that is not JSON, or a batch over :data:`MAX_BATCH`, is reported in the result, so the endpoint
    decides after authenticating the caller.
    """
    try:
        document = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        return ParsedBody(False, [], body_errors=[{"type": "json_invalid", "loc": ("body",),
                                                   "msg": f"the body is not valid JSON: {exc}"}])
    if isinstance(document, dict) and set(document) == {"items"} and isinstance(document["items"], list):
        raw_items = document["items"]
        if len(raw_items) > MAX_BATCH:
            return ParsedBody(True, [], batch_size=len(raw_items))
        return ParsedBody(True, _validate_all(kind, raw_items), batch_size=len(raw_items))
    if not isinstance(document, dict):
        return ParsedBody(False, [], body_errors=[{
            "type": "model_type", "loc": ("body",),
            "msg": "send one item as a JSON object, or a batch as {\"items\": [...]}"}])
    return ParsedBody(False, [_validate_one(kind, 0, document)], batch_size=1)
