"""A workspace's versioned settings document (OneID's, insight's): validate, read, save a new version.

Configuration is data (DESIGN rule 6). Each kind of settings is a frozen pydantic model stored as rows
``(workspace_id, version, document, created_by, created_at)`` with a unique ``(workspace_id, version)``;
the highest version is in force and version 0 means "never set: the defaults". Every change is a new
version with who made it, and the audit log names the fields that changed — never their values (OneID's
blocked values can be real phones). :class:`VersionedSettings` does this once for every kind; the domain
modules (``identity/config.py``, ``insight/config_store.py``) declare theirs and keep their own functions.

Two admins saving at the same instant: both read version N and both write N + 1. The unique key lets
one win; the other gets :class:`SettingsConflict` (HTTP 409 ``settings_conflict``), never a database error.
On SQLite writers are serialised by ``BEGIN IMMEDIATE``, so there the second simply saves N + 2 — unless
it said which version it started from (``based_on``, as the console's form does), which is then stale and
refused with the same error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from memberops.accounts import service as accounts
from memberops.audit.service import Actor, record
from memberops.documents import YamlSyntaxError, load_yaml, problems_of, with_lines
from memberops.errors import Conflict, Invalid

Settings = TypeVar("Settings", bound=BaseModel)


class SettingsConflict(Conflict):
    """A settings save lost to another one: it started from a version that is no longer in force (a stale
    form), or another admin saved the same new version at the same instant. Saving anyway would undo a
    change its author has not seen; reload, re-apply, save again."""

    code = "settings_conflict"

    def __init__(self, kind: str, current_version: int, based_on: int | None) -> None:
        started = f"you started from version {based_on}, " if based_on is not None else ""
        super().__init__(f"the {kind} settings were changed by someone else while you edited them: {started}"
                         f"version {current_version} is now in force; reload them and make your change again",
                         kind=kind, current_version=current_version, based_on=based_on)
        self.current_version = current_version


class VersionRow(Protocol):
    """The columns every settings-version table has (``IdentityConfigVersion``, ``InsightConfigVersion``)."""

    workspace_id: Any
    version: Any
    document: Any
    created_by: Any
    created_at: Any


@dataclass(frozen=True)
class SettingsVersionInfo:
    """One version in a settings history: when and by whom (an operator's e-mail, ``cli:…``, ``key:…``)."""

    version: int
    created_at: datetime
    created_by: str


def changed_fields(before: BaseModel, after: BaseModel, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ (``rfm.window_days``), never their values."""
    names: list[str] = []
    for name in type(after).model_fields:
        old, new = getattr(before, name), getattr(after, name)
        if old == new:
            continue
        if isinstance(new, BaseModel) and isinstance(old, BaseModel):  # a settings group: name its fields
            names += changed_fields(old, new, f"{prefix}{name}.")
        else:
            names.append(f"{prefix}{name}")
    return names


class VersionedSettings(Generic[Settings]):
    """One kind of versioned settings: its model, its table, its validation error and its audit action."""

    def __init__(self, *, kind: str, model: type[Settings], row: type[Any],
                 invalid: Callable[[list[dict[str, Any]]], Invalid], audit_action: str, target_type: str) -> None:
        self.kind = kind  # "OneID", "insight": how messages name these settings
        self.model = model
        self.row = row
        self.invalid = invalid
        self.audit_action = audit_action
        self.target_type = target_type
        self.default = model()

    def parse(self, document: Any) -> Settings:
        """``document`` (a mapping, as read from YAML or JSON) as settings, or every problem with it."""
        if not isinstance(document, dict):
            raise self.invalid([{"field": "", "message": "the configuration is an object of settings"}])
        try:
            return self.model.model_validate(document)
        except ValidationError as exc:
            raise self.invalid(problems_of(exc)) from None

    def parse_text(self, text: str) -> Settings:
        """Settings written as YAML (or JSON) ``text``; each problem also names its ``line`` (1-based)."""
        try:
            document = load_yaml(text)
        except YamlSyntaxError as exc:
            raise self.invalid([{"field": "", "message": exc.message, "line": exc.line}]) from None
        try:
            return self.parse({} if document is None else document)
        except Invalid as exc:
            raise self.invalid(with_lines(text, exc.facts["problems"])) from None

    def as_yaml(self, settings: Settings) -> str:
        """``settings`` as the YAML an operator edits (``config show`` prints the same)."""
        return yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    def current(self, session: Session, workspace_id: str) -> tuple[Settings, int]:
        """The settings in force and their version (0: the defaults, never set). Reads only."""
        row = session.scalars(select(self.row).where(self.row.workspace_id == workspace_id)
                              .order_by(self.row.version.desc()).limit(1)).first()
        if row is None:
            return self.default, 0
        return self.model.model_validate(row.document), row.version

    def update(self, session: Session, workspace_id: str, document: Any, *, actor: Actor,
               based_on: int | None = None) -> tuple[Settings, int]:
        """Validate ``document`` (fields left out take their defaults) and make it the new version, audited.

        A bad document raises the kind's validation error naming every bad field; nothing is stored. The
        settings in force given again (a retried PUT, a form sent twice) answer their version and store
        nothing. ``based_on``, the version the editor started from, is refused with
        :class:`SettingsConflict` when another version came into force since; so is the loser of two saves
        at the same instant.
        """
        settings = self.parse(document)
        return self._save(session, workspace_id, settings, actor=actor, based_on=based_on)

    def update_text(self, session: Session, workspace_id: str, text: str, *, actor: Actor,
                    based_on: int | None = None) -> tuple[Settings, int]:
        """:meth:`update` from YAML text (a console form): problems name their line too."""
        settings = self.parse_text(text)
        return self._save(session, workspace_id, settings, actor=actor, based_on=based_on)

    def _save(self, session: Session, workspace_id: str, settings: Settings, *, actor: Actor,
              based_on: int | None) -> tuple[Settings, int]:
        previous, latest = self.current(session, workspace_id)
        if latest and settings == previous:
            return previous, latest
        if based_on is not None and based_on != latest:
            raise SettingsConflict(self.kind, latest, based_on)
        version = latest + 1
        try:
            # A savepoint, so that losing the race on the unique (workspace, version) key leaves the
            # transaction usable to read the winner's version for the message.
            with session.begin_nested():
                session.add(self.row(workspace_id=workspace_id, version=version,
                                     document=settings.model_dump(mode="json"),
                                     created_by=f"{actor.type}:{actor.id}"[:100]))
        except IntegrityError:
            raise SettingsConflict(self.kind, self.current(session, workspace_id)[1], based_on) from None
        record(session, actor, self.audit_action, workspace_id=workspace_id, target_type=self.target_type,
               target_id=str(version), detail={"version": version, "changed": sorted(changed_fields(previous, settings))})
        return settings, version

    def history(self, session: Session, workspace_id: str, *, limit: int = 50) -> Sequence[SettingsVersionInfo]:
        """The versions newest first (at most ``limit``); an operator's id shown as their e-mail."""
        rows = session.scalars(select(self.row).where(self.row.workspace_id == workspace_id)
                               .order_by(self.row.version.desc()).limit(limit)).all()
        emails = {f"user:{user.id}": user.email for user in accounts.list_users(session, workspace_id)}
        return [SettingsVersionInfo(row.version, row.created_at, emails.get(row.created_by, row.created_by))
                for row in rows]
