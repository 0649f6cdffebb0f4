"""A loyalty programme as data: the declarative model an operator edits (YAML or JSON), validated here.

The model is pure configuration; the state store keeps each version as a row
(:mod:`memberops.loyalty.programmes`) and the ledger reads the active one. A fresh workspace runs
:data:`DEFAULT_PROGRAMME`: free enrolment, 1 point per unit of currency paid, points valid 12 months
rolling, no tiers.

Tiers (``tiers`` with ``tier_rules``) rank members by a qualifying metric over a window; the logic is in
:mod:`memberops.loyalty.tier_rules` and the state in :mod:`memberops.loyalty.tiers`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from memberops.documents import YamlSyntaxError, load_yaml, problems_of, with_lines
from memberops.loyalty.errors import InvalidProgramme

Multiplier = Annotated[Decimal, Field(ge=0, le=100, max_digits=8, decimal_places=4)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PaidMembership(_Strict):
    """A membership bought for a term: ``fee`` (in ``currency``, the programme's when left out) buys
    ``term_months``; a lapsed term is expired ``grace_days`` after it ends unless renewed (the member
    still earns in the grace days). ``auto_renew`` is what new memberships start with (a renewal request
    event at the term's end, for the payment system). ``cancellation_refund``: ``pro_rata`` ends the
    membership at once and refunds the unused part of the fees paid; ``none`` keeps it until its term
    ends, then it is cancelled, nothing refunded."""

    fee: Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    term_months: int = Field(default=12, ge=1, le=120)
    auto_renew: bool = False
    grace_days: int = Field(default=0, ge=0, le=365)
    cancellation_refund: Literal["pro_rata", "none"] = "none"


class SpendThreshold(_Strict):
    """Joining by spending: a known person whose counted spend within ``window_days`` (up to and
    including the order) reaches ``amount`` is enrolled by the order that crosses it. ``counts``: ``paid``
    (paid amounts net of refunds) or ``paid_excluding_shipping``. ``crossing_order_earns``: the crossing
    order earns points like any member's order (the default, so the first member purchase is rewarded)."""

    amount: Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]
    window_days: int = Field(default=365, ge=1, le=3650)
    counts: Literal["paid", "paid_excluding_shipping"] = "paid"
    crossing_order_earns: bool = True


class Enrolment(_Strict):
    """How a person joins: ``free``; ``paid`` (a fee for a term, see :class:`PaidMembership`); or
    ``spend_threshold`` (automatically, see :class:`SpendThreshold`). The welcome gift (points, and
    optionally a coupon of ``welcome_coupon``'s template and ``welcome_benefit_quantity`` uses of the
    benefit ``welcome_benefit``) is given once per member, on joining."""

    mode: Literal["free", "paid", "spend_threshold"] = "free"
    welcome_points: int = Field(default=0, ge=0, le=1_000_000, description="granted once, on joining")
    welcome_coupon: str | None = Field(default=None, min_length=1, max_length=64,
                                       description="a coupon template code: one coupon issued on joining")
    welcome_benefit: str | None = Field(default=None, min_length=1, max_length=64,
                                        description="a benefit code granted on joining")
    welcome_benefit_quantity: int = Field(default=1, ge=1, le=10_000)
    paid: PaidMembership | None = None
    spend_threshold: SpendThreshold | None = None

    @model_validator(mode="after")
    def _mode_settings(self) -> Enrolment:
        if self.mode == "paid" and self.paid is None:
            raise ValueError("a paid enrolment needs `paid` settings (fee, term_months …)")
        if self.mode == "spend_threshold" and self.spend_threshold is None:
            raise ValueError("a spend_threshold enrolment needs `spend_threshold` settings (amount, window_days …)")
        return self


class MemberDay(_Strict):
    """A recurring day on which earning is multiplied: a day of the month (``8``: every month on the
    8th) or a weekday (``0`` Monday … ``6`` Sunday), in the workspace's time zone."""

    day_of_month: int | None = Field(default=None, ge=1, le=31)
    weekday: int | None = Field(default=None, ge=0, le=6)
    multiplier: Multiplier

    @model_validator(mode="after")
    def _one_day(self) -> MemberDay:
        if (self.day_of_month is None) == (self.weekday is None):
            raise ValueError("a member day names either day_of_month or weekday")
        return self


class LineRule(_Strict):
    """Earning on the order lines of one category or SKU (``earn.category_rules`` / ``earn.sku_rules``).

    ``multiplier`` applies to the line's share of the earn basis and joins the order's multipliers
    (channel, member day, birthday month, tier) under ``earn.stacking``; ``bonus_per_unit`` adds fixed
    points per unit bought (``quantity``), after multipliers. A SKU's rule replaces its category's.
    """

    multiplier: Multiplier = Decimal(1)
    bonus_per_unit: int = Field(default=0, ge=0, le=100_000)


class EarnRules(_Strict):
    """Points for purchases.

    ``basis``: ``paid`` (what the buyer actually paid, after discounts) or ``gross`` (the list amount);
    shipping is left out unless ``include_shipping``. Multipliers (channel, member day, birthday month)
    combine by ``stacking``: the highest one applies (``max``) or all multiply (``multiply``). Caps limit
    the points purchases earn per member per calendar day and month (workspace time zone). Points stay
    pending for ``pending_days`` (the return window) before they can be spent.
    """

    points_per_unit: Annotated[Decimal, Field(ge=0, le=10_000, max_digits=10, decimal_places=4)] = Decimal(1)
    basis: Literal["paid", "gross"] = "paid"
    include_shipping: bool = False
    rounding: Literal["floor", "round", "ceil"] = "floor"
    channel_multipliers: dict[str, Multiplier] = {}
    member_days: list[MemberDay] = []
    birthday_month_multiplier: Multiplier = Decimal(1)
    stacking: Literal["max", "multiply"] = "max"
    daily_cap: int | None = Field(default=None, ge=0)
    monthly_cap: int | None = Field(default=None, ge=0)
    pending_days: int = Field(default=0, ge=0, le=365)
    # Per order line (see LineRule and ledger.line_shares): the basis is spread over the lines in proportion
    # to their amounts, so the order's discount (paid basis) falls on each line by its share.
    category_rules: dict[str, LineRule] = {}
    sku_rules: dict[str, LineRule] = {}


class Expiry(_Strict):
    """When earned points lapse.

    ``rolling_months``: ``months`` after they were earned; ``end_of_month``: at the end of the month
    ``months`` after earning; ``year_end``: points earned in a year lapse together at the end of the year
    ``years`` later (``years: 1``: points of 2026 lapse at the end of 2027); ``never``.
    """

    policy: Literal["rolling_months", "end_of_month", "year_end", "never"] = "rolling_months"
    months: int = Field(default=12, ge=1, le=240)
    years: int = Field(default=1, ge=0, le=20)
    warning_days: int = Field(default=30, ge=0, le=365,
                              description="how long before lapsing a member is warned (an event for journeys)")


class TierBenefit(_Strict):
    """A benefit (by its code, see ``/api/v1/benefits``) a tier gives ``quantity`` of per period."""

    code: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=10_000)


class Tier(_Strict):
    """One rung: reached when the qualifying metric over the window reaches ``threshold``. Its members
    earn points with ``earn_multiplier`` (combined with the other multipliers by ``earn.stacking``) and
    receive ``benefits`` once per period."""

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    name: str = Field(min_length=1, max_length=100)
    threshold: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
    earn_multiplier: Multiplier = Decimal(1)
    benefits: list[TierBenefit] = []


class TierRules(_Strict):
    """How tiers are won and kept.

    ``metric``: ``spend`` (paid amount of orders less refunds), ``orders`` (orders not fully refunded) or
    ``growth`` (growth value *earned* in the window: ``growth_per_unit`` per unit paid, plus
    ``growth_events`` for named events; never spent, so no balance is involved). ``window``:
    ``rolling_12_months``, ``calendar_year`` or ``anniversary`` (membership years). A member is upgraded as
    soon as the metric reaches a higher threshold; at evaluation a tier is kept when the metric of the last
    assessed window reaches ``keep_ratio`` × its threshold, and a downgrade waits ``grace_months`` after
    that window ends.
    """

    metric: Literal["spend", "orders", "growth"] = "spend"
    window: Literal["rolling_12_months", "calendar_year", "anniversary"] = "rolling_12_months"
    keep_ratio: Annotated[Decimal, Field(gt=0, le=1, max_digits=5, decimal_places=4)] = Decimal(1)
    grace_months: int = Field(default=0, ge=0, le=24)
    growth_per_unit: Annotated[Decimal, Field(ge=0, le=10_000, max_digits=10, decimal_places=4)] = Decimal(1)
    growth_events: dict[str, Annotated[int, Field(ge=0, le=1_000_000)]] = {}


class Referrals(_Strict):
    """Member-get-member: every member has a personal code; a friend binds one (first binding wins), and on
    the friend's first qualifying purchase after binding (``paid`` at least ``min_paid_amount``) both are
    rewarded: ``referrer_points`` / ``friend_points`` as points (pending for ``pending_days``, by default
    the programme's return window ``earn.pending_days``; a full refund within it claws them back) and/or a
    coupon of the templates ``referrer_coupon`` / ``friend_coupon``. A referrer whose bindings in the
    period (calendar ``month`` or ``year``, workspace time zone) reach ``cap_per_period`` keeps the further
    bindings recorded but unrewarded.
    """

    enabled: bool = False
    referrer_points: int = Field(default=0, ge=0, le=1_000_000)
    friend_points: int = Field(default=0, ge=0, le=1_000_000)
    referrer_coupon: str | None = Field(default=None, min_length=1, max_length=64,
                                        description="a coupon template code issued to the referrer")
    friend_coupon: str | None = Field(default=None, min_length=1, max_length=64,
                                      description="a coupon template code issued to the friend")
    min_paid_amount: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)] = Decimal(0)
    cap_per_period: int | None = Field(default=None, ge=0, le=1_000_000,
                                       description="rewarded bindings per referrer per period; null: no cap")
    cap_period: Literal["month", "year"] = "month"
    pending_days: int | None = Field(default=None, ge=0, le=365,
                                     description="null: the programme's return window (earn.pending_days)")


ProfileField = Literal["phone", "email", "wechat_unionid", "wechat_openid", "buyer_id", "member_card_no", "birthday"]
"""What ``required_fields`` of an event rule can name: the profile facts the state store holds for a member
(identifiers, and the birth month of the membership)."""


_EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def _event_type(value: str) -> str:
    if not _EVENT_TYPE.match(value):
        raise PydanticCustomError("event_type", "an event type is 1 to 64 letters, digits, _ . : or -, exactly as "
                                  "events are posted (e.g. sign_in, review)")
    if value == "join":
        raise PydanticCustomError("event_join", "joining is rewarded by enrolment.welcome_points, not an event rule")
    return value


EventType = Annotated[str, AfterValidator(_event_type)]


class Streak(_Strict):
    """A bonus for consecutive local days with the event: ``bonus`` points on every ``days``-th day in a row
    (7, 14, 21 … for ``days: 7``); a missed day starts the count again."""

    days: int = Field(ge=2, le=366)
    bonus: int = Field(ge=1, le=1_000_000)


class EventRule(_Strict):
    """Points for an event posted live (``POST /api/v1/events``) by an enrolled member, keyed by its type.

    ``points`` per event; at most ``max_per_day`` / ``max_per_month`` rewarded events per member per local
    day / month (workspace time zone); ``once_per_member``: only the first ever; ``streak``: a bonus for
    consecutive days (sign-in); ``required_fields``: the event earns only when the member's profile has
    them (``complete_profile``). The points are available at once and lapse by ``expiry``.
    """

    points: int = Field(default=0, ge=0, le=1_000_000)
    max_per_day: int | None = Field(default=None, ge=1, le=10_000)
    max_per_month: int | None = Field(default=None, ge=1, le=100_000)
    once_per_member: bool = False
    streak: Streak | None = None
    required_fields: list[ProfileField] = []

    @model_validator(mode="after")
    def _earns_something(self) -> EventRule:
        if self.points == 0 and self.streak is None:
            raise ValueError("an event rule gives points, a streak bonus, or both")
        return self


class Programme(_Strict):
    """A loyalty programme's rules. ``point_value`` (in the programme's currency) prices the liability.

    ``allow_negative``: a refund of points already spent drives the available balance below zero; when
    false it is recorded as a debt instead, which later earnings settle first. Either way it is kept.
    """

    name: str = Field(default="Membership", min_length=1, max_length=200)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    point_value: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=6)] = Decimal("0.01")
    allow_negative: bool = False
    enrolment: Enrolment = Enrolment()
    earn: EarnRules = EarnRules()
    expiry: Expiry = Expiry()
    tiers: list[Tier] = []
    tier_rules: TierRules = TierRules()
    referrals: Referrals = Referrals()
    events: dict[EventType, EventRule] = {}

    @model_validator(mode="after")
    def _ordered_tiers(self) -> Programme:
        codes = [tier.code for tier in self.tiers]
        if len(set(codes)) != len(codes):
            raise ValueError("tier codes must be unique")
        thresholds = [tier.threshold for tier in self.tiers]
        if any(low >= high for low, high in zip(thresholds, thresholds[1:], strict=False)):
            raise ValueError("tiers are listed lowest first, each threshold higher than the one before")
        return self


DEFAULT_PROGRAMME = Programme()


def parse_programme(text: str) -> Programme:
    """A programme from YAML or JSON text (JSON is YAML), or :class:`InvalidProgramme` naming each bad
    field and the line of ``text`` it is on (``line``, 1-based; ``None`` for the document as a whole)."""
    try:
        document: Any = load_yaml(text)
    except YamlSyntaxError as exc:
        raise InvalidProgramme([{"field": "", "message": exc.message, "line": exc.line}]) from None
    try:
        return programme_from_dict(document)
    except InvalidProgramme as exc:
        raise InvalidProgramme(with_lines(text, exc.errors)) from None


def programme_from_dict(document: Any) -> Programme:
    if not isinstance(document, dict):
        raise InvalidProgramme([{"field": "", "message": "a programme is a mapping of settings"}])
    try:
        return Programme.model_validate(document)
    except ValidationError as exc:
        raise InvalidProgramme(problems_of(exc)) from None


def programme_document(programme: Programme) -> dict[str, Any]:
    """The programme as JSON-friendly data (decimals as strings), as stored and exported."""
    return programme.model_dump(mode="json")


def programme_yaml(programme: Programme) -> str:
    return yaml.safe_dump(programme_document(programme), sort_keys=False, allow_unicode=True)
