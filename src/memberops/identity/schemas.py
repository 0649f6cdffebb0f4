from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    is_enrolled: bool
    enrolled_at: datetime | None
    created_at: datetime


class MemberProfile(MemberOut):
    golden: dict[str, Any] | None = Field(
        description="one name, phone, e-mail, birthday and address chosen by survivorship at the last "
                    "resolution run (null before the first run)")


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
