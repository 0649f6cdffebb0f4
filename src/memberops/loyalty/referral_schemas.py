"""What the referral endpoints accept and answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from memberops.loyalty.referral_models import ReferralBinding
from memberops.loyalty.referral_reports import shown_status

STATUS_HELP = ("awaiting_purchase | pending (rewarded, inside the return window) | rewarded | over_cap (the "
               "referrer had reached the period's cap: recorded, not rewarded) | ineligible (the friend had "
               "bought before binding)")


class ReferralBindIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] = Field(
        description="the referrer's referral code or member card number, or a link carrying `?ref=CODE`",
        examples=["K7QM3XPA"])


class ReferralBindingOut(BaseModel):
    friend_member_id: str
    referrer_member_id: str
    code: str
    source: str = Field(description="api | enrolment | import")
    status: str = Field(description=STATUS_HELP)
    is_rewardable: bool = Field(description="the binding can still earn (or has earned) the referral rewards")
    bound_at: datetime
    reward_order: str | None = Field(description="channel:order_id of the rewarded purchase")
    reward_available_at: datetime | None
    referrer_points: int
    friend_points: int
    clawbacks: int = Field(description="rewards taken back after a full refund of the rewarded order")


def binding_out(binding: ReferralBinding, now: datetime) -> ReferralBindingOut:
    return ReferralBindingOut(
        friend_member_id=binding.friend_member_id, referrer_member_id=binding.referrer_member_id, code=binding.code,
        source=binding.source, status=shown_status(binding, now),
        is_rewardable=binding.status in ("awaiting_purchase", "rewarded"), bound_at=binding.bound_at,
        reward_order=binding.reward_order, reward_available_at=binding.reward_available_at,
        referrer_points=binding.referrer_points, friend_points=binding.friend_points, clawbacks=binding.clawbacks)


class ReferralBoundOut(BaseModel):
    binding: ReferralBindingOut
    is_replay: bool = Field(description="this binding existed already: nothing changed")


class ReferralCounts(BaseModel):
    bindings: int = Field(description="friends bound with this member's code")
    awaiting_purchase: int
    pending: int = Field(description="rewarded, still inside the return window")
    rewarded: int
    over_cap: int
    ineligible: int


class ReferralsOut(BaseModel):
    member_id: str
    code: str | None = Field(description="the member's personal referral code (share it, or a link `…?ref=CODE`)")
    referred_by: ReferralBindingOut | None
    counts: ReferralCounts
    points_earned: int = Field(description="referral points earned as referrer (pending included)")
    friends: list[ReferralBindingOut] = Field(description="newest first")


class ReferrerOut(BaseModel):
    member_id: str
    code: str | None
    bindings: int
    rewarded: int
    over_cap: int
    ineligible: int
    points: int


class ReferralProblemOut(BaseModel):
    code: str
    detail: str
