"""The dashboard: a workspace's headline counts, for every role."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from memberops.analytics.overview import workspace_counts
from memberops.api.deps import ContextDep
from memberops.lake.engine import WarehouseError
from memberops.web.rendering import ConsoleRoute, render
from memberops.web.session import ConsoleSession, Operator, require_role

log = logging.getLogger(__name__)

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@dataclass(frozen=True)
class CountCard:
    """One card on the dashboard; ``key`` names its ``data-testid`` (``count-<key>``)."""

    key: str
    label: str
    value: int
    hint: str


@router.get("/")
def dashboard(
    request: Request, context: ContextDep, session: ConsoleSession,
    operator: Annotated[Operator, Depends(require_role())],
) -> Response:
    """Members, identity records, orders, events and the outbox backlog of the operator's workspace."""
    cards: list[CountCard] = []
    lake_error = False
    try:
        counts = workspace_counts(context, session, operator.workspace.id)
    except WarehouseError:
        # The state store still answers; say the lake could not be read rather than fail the whole page.
        log.exception("dashboard: the warehouse query failed")
        lake_error = True
    else:
        cards = [
            CountCard("members", "Members", counts.members, "resolved persons, prospects included"),
            CountCard("enrolled-members", "Enrolled members", counts.enrolled_members, "joined a programme"),
            CountCard("identity-records", "Identity records", counts.identity_records,
                      "customer records across channels"),
            CountCard("orders", "Orders", counts.orders, "in the lake"),
            CountCard("events", "Events", counts.events, "in the lake"),
            CountCard("outbox-backlog", "Outbox backlog", counts.outbox_backlog, "facts waiting for the lake"),
        ]
    return render(request, "dashboard.html", operator=operator, active="dashboard", cards=cards,
                  lake_error=lake_error)
