from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from memberops.identity.config import IdentityConfig


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    is_enrolled: bool
    enrolled_at: datetime | None
    created_at: datetime


class OrderLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str | None
    category: str | None
    quantity: int | None
    amount: Decimal | None


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    order_id: str
    ordered_at: datetime
    status: str | None
    paid_amount: Decimal | None
    refunded_amount: Decimal
    currency: str | None
    store_id: str | None
    items: list[OrderLineOut]
    source: str = Field(description="`lake`, or `live`: posted over the API and read from the state store")


class RefundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    refund_id: str
    order_id: str
    refunded_at: datetime
    amount: Decimal | None
    source: str


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    event_id: str
    type: str
    occurred_at: datetime
    properties: dict[str, Any]
    source: str


class IdentityChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str = Field(description="merge | unmerge | split")
    at: datetime
    description: str
    other_member_id: str | None
    actor: str
    reason: str


class TimelineEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    kind: str = Field(description="order | refund | event | identity | trait")
    title: str
    detail: str
    channel: str


class MemberProfile(MemberOut):
    """The 360° profile. Sections that are not computed yet are null (traits before the first
    `memberops insight compute`, loyalty for a person outside the programme)."""

    golden: dict[str, Any] | None = Field(
        description="one name, phone, e-mail, birthday and address chosen by survivorship at the last "
                    "resolution run (null before the first run)")
    merged_from: str | None = Field(
        default=None, description="the id asked for, when a merge absorbed it into this member (this is the "
                                  "survivor's profile); null when the id asked for is this member's own")
    identities: list[IdentityOut] = Field(default_factory=list, description="the member's channel records")
    identifier_types: list[IdentifierOut] = Field(default_factory=list,
                                                  description="which identifiers are known (values withheld)")
    traits: dict[str, Any] | None = Field(default=None, description="the serving traits of the latest computation")
    tags: list[str] | None = None
    rfm: dict[str, Any] | None = Field(default=None, description="r, f, m quintile scores, score and segment")
    lifecycle: dict[str, Any] | None = Field(default=None, description="lifecycle stage and AIPL stage")
    clv: dict[str, Any] | None = Field(
        default=None, description="expected purchases and spend, P(alive), churn risk, CLV")
    loyalty: dict[str, Any] | None = Field(
        default=None, description="membership, points, coupons and benefits; null for a person outside the programme")
    recent_orders: list[OrderOut] = Field(default_factory=list, description="newest first, lake and live")
    recent_refunds: list[RefundOut] = Field(default_factory=list)
    recent_events: list[EventOut] = Field(default_factory=list)
    identity_changes: list[IdentityChangeOut] = Field(default_factory=list)
    timeline: list[TimelineEntryOut] = Field(
        default_factory=list, description="orders, refunds, events, identity and trait changes, newest first")


class MemberMatchOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    member_id: str
    matched_on: str = Field(description="phone | email | member_card_no | member_id | name")
    full_name: str | None
    phone: str | None
    email: str | None
    city: str | None
    is_enrolled: bool


class MemberSearchResult(BaseModel):
    items: list[MemberMatchOut]


class IdentityOut(BaseModel):
    channel: str
    source_id: str


class IdentifierOut(BaseModel):
    type: str
    channel: str


class MemberIdentities(BaseModel):
    member_id: str
    identities: list[IdentityOut]
    identifier_types: list[IdentifierOut] = Field(description="which identifiers are known (values withheld)")


class MemberPage(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None


class RecordRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(min_length=1, max_length=32)
    source_id: str = Field(min_length=1, max_length=200)


class PairDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    a: RecordRef
    b: RecordRef
    reason: str = Field(default="", max_length=500)


class SplitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    record: RecordRef
    reason: str = Field(default="", max_length=500)


class DecisionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    channel_a: str
    source_id_a: str
    channel_b: str | None
    source_id_b: str | None
    reason: str
    created_at: datetime
    takes_effect: str = Field(default="at the next `identity resolve` run")


class IdentityConfigOut(BaseModel):
    """The workspace's OneID settings in force; version 0 means the defaults (never set)."""

    version: int
    config: IdentityConfig
