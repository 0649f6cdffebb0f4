"""Members and their identifiers in the state store: the live path of OneID.

A customer record posted live is resolved at once: a known ``(channel, source_id)`` finds its member,
else a known identifier does, else a new member is created. Batch resolution may later merge members;
ids are never reused, an absorbed member points at its survivor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.db.outbox import emit
from memberops.identity import config
from memberops.identity.config import IdentityConfig
from memberops.identity.errors import InvalidIdentifier, MemberNotFound
from memberops.identity.models import FlaggedIdentifier, Identifier, IdentityEvent, IdentityLink, Member
from memberops.identity.normalise import IDENTIFIER_TYPES, normalise_identifier

if TYPE_CHECKING:
    from memberops.lake.engine import Warehouse


@dataclass(frozen=True)
class Resolution:
    member: Member
    is_new_member: bool
    is_new_record: bool


def _normalised(identifiers: Mapping[str, str | None]) -> dict[str, str]:
    result: dict[str, str] = {}
    for type_, raw in identifiers.items():
        if raw is None or raw == "":
            continue
        if type_ not in IDENTIFIER_TYPES:
            raise InvalidIdentifier(type_)
        value = normalise_identifier(type_, raw)
        if value is None:
            raise InvalidIdentifier(type_)
        result[type_] = value
    return result


def resolve_customer(
    session: Session, workspace: Workspace, *, channel: str, source_id: str,
    identifiers: Mapping[str, str | None], is_enrolled: bool = False,
    attributes: Mapping[str, Any] | None = None,
) -> Resolution:
    """Find or create the member for a channel's customer record, record its identifiers and emit the
    identity record to the lake through the outbox, all in the caller's transaction.

    ``attributes`` are the record's other canonical fields (names, birthday, address, consents …) as
    JSON-friendly values; they travel with the identity record to the lake.

    Idempotent: posting the same ``(channel, source_id)`` again returns the same member and emits nothing.
    """
    known = _normalised(identifiers)
    link = session.scalar(
        select(IdentityLink).where(
            IdentityLink.workspace_id == workspace.id, IdentityLink.channel == channel,
            IdentityLink.source_id == source_id,
        )
    )
    if link is not None:
        return Resolution(get_member(session, workspace.id, link.member_id), False, False)

    member = _member_by_identifiers(session, workspace.id, known, config.current(session, workspace.id)[0])
    is_new_member = member is None
    if member is None:
        member = Member(workspace_id=workspace.id)
        session.add(member)
        session.flush()
    if is_enrolled and not member.is_enrolled:
        member.is_enrolled = True
        member.enrolled_at = utcnow()
    session.add(IdentityLink(workspace_id=workspace.id, channel=channel, source_id=source_id, member_id=member.id))
    existing = {
        (i.type, i.value)
        for i in session.scalars(select(Identifier).where(Identifier.member_id == member.id))
    }
    for type_, value in known.items():
        if (type_, value) not in existing:
            session.add(Identifier(workspace_id=workspace.id, member_id=member.id, type=type_, value=value,
                                   channel=channel))
    emit(session, workspace_id=workspace.id, topic="identity_records",
         payload={**(attributes or {}), "channel": channel, "source_id": source_id, "member_id": member.id, **known})
    session.flush()
    return Resolution(member, is_new_member, True)


def _member_by_identifiers(
    session: Session, workspace_id: str, known: Mapping[str, str], settings: IdentityConfig
) -> Member | None:
    """The member a new record joins at once: by the workspace's strong identifier types, most trusted
    first, never by a blocked value nor by one the last batch run flagged as shared by too many records —
    the same guard rails batch resolution applies, so the live path cannot merge what batch would not."""
    usable = {t: known[t] for t in settings.strong_types if t in known and not settings.is_blocked(known[t])}
    if usable:
        flagged = set(session.execute(
            select(FlaggedIdentifier.type, FlaggedIdentifier.value)
            .where(FlaggedIdentifier.workspace_id == workspace_id,
                   tuple_(FlaggedIdentifier.type, FlaggedIdentifier.value).in_(list(usable.items())))
        ))
        usable = {t: v for t, v in usable.items() if (t, v) not in flagged}
    for type_ in settings.strong_types:
        if type_ not in usable:
            continue
        member = session.scalar(
            select(Member)
            .join(Identifier, Identifier.member_id == Member.id)
            .where(Identifier.workspace_id == workspace_id, Identifier.type == type_,
                   Identifier.value == usable[type_], Member.merged_into_id.is_(None))
            .order_by(Member.created_at)
            .limit(1)
        )
        if member is not None:
            return member
    return None


def get_member(session: Session, workspace_id: str, member_id: str) -> Member:
    """The member ``member_id``, following merges to the surviving member."""
    seen: set[str] = set()
    while True:
        member = session.get(Member, member_id)
        if member is None or member.workspace_id != workspace_id:
            raise MemberNotFound(member_id)
        if member.merged_into_id is None or member.id in seen:
            return member
        seen.add(member.id)
        member_id = member.merged_into_id


def identifiers_of(session: Session, member_id: str) -> Sequence[Identifier]:
    return session.scalars(select(Identifier).where(Identifier.member_id == member_id).order_by(Identifier.id)).all()


def links_of(session: Session, member_id: str) -> Sequence[IdentityLink]:
    return session.scalars(
        select(IdentityLink).where(IdentityLink.member_id == member_id).order_by(IdentityLink.id)
    ).all()


def identity_events_of(session: Session, workspace_id: str, member_id: str, *, limit: int = 50) -> Sequence[IdentityEvent]:
    """Merges, unmerges and splits that involved ``member_id`` (as survivor or as the other member), newest first."""
    return session.scalars(
        select(IdentityEvent)
        .where(IdentityEvent.workspace_id == workspace_id,
               (IdentityEvent.member_id == member_id) | (IdentityEvent.other_member_id == member_id))
        .order_by(IdentityEvent.at.desc(), IdentityEvent.id.desc())
        .limit(limit)
    ).all()


def survivors(session: Session, workspace_id: str, member_ids: Iterable[str]) -> dict[str, str]:
    """The surviving member of each of ``member_ids`` (itself when never merged); unknown ids are left out.

    Set-based: one query per link of the longest merge chain, not one per member.
    """
    asked = list(member_ids)
    survivor: dict[str, str | None] = {}
    pending = set(asked)
    for _ in range(16):  # merges chain rarely; the bound guards against a cycle
        if not pending:
            break
        rows = session.execute(select(Member.id, Member.merged_into_id).where(
            Member.workspace_id == workspace_id, Member.id.in_(sorted(pending)))).all()
        survivor.update({member_id: into for member_id, into in rows})
        pending = {into for _, into in rows if into is not None and into not in survivor}

    def follow(member_id: str) -> str:
        seen: set[str] = set()
        while (into := survivor.get(member_id)) is not None and member_id not in seen:
            seen.add(member_id)
            member_id = into
        return member_id

    return {member_id: follow(member_id) for member_id in asked if member_id in survivor}


def list_members(session: Session, workspace_id: str, *, limit: int, after: str | None = None) -> Sequence[Member]:
    """Members in id order (ids sort by creation), ``limit`` at a time after the cursor ``after``."""
    query = select(Member).where(Member.workspace_id == workspace_id, Member.merged_into_id.is_(None))
    if after:
        query = query.where(Member.id > after)
    return session.scalars(query.order_by(Member.id).limit(limit)).all()


def count_members(session: Session, workspace_id: str) -> int:
    return int(
        session.scalar(
            select(func.count(Member.id)).where(Member.workspace_id == workspace_id, Member.merged_into_id.is_(None))
        )
        or 0
    )


def count_identity_links(session: Session, workspace_id: str) -> int:
    return int(
        session.scalar(select(func.count(IdentityLink.id)).where(IdentityLink.workspace_id == workspace_id)) or 0
    )


def export_identity_map(session: Session, workspace_id: str, out: Path) -> int:
    """Write ``channel,source_id,member_id`` for every known record (the serving identity map) to ``out``."""
    import csv

    query = (select(IdentityLink.channel, IdentityLink.source_id, IdentityLink.member_id)
             .where(IdentityLink.workspace_id == workspace_id)
             .order_by(IdentityLink.channel, IdentityLink.source_id))
    count = 0
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["channel", "source_id", "member_id"])
        for row in session.execute(query).yield_per(10_000):
            writer.writerow(row)
            count += 1
    return count


def golden_record(warehouse: Warehouse, workspace_id: str, member_id: str) -> dict[str, Any] | None:
    """The member's golden record as of the last resolution run (``None`` before the first run)."""
    golden = warehouse.table("golden_records")
    rows = warehouse.to_pyarrow(
        golden.filter((golden.workspace_id == workspace_id) & (golden.member_id == member_id))
        .drop("workspace_id", "batch_id", "ingested_at", "member_id").limit(1)
    ).to_pylist()
    return rows[0] if rows else None
