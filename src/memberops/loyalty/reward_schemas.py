"""Rewards as the API, the CLI and the console read and write them (pydantic).

A reward's definition (:class:`RewardIn`) is versioned: a change makes a new version, and each redemption
keeps the version, price and what it issued, so an operator's edit never rewrites a redemption.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from memberops.loyalty.schemas import BalanceOut

RewardKind = Literal["item", "coupon", "benefit"]
LimitPeriod = Literal["day", "week", "month", "year"]
RedemptionStatus = Literal["completed", "cancelled"]
FulfilmentStatus = Literal["pending", "shipped", "collected"]

Slug = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
TierCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Cash = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=2)]

_FORBID = ConfigDict(extra="forbid")


class PeriodLimit(BaseModel):
    """At most ``count`` units per member in each ``period`` (calendar day, ISO week, month, year in the
    workspace's time zone)."""

    model_config = _FORBID

    count: Annotated[int, Field(ge=1, le=1_000_000)]
    period: LimitPeriod


class RewardIn(BaseModel):
    """A reward of the catalogue (its whole definition: create and ``PUT`` take the same document).

    - ``item``: a physical gift; each redemption waits for fulfilment (``pending`` → ``shipped`` /
      ``collected``).
    - ``coupon``: issues one coupon of ``coupon_template`` per unit redeemed.
    - ``benefit``: grants ``benefit_quantity`` uses of ``benefit_code`` per unit redeemed.

    The price is ``points`` per unit plus, optionally, ``cash_amount`` in ``currency`` (the programme's
    currency when left out) that the point of sale collects. ``stock`` empty: unlimited.
    """

    model_config = _FORBID

    code: Slug = Field(description="the reward's code, unique in the workspace (e.g. TOTE-BAG)")
    name: Name
    description: Annotated[str, Field(max_length=2000)] = ""
    kind: RewardKind
    points: Annotated[int, Field(ge=1, le=1_000_000_000)] = Field(description="points per unit")
    cash_amount: Cash | None = Field(default=None, description="cash per unit on top of the points")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    stock: Annotated[int, Field(ge=0)] | None = Field(default=None, description="units in all; empty: unlimited")
    per_member_limit: Annotated[int, Field(ge=1)] | None = Field(default=None, description="units per member, ever")
    period_limit: PeriodLimit | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    tiers: list[TierCode] = Field(default=[], max_length=50, description="only members of these tiers; empty: all")
    coupon_template: Slug | None = Field(default=None, description="kind coupon: the template's code")
    benefit_code: Slug | None = Field(default=None, description="kind benefit: the benefit's code")
    benefit_quantity: Annotated[int, Field(ge=1, le=1000)] = 1
    is_active: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> RewardIn:
        if self.kind == "coupon" and self.coupon_template is None:
            raise ValueError("a coupon reward needs coupon_template")
        if self.kind == "benefit" and self.benefit_code is None:
            raise ValueError("a benefit reward needs benefit_code")
        if self.kind != "coupon" and self.coupon_template is not None:
            raise ValueError(f"an {self.kind} reward takes no coupon_template")
        if self.kind != "benefit" and (self.benefit_code is not None or self.benefit_quantity != 1):
            raise ValueError(f"a {self.kind} reward takes no benefit_code or benefit_quantity")
        if self.currency is not None and self.cash_amount is None:
            raise ValueError("currency goes with cash_amount")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if self.period_limit and self.per_member_limit and self.period_limit.count > self.per_member_limit:
            raise ValueError("period_limit.count cannot exceed per_member_limit")
        return self


class RewardOut(BaseModel):
    id: str
    code: str
    name: str
    description: str
    kind: RewardKind
    points: int
    cash_amount: Decimal | None
    currency: str | None
    stock: int | None
    redeemed_count: int
    remaining_stock: int | None = Field(description="units left; null: unlimited")
    per_member_limit: int | None
    period_limit: PeriodLimit | None
    valid_from: datetime | None
    valid_until: datetime | None
    tiers: list[str]
    coupon_template: str | None
    benefit_code: str | None
    benefit_quantity: int
    is_active: bool
    version: int
    created_at: datetime
    updated_at: datetime


class RedeemRewardIn(BaseModel):
    model_config = _FORBID

    quantity: Annotated[int, Field(ge=1, le=100)] = 1
    idempotency_key: Key = Field(description="a replay with the same key returns the first outcome")


class RewardRedemptionOut(BaseModel):
    id: str
    reward_code: str
    reward_name: str
    kind: RewardKind
    reward_version: int
    member_id: str
    quantity: int
    points: int
    cash_amount: Decimal | None = Field(description="the cash part in all, for the point of sale to collect")
    currency: str | None
    status: RedemptionStatus
    fulfilment_status: FulfilmentStatus | None
    fulfilment_note: str
    coupon_codes: list[str]
    benefit_grant_id: int | None
    points_movement_id: int
    reversal_movement_id: int | None
    redeemed_at: datetime
    fulfilment_updated_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str


class RedeemRewardOut(BaseModel):
    redemption: RewardRedemptionOut
    balance: BalanceOut = Field(description="the member's points after the redemption")
    is_replay: bool = Field(description="true when this answers a replay of an earlier redeem")


class RewardRedemptionPage(BaseModel):
    items: list[RewardRedemptionOut]


class CancelRedemptionIn(BaseModel):
    model_config = _FORBID

    reason: Reason


class CancelRedemptionOut(BaseModel):
    redemption: RewardRedemptionOut
    points_returned: int = Field(description="points given back; points whose lot lapsed since are not")
    is_replay: bool = Field(description="true when the redemption was cancelled before")


class FulfilmentIn(BaseModel):
    model_config = _FORBID

    status: Literal["shipped", "collected"]
    note: Annotated[str, Field(max_length=200)] = Field(default="", description="e.g. a parcel tracking number")
