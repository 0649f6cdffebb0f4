from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.analytics.overview import workspace_counts
from memberops.api.deps import Caller, ContextDep, SessionDep, require_scope
from memberops.api.errors import problem_responses

router = APIRouter(tags=["analytics"])


class OverviewOut(BaseModel):
    members: int
    enrolled_members: int
    identity_records: int
    orders: int
    events: int
    outbox_backlog: int


@router.get("/overview", response_model=OverviewOut, responses=problem_responses(AuthenticationFailed, MissingScope))
def overview(
    context: ContextDep, session: SessionDep, caller: Annotated[Caller, Depends(require_scope("read"))]
) -> OverviewOut:
    """Headline counts: members (resolved persons), identity records, orders and events."""
    return OverviewOut(**asdict(workspace_counts(context, session, caller.workspace.id)))
