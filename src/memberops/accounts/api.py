from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from memberops.accounts import service
from memberops.accounts.errors import ApiKeyNotFound, AuthenticationFailed, InvalidScope, MissingScope
from memberops.accounts.schemas import ApiKeyIn, ApiKeyIssued, ApiKeyOut, WhoAmI
from memberops.api.deps import Caller, SessionDep, require_scope
from memberops.api.errors import problem_responses

router = APIRouter(tags=["access"])
AUTH_ERRORS = (AuthenticationFailed, MissingScope)


@router.get("/me", response_model=WhoAmI, responses=problem_responses(AuthenticationFailed))
def whoami(caller: Annotated[Caller, Depends(require_scope(None))]) -> WhoAmI:
    """The calling key's workspace and scopes (any valid key may ask)."""
    return WhoAmI(workspace=caller.workspace.slug, workspace_name=caller.workspace.name,
                  key_name=caller.api_key.name, scopes=list(caller.api_key.scopes))


@router.get("/keys", response_model=list[ApiKeyOut], responses=problem_responses(*AUTH_ERRORS))
def list_keys(session: SessionDep, caller: Annotated[Caller, Depends(require_scope("admin"))]) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(k) for k in service.list_api_keys(session, caller.workspace.id)]


@router.post("/keys", response_model=ApiKeyIssued, status_code=201,
             responses=problem_responses(*AUTH_ERRORS, InvalidScope))
def create_key(
    body: ApiKeyIn, session: SessionDep, caller: Annotated[Caller, Depends(require_scope("admin"))]
) -> ApiKeyIssued:
    issued = service.create_api_key(session, caller.workspace, name=body.name, scopes=body.scopes,
                                    actor=caller.actor)
    return ApiKeyIssued(**ApiKeyOut.model_validate(issued.api_key).model_dump(), key=issued.key)


@router.delete("/keys/{key_id}", response_model=ApiKeyOut,
               responses=problem_responses(*AUTH_ERRORS, ApiKeyNotFound))
def revoke_key(
    key_id: str, session: SessionDep, caller: Annotated[Caller, Depends(require_scope("admin"))]
) -> ApiKeyOut:
    return ApiKeyOut.model_validate(service.revoke_api_key(session, caller.workspace.id, key_id, caller.actor))
