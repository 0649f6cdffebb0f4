"""What the loyalty endpoints accept and answer."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from memberops.identity.schemas import MemberOut
from memberops.ingest.schemas import Channel, CustomerIn, Opt200
from memberops.loyalty.referral_schemas import ReferralBindingOut, ReferralProblemOut

IdempotencyKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
MAX_POINTS = 1_000_000_000


class PaymentIn(BaseModel):
    """A payment for a paid membership: the amount (at least the fee) and the payment system's reference,
    which is the idempotency key of the join or renewal it pays for."""

    model_config = ConfigDict(extra="forbid")

    amount: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
    reference: IdempotencyKey
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = Field(
        default=None, description="the fee's currency when left out")


class EnrolIn(CustomerIn):
    """A person joining: identifiers and attributes as in the canonical model. ``channel`` and
    ``source_id`` are optional: without ``source_id`` the person is found by their identifiers, so at
    least one identifier is needed. ``is_enrolled`` is accepted for older clients and ignored. ``payment``
    is required when the programme's membership is paid."""

    channel: Channel = Field(default="api", examples=["pos"])
    source_id: Opt200 = Field(default=None, description="the customer's id in the channel, if it has one")  # type: ignore[assignment]
    payment: PaymentIn | None = None


class MembershipOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    programme_version: int
    status: str = Field(description="active | expired | cancelled")
    channel: str
    enrolled_at: datetime
    ends_at: datetime | None = Field(default=None, description="the paid term's end (null: open-ended)")
    auto_renew: bool = False
    cancelled_at: datetime | None = None


class TermOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str = Field(description="join | renewal | cancellation")
    starts_at: datetime
    ends_at: datetime
    fee: Decimal
    refund: Decimal
    currency: str
    payment_reference: str


class MembershipDetailOut(MembershipOut):
    member_id: str
    mode: str = Field(description="the programme's enrolment mode: free | paid | spend_threshold")
    lapses_at: datetime | None = Field(description="when it stops earning: the term's end plus the grace days")
    terms: list[TermOut] = Field(description="paid terms, renewals and cancellations, oldest first")


class MembershipChangeOut(BaseModel):
    membership: MembershipDetailOut
    term: TermOut | None = Field(description="the term (renewal) or cancellation recorded")
    is_replay: bool = Field(description="done before: this is the first outcome, and nothing changed now")


class RenewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment: PaymentIn


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = ""


class EnrolmentOut(BaseModel):
    member_id: str
    member: MemberOut
    membership: MembershipOut
    is_new_member: bool
    is_duplicate: bool = Field(description="this person was already enrolled; nothing changed")
    warnings: list[str] = Field(default=[], description="a welcome coupon or benefit that could not be given")
    referral: ReferralBindingOut | None = Field(default=None, description="the binding to `referrer_code`, if given")
    referral_problem: ReferralProblemOut | None = Field(
        default=None, description="why `referrer_code` was not bound (the enrolment is made all the same)")


class RedeemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(ge=1, le=MAX_POINTS)
    reason: Reason = ""
    idempotency_key: IdempotencyKey


class AdjustIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(ge=-MAX_POINTS, le=MAX_POINTS, description="positive adds, negative takes away; not 0")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    idempotency_key: IdempotencyKey

    @field_validator("points")
    @classmethod
    def _moves_something(cls, value: int) -> int:
        if value == 0:
            raise ValueError("an adjustment moves at least one point")
        return value


class BalanceOut(BaseModel):
    available: int = Field(description="spendable now (negative only when the programme allows a negative balance)")
    pending: int = Field(description="earned, still inside the return window")
    debt: int = Field(description="points owed after refunds of spent points; later earnings settle it first")


class MovementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    points: int
    available_delta: int
    pending_delta: int
    debt_delta: int
    source_type: str
    source_id: str
    reason: str
    occurred_at: datetime
    created_at: datetime


class MovementResultOut(BaseModel):
    movement: MovementOut
    balance: BalanceOut
    is_replay: bool = Field(description="the idempotency_key was seen before: this is the first outcome, "
                                        "and nothing moved now")


class ExpiringOut(BaseModel):
    expires_at: datetime
    points: int


class PointsOut(BaseModel):
    available: int
    pending: int
    debt: int
    expiring: list[ExpiringOut] = Field(description="points still held, by the instant they lapse, soonest first")
    tier: str | None = Field(description="the member's tier code (null: no tier, or the programme has none)")


class LedgerPage(BaseModel):
    items: list[MovementOut]
    next_cursor: int | None = Field(description="pass as `before` for the next (older) page")


class LiabilityMonth(BaseModel):
    month: str | None = Field(description="YYYY-MM the points lapse in (null: they never lapse)")
    points: int
    value: Decimal


class LiabilityOut(BaseModel):
    programme_version: int
    point_value: Decimal
    currency: str
    points: int
    value: Decimal
    debt_points: int = Field(description="points members owe after refunds (not netted from the liability)")
    by_expiry_month: list[LiabilityMonth]


class TierChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_tier: str | None
    to_tier: str | None
    reason: str = Field(description="upgrade | downgrade | keep | manual | merge (the tier of a member merged into this one)")
    period: str = Field(description="the window it was decided on (empty for manual changes)")
    metric_value: str
    note: str
    actor: str
    programme_version: int
    at: datetime


class NextTierOut(BaseModel):
    tier: str
    threshold: Decimal
    missing: Decimal = Field(description="what the metric still needs in the current window")


class TierOut(BaseModel):
    tier: str | None
    name: str | None
    since: datetime | None
    metric: str = Field(description="spend | orders | growth")
    metric_value: Decimal = Field(description="the metric in the current window")
    window_start: datetime
    window_end: datetime
    next_tier: NextTierOut | None
    history: list[TierChangeOut] = Field(description="newest first")


class TierSetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = Field(
        description="the tier code; null removes the member's tier")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
