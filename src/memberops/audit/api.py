from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.api.deps import Caller, SessionDep, require_scope
from memberops.api.errors import problem_responses
from memberops.audit import service

router = APIRouter(tags=["audit"])


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor_type: str
    actor_id: str
    action: str
    target_type: str
    target_id: str
    detail: dict[str, Any]


@router.get("/audit", response_model=list[AuditEntryOut],
            responses=problem_responses(AuthenticationFailed, MissingScope))
def list_audit(
    session: SessionDep, caller: Annotated[Caller, Depends(require_scope("admin"))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntryOut]:
    """The newest audit entries of the caller's workspace, newest first."""
    return [AuditEntryOut.model_validate(e) for e in service.recent(session, caller.workspace.id, limit)]
