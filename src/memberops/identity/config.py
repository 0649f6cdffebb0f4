"""Each workspace's OneID settings: which identifiers join records, the guard rails, the match thresholds.

Configuration is data (DESIGN rule 6): a validated document, versioned in the state store — every change
is a new version with who made it, and the audit log records it. Batch resolution (``identity resolve``)
and the live path (``resolve_customer``) read the same current version, so a value an operator blocks is
blocked everywhere. A workspace that never set anything runs on the defaults below.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.orm import Session

from memberops.audit.service import Actor
from memberops.identity.errors import InvalidIdentityConfig
from memberops.identity.matching import MatchSettings
from memberops.identity.models import IdentityConfigVersion
from memberops.identity.normalise import IDENTIFIER_TYPES
from memberops.identity.stitch import BLOCKED_VALUES, STRONG_TYPES, StitchRules
from memberops.settings_versions import VersionedSettings


class IdentityConfig(BaseModel):
    """What an operator may set; the defaults suit a consumer brand."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strong_types: tuple[str, ...] = Field(
        default=STRONG_TYPES, min_length=1,
        description="identifier types that make two records one person, most trusted first",
    )
    max_records_per_identifier: int = Field(
        default=8, ge=2, description="an identifier value carried by more records is flagged and never merges",
    )
    max_per_person: dict[str, int] = Field(
        default_factory=lambda: {"wechat_unionid": 1},
        description="how many distinct values of a type one person may have (a merge past it is undone)",
    )
    blocked_values: tuple[str, ...] = Field(
        default=BLOCKED_VALUES, description="values never used to join records (placeholders, test data)",
    )
    match_threshold: float = Field(default=0.9, gt=0, lt=1, description="match probability to merge at")
    review_threshold: float = Field(default=0.5, gt=0, lt=1, description="match probability to send to review at")

    @field_validator("strong_types")
    @classmethod
    def _known_types(cls, types: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in types if t not in IDENTIFIER_TYPES]
        if unknown:
            raise ValueError(f"unknown identifier types {unknown}; known: {list(IDENTIFIER_TYPES)}")
        if len(set(types)) != len(types):
            raise ValueError("each identifier type once")
        return types

    @field_validator("max_per_person")
    @classmethod
    def _limits(cls, limits: dict[str, int]) -> dict[str, int]:
        unknown = [t for t in limits if t not in IDENTIFIER_TYPES]
        if unknown:
            raise ValueError(f"unknown identifier types {unknown}; known: {list(IDENTIFIER_TYPES)}")
        if any(limit < 1 for limit in limits.values()):
            raise ValueError("a per-person limit is at least 1")
        return limits

    @field_validator("blocked_values")
    @classmethod
    def _blocked(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.strip().lower() for v in values if v.strip()))

    @model_validator(mode="after")
    def _thresholds(self) -> IdentityConfig:
        if self.review_threshold > self.match_threshold:
            raise ValueError("review_threshold must not exceed match_threshold")
        return self

    def stitch_rules(self) -> StitchRules:
        return StitchRules(strong_types=self.strong_types, max_records_per_identifier=self.max_records_per_identifier,
                           max_per_person=dict(self.max_per_person), blocked_values=self.blocked_values)

    def match_settings(self, base: MatchSettings | None = None) -> MatchSettings:
        return (base or MatchSettings()).model_copy(
            update={"match_threshold": self.match_threshold, "review_threshold": self.review_threshold})

    def is_blocked(self, value: str) -> bool:
        return value.strip().lower() in self.blocked_values


STORE = VersionedSettings(kind="OneID", model=IdentityConfig, row=IdentityConfigVersion,
                          invalid=InvalidIdentityConfig, audit_action="identity.config.update",
                          target_type="identity_config")
DEFAULT = STORE.default


def parse(document: Any) -> IdentityConfig:
    """``document`` (a mapping, as read from YAML or JSON) as a configuration, or every problem with it."""
    return STORE.parse(document)


def current(session: Session, workspace_id: str) -> tuple[IdentityConfig, int]:
    """The workspace's configuration in force and its version (0: the defaults, never set)."""
    return STORE.current(session, workspace_id)


def update(session: Session, workspace_id: str, document: Any, *, actor: Actor,
           based_on: int | None = None) -> tuple[IdentityConfig, int]:
    """Validate ``document`` (fields left out keep their defaults) and make it the new version, as
    :meth:`~memberops.settings_versions.VersionedSettings.update` does: a bad document raises
    :class:`InvalidIdentityConfig` with every problem and stores nothing; a stale ``based_on`` or the loser
    of two saves at once raises :class:`~memberops.settings_versions.SettingsConflict`. The audit entry
    names the changed fields only: blocked values can be real phones or e-mails.
    """
    return STORE.update(session, workspace_id, document, actor=actor, based_on=based_on)
