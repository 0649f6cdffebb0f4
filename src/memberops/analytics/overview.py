"""The headline counts of a workspace: members from the state store, facts from the lake."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from memberops.identity.service import count_identity_links, count_members
from memberops.lake.engine import Warehouse
from memberops.lake.export import outbox_backlog
from memberops.runtime import Context


@dataclass(frozen=True)
class WorkspaceCounts:
    members: int
    enrolled_members: int
    identity_records: int
    orders: int
    events: int
    outbox_backlog: int


def _lake_count(warehouse: Warehouse, table: str, workspace_id: str, distinct: tuple[str, ...] = ()) -> int:
    facts = warehouse.table(table).filter(lambda t: t.workspace_id == workspace_id)
    if distinct:
        facts = facts.select(*distinct).distinct()
    return int(warehouse.execute(facts.count()))


def workspace_counts(context: Context, session: Session, workspace_id: str) -> WorkspaceCounts:
    """Members (resolved persons), identity records, orders and events of ``workspace_id``.

    Identity records count every ``(channel, source_id)`` known live or imported in bulk, whichever is more
    complete; orders and events come from the lake, where every fact ends up.
    """
    from sqlalchemy import func, select

    from memberops.identity.models import Member

    warehouse = context.warehouse()
    enrolled = session.scalar(
        select(func.count(Member.id)).where(
            Member.workspace_id == workspace_id, Member.is_enrolled.is_(True), Member.merged_into_id.is_(None)
        )
    )
    return WorkspaceCounts(
        members=count_members(session, workspace_id),
        enrolled_members=int(enrolled or 0),
        identity_records=max(
            count_identity_links(session, workspace_id),
            _lake_count(warehouse, "identity_records", workspace_id, ("channel", "source_id")),
        ),
        orders=_lake_count(warehouse, "orders", workspace_id, ("channel", "order_id")),
        events=_lake_count(warehouse, "events", workspace_id, ("channel", "event_id")),
        outbox_backlog=outbox_backlog(context.store),
    )
