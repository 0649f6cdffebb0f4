from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from memberops.identity.config import IdentityConfig


class CustomerIn(BaseModel):
    """A channel's customer record, as posted live."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_\-]+$", examples=["pos"])
    source_id: str = Field(min_length=1, max_length=200, description="the customer's id in that channel")
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)
    wechat_unionid: str | None = Field(default=None, max_length=128)
    wechat_openid: str | None = Field(default=None, max_length=128)
    buyer_id: str | None = Field(default=None, max_length=128)
    member_card_no: str | None = Field(default=None, max_length=64)
    is_enrolled: bool = False

    def identifiers(self) -> dict[str, str | None]:
        return {
            "phone": self.phone, "email": self.email, "wechat_unionid": self.wechat_unionid,
            "wechat_openid": self.wechat_openid, "buyer_id": self.buyer_id, "member_card_no": self.member_card_no,
        }


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


class CustomerResolved(BaseModel):
    member: MemberOut
    is_new_member: bool
    is_duplicate: bool = Field(description="the (channel, source_id) was already known; nothing changed")


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
