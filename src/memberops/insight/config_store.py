"""Each workspace's insight settings (RFM window and grid, lifecycle rules, CLV and KOC parameters), stored.

Configuration is data (DESIGN rule 6), as OneID's settings are (``identity/config.py``), and through the
same helper (:class:`~memberops.settings_versions.VersionedSettings`): a validated
:class:`~memberops.insight.config.InsightConfig` document, versioned in the state store — every change is a
new version with who made it, and the audit log records which fields changed. ``insight compute``, the
nightly job, the points backfill and the referral import read the current version; a workspace that never
set anything runs on the defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from memberops.audit.service import Actor
from memberops.insight.config import InsightConfig
from memberops.insight.errors import InvalidInsightConfig
from memberops.insight.models import InsightConfigVersion
from memberops.settings_versions import SettingsVersionInfo, VersionedSettings

STORE = VersionedSettings(kind="insight", model=InsightConfig, row=InsightConfigVersion,
                          invalid=InvalidInsightConfig, audit_action="insight.config.update",
                          target_type="insight_config")
DEFAULT = STORE.default


def parse(document: Any) -> InsightConfig:
    """``document`` (a mapping, as read from YAML or JSON) as a configuration, or every problem with it."""
    return STORE.parse(document)


def current_version(session: Session, workspace_id: str) -> tuple[InsightConfig, int]:
    """The workspace's configuration in force and its version (0: the defaults, never set). Reads only."""
    return STORE.current(session, workspace_id)


def current(session: Session, workspace_id: str) -> InsightConfig:
    """The workspace's configuration in force (the defaults when none was saved). Reads only."""
    return STORE.current(session, workspace_id)[0]


def update(session: Session, workspace_id: str, document: Any, *, actor: Actor,
           based_on: int | None = None) -> tuple[InsightConfig, int]:
    """Validate ``document`` (fields left out keep their defaults) and make it the new version.

    A bad document raises :class:`InvalidInsightConfig` naming every bad field, and nothing is stored. The
    audit entry lists the changed fields' names only. The same settings given again (a retried PUT or
    ``config set``) answer the version in force and store nothing: a replay is never a second change. A
    stale ``based_on`` (someone saved since) or the loser of two saves at the same instant raises
    :class:`~memberops.settings_versions.SettingsConflict`.
    """
    return STORE.update(session, workspace_id, document, actor=actor, based_on=based_on)


def update_text(session: Session, workspace_id: str, text: str, *, actor: Actor,
                based_on: int | None) -> tuple[InsightConfig, int]:
    """:func:`update` from the YAML an operator edited in the console; problems also name their line."""
    return STORE.update_text(session, workspace_id, text, actor=actor, based_on=based_on)


def settings_yaml(settings: InsightConfig) -> str:
    """The settings as the YAML an operator edits."""
    return STORE.as_yaml(settings)


def history(session: Session, workspace_id: str, *, limit: int = 50) -> Sequence[SettingsVersionInfo]:
    """The settings' versions, newest first, with who made each."""
    return STORE.history(session, workspace_id, limit=limit)
