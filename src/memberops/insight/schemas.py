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
