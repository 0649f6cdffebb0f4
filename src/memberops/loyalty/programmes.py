"""Programme versions in the state store: the active one, and a new version for every change (audited).

A workspace without any version runs the default programme; its first read writes it as version 1, so
every membership and movement names a version that exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor, record
from memberops.db.base import utcnow
from memberops.db.dialect import insert_ignoring_conflicts
from memberops.db.engine import Store
from memberops.loyalty.errors import ProgrammeVersionNotFound
from memberops.loyalty.models import ProgrammeVersion
from memberops.loyalty.programme import DEFAULT_PROGRAMME, Programme, programme_document, programme_from_dict


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
    """The programme in force: the newest version, or the default written as version 1 when there is none
(in a reading transaction the default is answered as version 1 and written by the first write).

    The default is inserted with ``ON CONFLICT DO NOTHING``, so two first requests racing both end up
    reading the one version 1. The answer is kept for the rest of the transaction (a ledger replay asks for
    every order), so one transaction runs one version throughout; :func:`save_programme` updates it.
    """
    known = _known(session)
    if workspace_id in known:
        return known[workspace_id]
    row = _newest(session, workspace_id)
    if row is None and Store.is_reading(session):
        return ActiveProgramme(1, DEFAULT_PROGRAMME)  # what the first write will record; a read writes nothing
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
