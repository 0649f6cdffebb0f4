"""Each workspace's insight settings (RFM window and grid, lifecycle rules, CLV and KOC parameters), stored.

Configuration is data (DESIGN rule 6), as OneID's settings are (``identity/config.py``): a validated
:class:`~memberops.insight.config.InsightConfig` document, versioned in the state store — every change is a
new version with who made it, and the audit log records which fields changed. ``insight compute`` and the
nightly job read the current version; a workspace that never set anything runs on the defaults.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from memberops.audit.service import Actor, record
from memberops.insight.config import InsightConfig
from memberops.insight.errors import InvalidInsightConfig
from memberops.insight.models import InsightConfigVersion

DEFAULT = InsightConfig()


def parse(document: Any) -> InsightConfig:
    """``document`` (a mapping, as read from YAML or JSON) as a configuration, or every problem with it."""
    if not isinstance(document, dict):
        raise InvalidInsightConfig([{"field": "", "message": "the configuration is an object of settings"}])
    try:
        return InsightConfig.model_validate(document)
    except ValidationError as exc:
        raise InvalidInsightConfig([
            {"field": ".".join(str(part) for part in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]) from None


def current_version(session: Session, workspace_id: str) -> tuple[InsightConfig, int]:
    """The workspace's configuration in force and its version (0: the defaults, never set). Reads only."""
    row = session.scalars(
        select(InsightConfigVersion).where(InsightConfigVersion.workspace_id == workspace_id)
        .order_by(InsightConfigVersion.version.desc()).limit(1)
    ).first()
    if row is None:
        return DEFAULT, 0
    return InsightConfig.model_validate(row.document), row.version


def current(session: Session, workspace_id: str) -> InsightConfig:
    """The workspace's configuration in force (the defaults when none was saved). Reads only."""
    return current_version(session, workspace_id)[0]


def _changed(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ (``rfm.window_days``), never their values."""
    names: list[str] = []
    for name in type(after).model_fields:
        old, new = getattr(before, name), getattr(after, name)
        if old == new:
            continue
        if isinstance(new, BaseModel):  # a settings group (rfm, lifecycle …): name its fields
            names += _changed(old, new, f"{prefix}{name}.")
        else:
            names.append(f"{prefix}{name}")
    return names


def update(session: Session, workspace_id: str, document: Any, *, actor: Actor) -> tuple[InsightConfig, int]:
    """Validate ``document`` (fields left out keep their defaults) and make it the new version.

    A bad document raises :class:`InvalidInsightConfig` naming every bad field, and nothing is stored. The
    audit entry lists the changed fields' names only. The same settings given again (a retried PUT or
    ``config set``) answer the version in force and store nothing: a replay is never a second change.
    """
    config = parse(document)
    previous, latest = current_version(session, workspace_id)
    if latest and config == previous:
        return previous, latest
    version = latest + 1  # the unique (workspace, version) key refuses a concurrent writer's same number
    session.add(InsightConfigVersion(workspace_id=workspace_id, version=version,
                                     document=config.model_dump(mode="json"), created_by=f"{actor.type}:{actor.id}"))
    session.flush()
    record(session, actor, "insight.config.update", workspace_id=workspace_id, target_type="insight_config",
           target_id=str(version), detail={"version": version, "changed": sorted(_changed(previous, config))})
    return config, version
