"""Benefits as the API reads and writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

BenefitCategory = Literal["priority_purchase", "queue_skip", "free_alteration", "exclusive_event", "other"]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Quantity = Annotated[int, Field(ge=1, le=1_000_000)]
_FORBID = ConfigDict(extra="forbid")


class BenefitDefinitionIn(BaseModel):
    model_config = _FORBID

    code: Code = Field(examples=["queue-skip"])
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    category: BenefitCategory
    description: Annotated[str, Field(max_length=2000)] = ""
    valid_days: Annotated[int, Field(ge=1, le=3650)] | None = Field(
        default=None, description="how long a grant lasts when the grant names no end; empty: no end")


class BenefitDefinitionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    code: str
    name: str
    category: str
    description: str
    valid_days: int | None
    created_at: datetime


class GrantIn(BaseModel):
    model_config = _FORBID

    benefit_code: Code
    quantity: Quantity
    idempotency_key: Key = Field(description="a replay with the same key returns the same grant")
    source: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] = "api"
    valid_until: AwareDatetime | None = Field(default=None, description="default: the benefit's valid_days")


class GrantOut(BaseModel):
    id: int
    benefit_code: str
    member_id: str
    quantity: int
    remaining: int
    source: str
    valid_from: datetime
    valid_until: datetime | None
    is_replay: bool = False


class BulkGrantItem(BaseModel):
    model_config = _FORBID

    member_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    quantity: Quantity
    idempotency_key: Key = Field(description="a replay with the same key gives nothing more")
    valid_until: AwareDatetime | None = Field(default=None, description="default: the benefit's valid_days")


class BulkGrantIn(BaseModel):
    """One benefit for many members at once (a tier's members, a segment's), in one transaction."""

    model_config = _FORBID

    source: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] = "api"
    grants: Annotated[list[BulkGrantItem], Field(min_length=1, max_length=10_000)]


class BulkGrantOut(BaseModel):
    benefit_code: str
    granted: int = Field(description="grants made by this request")
    replayed: int = Field(description="grants whose idempotency key was seen before: nothing more given")


class ConsumeIn(BaseModel):
    model_config = _FORBID

    quantity: Quantity = 1
    idempotency_key: Key = Field(description="a replay with the same key consumes nothing more")
    reason: Annotated[str, Field(max_length=200)] = ""


class ConsumeOut(BaseModel):
    benefit_code: str
    member_id: str
    consumed: int
    remaining: int
    is_replay: bool


class MemberBenefitOut(BaseModel):
    benefit_code: str
    name: str
    category: str
    remaining: int
    next_expiry: datetime | None
    grants: list[GrantOut]


class MemberBenefits(BaseModel):
    member_id: str
    benefits: list[MemberBenefitOut]
