from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from memberops.insight.config import InsightConfig
from memberops.insight.tags import Rule


class TagIn(BaseModel):
    """A tag's definition; its name is in the path."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", max_length=500)
    rule: Rule


class TagOut(BaseModel):
    name: str
    version: int
    description: str
    rule: dict[str, Any]
    updated_by: str
    updated_at: datetime


class TagList(BaseModel):
    items: list[TagOut]


class InsightConfigOut(BaseModel):
    """The workspace's insight settings in force; version 0 means the defaults (never set)."""

    version: int
    config: InsightConfig


class InsightSummaryOut(BaseModel):
    """The last finished computation: the moment its traits describe (``as_of``), when it finished, and the
    members per lifecycle stage, AIPL stage, RFM segment and tag — every stage and segment listed in order,
    zeros included."""

    model_config = ConfigDict(from_attributes=True)

    as_of: datetime
    computed_at: datetime | None
    members: int
    buyers: int
    lifecycle: dict[str, int] = Field(description="prospect → new → active → loyal → at_risk → churned")
    aipl: dict[str, int] = Field(description="aware, interested, purchased, loyal")
    segments: dict[str, int] = Field(description="members per RFM segment of the grid in force")
    rfm_unscored: int | None = Field(description="members with no purchase in the RFM window (null: not counted "
                                                  "by that run)")
    tags: dict[str, int]
    changes: dict[str, int] = Field(description="trait changes since the run before, by kind")
    clv: dict[str, Any] = Field(description="the fitted BG/NBD and Gamma–Gamma parameters, or why none was fitted")
