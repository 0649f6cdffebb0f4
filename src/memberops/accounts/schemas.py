from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class WhoAmI(BaseModel):
    workspace: str
    workspace_name: str
    key_name: str
    scopes: list[str]


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1, examples=[["ingest", "loyalty"]])


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyIssued(ApiKeyOut):
    key: str = Field(description="the secret key; shown only in this response")
