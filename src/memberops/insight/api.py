from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.api.deps import Caller, SessionDep, require_scope
from memberops.api.errors import problem_responses
from memberops.insight import config_store, tagging
from memberops.insight.config import InsightConfig
from memberops.insight.errors import InsightNotComputed, InvalidInsightConfig, InvalidTag, TagNotFound
from memberops.insight.models import TagVersion
from memberops.insight.overview import insight_overview
from memberops.insight.schemas import InsightConfigOut, InsightSummaryOut, TagIn, TagList, TagOut
from memberops.insight.tags import TagDefinition
from memberops.settings_versions import SettingsConflict

router = APIRouter(tags=["tags"])
AUTH_ERRORS = (AuthenticationFailed, MissingScope)
TagName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="lower case, digits and _")]


def _out(row: TagVersion) -> TagOut:
    return TagOut(name=row.name, version=row.version, description=row.description, rule=row.rule,
                  updated_by=row.actor, updated_at=row.created_at)


@router.get("/tags", response_model=TagList, responses=problem_responses(*AUTH_ERRORS))
def list_tags(session: SessionDep, caller: Annotated[Caller, Depends(require_scope("read"))]) -> TagList:
    """The workspace's current tags."""
    return TagList(items=[_out(row) for _, row in tagging.list_tags(session, caller.workspace.id)])


@router.get("/tags/{name}", response_model=TagOut, responses=problem_responses(*AUTH_ERRORS, TagNotFound))
def get_tag(name: TagName, session: SessionDep, caller: Annotated[Caller, Depends(require_scope("read"))]) -> TagOut:
    _, row = tagging.get_tag(session, caller.workspace.id, name)
    return _out(row)


@router.put("/tags/{name}", response_model=TagOut,
            responses={201: {"description": "created"}, **problem_responses(*AUTH_ERRORS, InvalidTag)})
def put_tag(name: TagName, body: TagIn, session: SessionDep, response: Response,
            caller: Annotated[Caller, Depends(require_scope("admin"))]) -> TagOut:
    """Create or change a tag (a new version; an unchanged definition keeps its version). It applies at the
    next insight computation."""
    definition = TagDefinition(name=name, description=body.description, rule=body.rule)
    row, changed = tagging.put_tag(session, caller.workspace.id, definition, actor=caller.actor)
    if changed and row.version == 1:
        response.status_code = 201
    return _out(row)


@router.delete("/tags/{name}", status_code=204, responses=problem_responses(*AUTH_ERRORS, TagNotFound))
def delete_tag(name: TagName, session: SessionDep, caller: Annotated[Caller, Depends(require_scope("admin"))]) -> None:
    """Retire a tag; its versions are kept."""
    tagging.delete_tag(session, caller.workspace.id, name, actor=caller.actor)


@router.get("/insight/config", response_model=InsightConfigOut, tags=["insight"],
            responses=problem_responses(*AUTH_ERRORS))
def get_insight_config(session: SessionDep,
                       caller: Annotated[Caller, Depends(require_scope("read"))]) -> InsightConfigOut:
    """The RFM window and grid, lifecycle rules, CLV and KOC settings in force for the next insight run."""
    config, version = config_store.current_version(session, caller.workspace.id)
    return InsightConfigOut(version=version, config=config)


@router.put("/insight/config", response_model=InsightConfigOut, tags=["insight"],
            responses=problem_responses(*AUTH_ERRORS, InvalidInsightConfig, SettingsConflict))
def put_insight_config(
    body: InsightConfig, session: SessionDep, caller: Annotated[Caller, Depends(require_scope("admin"))],
    based_on: Annotated[int | None, Query(ge=0, description="the version these settings were edited from: "
                                          "refused (409 settings_conflict) if another is in force since")] = None,
) -> InsightConfigOut:
    """Replace the settings (fields left out take their defaults) as a new, audited version; the next
    ``insight compute`` and the nightly job follow it."""
    config, version = config_store.update(session, caller.workspace.id, body.model_dump(mode="json"),
                                          actor=caller.actor, based_on=based_on)
    return InsightConfigOut(version=version, config=config)


@router.get("/insight/summary", response_model=InsightSummaryOut, tags=["insight"],
            responses=problem_responses(*AUTH_ERRORS, InsightNotComputed))
def get_insight_summary(session: SessionDep,
                        caller: Annotated[Caller, Depends(require_scope("read"))]) -> InsightSummaryOut:
    """The last finished insight computation: members per lifecycle stage, AIPL stage, RFM segment and tag
    (empty ones included), its as-of moment, the CLV fit and the changes since the run before."""
    overview = insight_overview(session, caller.workspace.id, recent=0)
    if overview is None:
        raise InsightNotComputed()
    return InsightSummaryOut.model_validate(overview)
