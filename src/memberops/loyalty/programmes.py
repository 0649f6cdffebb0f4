"""Programme versions in the state store: the active one, and a new version for every change (audited).

A workspace without any version runs the default programme; its first read writes it as version 1, so
every membership and movement names a version that exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from memberops.accounts import service as accounts
from memberops.accounts.models import Workspace
from memberops.audit.service import Actor, record
from memberops.db.base import utcnow
from memberops.db.dialect import insert_ignoring_conflicts
from memberops.db.engine import Store
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
# Versions never change: each is parsed once per process, keyed by what identifies the row (its creation
# instant too, so two databases holding a version of the same number never share an entry).
_PARSED: dict[tuple[str, int, int, datetime], Programme] = {}
_NEWEST = (select(ProgrammeVersion.id, ProgrammeVersion.version, ProgrammeVersion.created_at)
           .where(ProgrammeVersion.workspace_id == bindparam("workspace_id"))
           .order_by(ProgrammeVersion.version.desc()).limit(1))
_DEFINITION = select(ProgrammeVersion.definition).where(ProgrammeVersion.id == bindparam("id"))


def _parsed(row: ProgrammeVersion) -> ActiveProgramme:
    key = (row.workspace_id, row.version, row.id, _naive(row.created_at))
    programme = _PARSED.get(key)
    if programme is None:
        programme = _PARSED[key] = programme_from_dict(row.definition)
    return ActiveProgramme(row.version, programme)


def _naive(instant: datetime) -> datetime:
    return instant.replace(tzinfo=None)


def _newest(session: Session, workspace_id: str) -> ActiveProgramme | None:
    """The newest version: its number, id and creation instant are read (a small index lookup) and its
    definition only when this process has not parsed it yet — most requests never load the document."""
    head = session.execute(_NEWEST, {"workspace_id": workspace_id}).first()
    if head is None:
        return None
    key = (workspace_id, head.version, head.id, _naive(head.created_at))
    programme = _PARSED.get(key)
    if programme is None:
        programme = _PARSED[key] = programme_from_dict(session.scalar(_DEFINITION, {"id": head.id}))
    return ActiveProgramme(head.version, programme)


def _head_column(column: Any) -> Any:
    return (select(column).where(ProgrammeVersion.workspace_id == bindparam("workspace_id"))
            .order_by(ProgrammeVersion.version.desc()).limit(1).scalar_subquery())


# The newest version's id, number and creation instant as columns another statement can carry (one round
# trip instead of two on the hot path); read back with :func:`active_programme_from`.
HEAD_COLUMNS = (_head_column(ProgrammeVersion.id).label("programme_id"),
                _head_column(ProgrammeVersion.version).label("programme_version"),
                _head_column(ProgrammeVersion.created_at).label("programme_created_at"))


def active_programme_from(session: Session, workspace_id: str, row: Any) -> ActiveProgramme:
    """:func:`active_programme`, given a row carrying :data:`HEAD_COLUMNS` (bound to ``workspace_id``) that
    this transaction has just read."""
    known = _known(session)
    if workspace_id in known:
        return known[workspace_id]
    if row.programme_id is None:
        return active_programme(session, workspace_id)
    key = (workspace_id, row.programme_version, row.programme_id, _naive(row.programme_created_at))
    programme = _PARSED.get(key)
    if programme is None:
        programme = _PARSED[key] = programme_from_dict(session.scalar(_DEFINITION, {"id": row.programme_id}))
    known[workspace_id] = ActiveProgramme(row.programme_version, programme)
    return known[workspace_id]


def active_programme(session: Session, workspace_id: str) -> ActiveProgramme:
    """The programme in force: the newest version, or the default written as version 1 when there is none
(in a reading transaction the default is answered as version 1 and written by the first write).

    The default is inserted with ``ON CONFLICT DO NOTHING``, so two first requests racing both end up
    reading the one version 1. The answer is kept for the rest of the transaction (a ledger replay asks for
    every order), so one transaction runs one version throughout; :func:`save_programme` updates it.
    """
    known = _known(session)
    if workspace_id in known:
        return known[workspace_id]
    active = _newest(session, workspace_id)
    if active is None and Store.is_reading(session):
        return ActiveProgramme(1, DEFAULT_PROGRAMME)  # what the first write will record; a read writes nothing
    if active is None:
        session.execute(
            insert_ignoring_conflicts(session, _VERSIONS, ("workspace_id", "version")),
            [{"workspace_id": workspace_id, "version": 1, "definition": programme_document(DEFAULT_PROGRAMME),
              "created_by": "system:default", "created_at": utcnow()}],
        )
        active = _newest(session, workspace_id)
        assert active is not None
    known[workspace_id] = active
    return active


def programme_in_force(session: Session, workspace_id: str) -> Programme:
    """The programme in force, read without writing anything: the default when the workspace has no
    version yet. For paths that only need to know whether loyalty cares (the live event path asks on every
    request and must not write a programme for a workspace that never uses loyalty). Kept for the
    transaction like :func:`active_programme`."""
    known = _known(session)
    if workspace_id in known:
        return known[workspace_id].programme
    active = _newest(session, workspace_id)
    if active is None:
        return DEFAULT_PROGRAMME
    known[workspace_id] = active
    return active.programme


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
