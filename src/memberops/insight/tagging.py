"""Tag definitions in the state store: versioned, audited, read by every computation.

``put_tag`` adds a version (a PUT of an unchanged definition adds none: replays change nothing);
``delete_tag`` adds a deletion version, so the history of a tag is never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from memberops.audit.service import Actor, record
from memberops.documents import YamlSyntaxError, line_of, load_yaml
from memberops.insight.errors import InvalidTag, TagExists, TagNotFound
from memberops.insight.models import TagVersion
from memberops.insight.service import latest_run
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


# --- the console: tags as an operator reads and writes them ----------------------------------------------

DESCRIPTION_MAX = 500  # the column's size, and the API's limit


def rule_yaml(rule: dict[str, Any]) -> str:
    """A stored rule as the YAML an operator edits."""
    return yaml.safe_dump(rule, sort_keys=False, allow_unicode=True, default_flow_style=False)


@dataclass(frozen=True)
class TagSummary:
    """A current tag, its rule as YAML, and how many members had it at the last computation (``None``:
    not computed since the tag was made, or never)."""

    definition: TagDefinition
    version: TagVersion
    rule_text: str
    members: int | None


@dataclass(frozen=True)
class TagsOverview:
    tags: Sequence[TagSummary]
    computed_at: datetime | None  # when the last computation, the member counts come from, finished
    as_of: datetime | None = None  # the moment that computation's traits describe (``insight compute --as-of``)


def tags_overview(session: Session, workspace_id: str) -> TagsOverview:
    """The workspace's current tags with their rules and member counts from the last insight computation.

    A tag created or changed after that computation has no count yet: the count would describe another
    rule.
    """
    run = latest_run(session, workspace_id)
    counts: dict[str, int] = dict((run.summary or {}).get("tags") or {}) if run is not None else {}
    finished = run.finished_at if run is not None else None
    summaries = []
    for definition, row in list_tags(session, workspace_id):
        counted = finished is not None and row.created_at <= finished and definition.name in counts
        summaries.append(TagSummary(definition, row, rule_yaml(row.rule), int(counts[definition.name]) if counted else None))
    return TagsOverview(summaries, finished, run.as_of if run is not None else None)


def _path_label(loc: Sequence[Any]) -> str:
    """A pydantic error path without the repeated tag of a tagged union: ``all.0.trait``."""
    parts: list[str] = []
    for part in loc:
        if not parts or parts[-1] != str(part):
            parts.append(str(part))
    return ".".join(parts)


def _message(error: ErrorDetails) -> str:
    return str(error["msg"]).removeprefix("Value error, ")


def parse_tag_text(name: str, description: str, rule_text: str) -> TagDefinition:
    """A tag from a console form: its name, description and rule as YAML (or JSON).

    :class:`InvalidTag` carries ``errors``: one ``{"field", "message", "line"}`` per problem, ``field``
    being ``name``, ``description`` or ``rule`` and ``line`` the 1-based line of the rule text.
    """
    errors: list[dict[str, Any]] = []
    if len(description) > DESCRIPTION_MAX:
        errors.append({"field": "description", "message": f"at most {DESCRIPTION_MAX} characters", "line": None})
    rule: Any = None
    try:
        rule = load_yaml(rule_text)
    except YamlSyntaxError as exc:
        errors.append({"field": "rule", "message": exc.message, "line": exc.line})
    else:
        if rule is None:
            errors.append({"field": "rule", "message": "a tag needs a rule", "line": None})
    try:
        definition = TagDefinition.model_validate({"name": name, "description": description,
                                                   "rule": rule if rule is not None else {}})
    except ValidationError as exc:
        for error in exc.errors():
            field, *path = error["loc"] or ("rule",)
            if field == "rule" and any(e["field"] == "rule" for e in errors):
                continue  # the rule text is already reported as unreadable or empty
            where = _path_label(path)
            errors.append({"field": str(field), "message": f"{_message(error)} (at {where})" if where else _message(error),
                           "line": line_of(rule_text, path) if field == "rule" and path else None})
    if errors:
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        raise InvalidTag(f"the tag is not valid: {fields}", errors=errors)
    return definition


def save_tag_text(session: Session, workspace_id: str, *, name: str, description: str, rule_text: str,
                  is_new: bool, actor: Actor) -> tuple[TagVersion, bool]:
    """Create (``is_new``) or change a tag from a console form, as :func:`put_tag` does (a version when it
    changed, audited). A new tag under a current tag's name raises :class:`TagExists`: a create form
    never overwrites a rule it did not show; changing a tag that is not there raises :class:`TagNotFound`
    (an edit form left open while someone deleted it). Sending the same form twice changes nothing the
    second time.
    """
    definition = parse_tag_text(name, description, rule_text)
    if not is_new:
        get_tag(session, workspace_id, definition.name)
    else:
        try:
            _, current = get_tag(session, workspace_id, definition.name)
        except TagNotFound:
            pass
        else:
            if current.rule != _rule_document(definition) or current.description != definition.description:
                raise TagExists(definition.name)
    return put_tag(session, workspace_id, definition, actor=actor)
