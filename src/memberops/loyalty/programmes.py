"""Programme versions in the state store: the active one, and a new version for every change (audited).

A workspace without any version runs the default programme; its first read writes it as version 1, so
every membership and movement names a version that exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from memberops.accounts import service as accounts
from memberops.accounts.models import Workspace
from memberops.audit.service import Actor, record
from memberops.db.base import utcnow
from memberops.db.dialect import insert_ignoring_conflicts
from memberops.loyalty.errors import ProgrammeChanged, ProgrammeVersionNotFound
from memberops.loyalty.models import ProgrammeVersion
from memberops.loyalty.programme import (
    DEFAULT_PROGRAMME,
    Programme,
    parse_programme,
    programme_document,
    programme_from_dict,
    programme_yaml,
)


@dataclass(frozen=True)
class ActiveProgramme:
    version: int
    programme: Programme


_VERSIONS = cast(Table, ProgrammeVersion.__table__)
_SESSION_KEY = "memberops.loyalty.active_programme"  # session.info: (transaction, {workspace id: programme})
_PARSED: dict[tuple[str, int], Programme] = {}  # versions never change: parse each once per process


def _parsed(row: ProgrammeVersion) -> ActiveProgramme:
    key = (row.workspace_id, row.version)
    programme = _PARSED.get(key)
    if programme is None:
        programme = _PARSED[key] = programme_from_dict(row.definition)
    return ActiveProgramme(row.version, programme)


def _newest(session: Session, workspace_id: str) -> ProgrammeVersion | None:
    return session.scalar(
        select(ProgrammeVersion).where(ProgrammeVersion.workspace_id == workspace_id)
        .order_by(ProgrammeVersion.version.desc()).limit(1)
    )


def active_programme(session: Session, workspace_id: str) -> ActiveProgramme:
    """The programme in force: the newest version, or the default written as version 1 when there is none.

    The default is inserted with ``ON CONFLICT DO NOTHING``, so two first requests racing both end up
    reading the one version 1. The answer is kept for the rest of the transaction (a ledger replay asks for
    every order), so one transaction runs one version throughout; :func:`save_programme` updates it.
    """
    known = _known(session)
    if workspace_id in known:
        return known[workspace_id]
    row = _newest(session, workspace_id)
    if row is None:
        session.execute(
            insert_ignoring_conflicts(session, _VERSIONS, ("workspace_id", "version")),
            [{"workspace_id": workspace_id, "version": 1, "definition": programme_document(DEFAULT_PROGRAMME),
              "created_by": "system:default", "created_at": utcnow()}],
        )
        row = _newest(session, workspace_id)
        assert row is not None
    known[workspace_id] = _parsed(row)
    return known[workspace_id]


def programme_in_force(session: Session, workspace_id: str) -> Programme:
    """The programme in force, read without writing anything: the default when the workspace has no
    version yet. For paths that only need to know whether loyalty cares (the live event path asks on every
    request and must not write a programme for a workspace that never uses loyalty). Kept for the
    transaction like :func:`active_programme`."""
    known = _known(session)
    if workspace_id in known:
        return known[workspace_id].programme
    row = _newest(session, workspace_id)
    if row is None:
        return DEFAULT_PROGRAMME
    known[workspace_id] = _parsed(row)
    return known[workspace_id].programme


def _known(session: Session) -> dict[str, ActiveProgramme]:
    """The active programmes this session's current transaction has read (by workspace id)."""
    transaction = session.get_transaction()
    cached = session.info.get(_SESSION_KEY)
    if cached is None or cached[0] is not transaction:
        cached = session.info[_SESSION_KEY] = (transaction, {})
    known: dict[str, ActiveProgramme] = cached[1]
    return known


def programme_version(session: Session, workspace_id: str, version: int) -> ActiveProgramme:
    row = session.scalar(select(ProgrammeVersion).where(
        ProgrammeVersion.workspace_id == workspace_id, ProgrammeVersion.version == version))
    if row is None:
        raise ProgrammeVersionNotFound(version)
    return _parsed(row)


def save_programme(session: Session, workspace: Workspace, programme: Programme, *, actor: Actor) -> ActiveProgramme:
    """Make ``programme`` the active one as a new version, and audit the change. Saving a programme equal
    to the active one changes nothing and returns the active version."""
    current = active_programme(session, workspace.id)
    if current.programme == programme:
        return current
    version = current.version + 1
    row = ProgrammeVersion(workspace_id=workspace.id, version=version, definition=programme_document(programme),
                           created_by=f"{actor.type}:{actor.id}"[:100])
    session.add(row)
    session.flush()
    record(session, actor, "loyalty.programme.update", workspace_id=workspace.id, target_type="programme",
           target_id=str(version), detail={"previous_version": current.version, "version": version})
    _known(session)[workspace.id] = _parsed(row)
    return _parsed(row)


def update_programme(session: Session, workspace: Workspace, text: str, *, based_on: int | None,
                     actor: Actor) -> ActiveProgramme:
    """Make the programme written in ``text`` (YAML or JSON) the active one, as :func:`save_programme` does.

    ``based_on`` is the version the operator started editing from: if another version became active
    since, :class:`ProgrammeChanged` is raised rather than silently undo that change — unless ``text``
    says exactly what is active (a form sent twice), which changes nothing. :class:`InvalidProgramme`
    names every bad field with its line; nothing is saved then.
    """
    programme = parse_programme(text)
    current = active_programme(session, workspace.id)
    if current.programme == programme:
        return current
    if based_on is not None and based_on != current.version:
        raise ProgrammeChanged(based_on, current.version)
    return save_programme(session, workspace, programme, actor=actor)


@dataclass(frozen=True)
class ProgrammeVersionInfo:
    """One version in the programme's history: when it was made and by whom (an operator's e-mail, or
    ``cli``, ``key:…``, ``system:default``)."""

    version: int
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class ProgrammeOverview:
    active: ActiveProgramme
    text: str  # the active programme as YAML, as an operator edits it
    history: Sequence[ProgrammeVersionInfo]


def programme_overview(session: Session, workspace_id: str, *, history_limit: int = 50) -> ProgrammeOverview:
    """The programme in force, as YAML too, and its versions newest first (at most ``history_limit``)."""
    active = active_programme(session, workspace_id)
    rows = session.scalars(select(ProgrammeVersion).where(ProgrammeVersion.workspace_id == workspace_id)
                           .order_by(ProgrammeVersion.version.desc()).limit(history_limit)).all()
    emails = {f"user:{user.id}": user.email for user in accounts.list_users(session, workspace_id)}
    history = [ProgrammeVersionInfo(row.version, row.created_at, emails.get(row.created_by, row.created_by))
               for row in rows]
    return ProgrammeOverview(active, programme_yaml(active.programme), history)
