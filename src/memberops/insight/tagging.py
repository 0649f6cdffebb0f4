"""Tag definitions in the state store: versioned, audited, read by every computation.

``put_tag`` adds a version (a PUT of an unchanged definition adds none: replays change nothing);
``delete_tag`` adds a deletion version, so the history of a tag is never lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from memberops.audit.service import Actor, record
from memberops.insight.errors import InvalidTag, TagNotFound
from memberops.insight.models import TagVersion
from memberops.insight.tags import TagDefinition, TagFile


def _latest(session: Session, workspace_id: str) -> list[TagVersion]:
    newest = (select(TagVersion.name, func.max(TagVersion.version).label("version"))
              .where(TagVersion.workspace_id == workspace_id).group_by(TagVersion.name).subquery())
    rows = session.scalars(select(TagVersion).join(
        newest, (TagVersion.name == newest.c.name) & (TagVersion.version == newest.c.version)).where(
        TagVersion.workspace_id == workspace_id).order_by(TagVersion.name))
    return [row for row in rows if not row.deleted]


def _definition(row: TagVersion) -> TagDefinition:
    return TagDefinition.model_validate({"name": row.name, "description": row.description, "rule": row.rule})


def list_tags(session: Session, workspace_id: str) -> list[tuple[TagDefinition, TagVersion]]:
    """The current tags of the workspace (by name), each with its stored version row."""
    return [(_definition(row), row) for row in _latest(session, workspace_id)]


def tag_definitions(session: Session, workspace_id: str) -> list[TagDefinition]:
    return [definition for definition, _ in list_tags(session, workspace_id)]


def get_tag(session: Session, workspace_id: str, name: str) -> tuple[TagDefinition, TagVersion]:
    row = session.scalars(select(TagVersion).where(TagVersion.workspace_id == workspace_id, TagVersion.name == name)
                          .order_by(TagVersion.version.desc()).limit(1)).first()
    if row is None or row.deleted:
        raise TagNotFound(name)
    return _definition(row), row


def _rule_document(definition: TagDefinition) -> dict[str, Any]:
    return definition.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)["rule"]


def put_tag(session: Session, workspace_id: str, definition: TagDefinition, *, actor: Actor) -> tuple[TagVersion, bool]:
    """Store ``definition`` as the tag's newest version; ``(row, changed)``. Audited when it changed."""
    current = session.scalars(select(TagVersion).where(
        TagVersion.workspace_id == workspace_id, TagVersion.name == definition.name)
        .order_by(TagVersion.version.desc()).limit(1)).first()
    rule = _rule_document(definition)
    if current is not None and not current.deleted and current.rule == rule \
            and current.description == definition.description:
        return current, False
    row = TagVersion(workspace_id=workspace_id, name=definition.name, version=(current.version + 1) if current else 1,
                     description=definition.description, rule=rule, actor=f"{actor.type}:{actor.id}")
    session.add(row)
    session.flush()
    record(session, actor, "tag.put", workspace_id=workspace_id, target_type="tag", target_id=definition.name,
           detail={"version": row.version})
    return row, True


def delete_tag(session: Session, workspace_id: str, name: str, *, actor: Actor) -> TagVersion:
    """Retire tag ``name`` (a deletion version; its history stays). Audited."""
    _, current = get_tag(session, workspace_id, name)
    row = TagVersion(workspace_id=workspace_id, name=name, version=current.version + 1, description="",
                     rule={}, deleted=True, actor=f"{actor.type}:{actor.id}")
    session.add(row)
    session.flush()
    record(session, actor, "tag.delete", workspace_id=workspace_id, target_type="tag", target_id=name,
           detail={"version": row.version})
    return row


def read_tag_file(path: Path) -> list[TagDefinition]:
    """Tags from a YAML file ``tags: [{name, description, rule}, …]``; a clear error names what is wrong."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidTag(f"{path.name} is not valid YAML: {exc}") from exc
    try:
        return TagFile.model_validate(document).tags
    except ValidationError as exc:
        raise InvalidTag(f"{path.name}: {validation_message(exc)}") from exc


def validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
