from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.api.deps import Caller, ContextDep, SessionDep, require_scope
from memberops.api.errors import problem_responses
from memberops.identity import config as identity_config
from memberops.identity import decisions, search, service
from memberops.identity.config import IdentityConfig
from memberops.identity.errors import InvalidIdentityConfig, MemberNotFound
from memberops.identity.schemas import (
    DecisionOut,
    EventOut,
    IdentifierOut,
    IdentityChangeOut,
    IdentityConfigOut,
    IdentityOut,
    MemberIdentities,
    MemberMatchOut,
    MemberOut,
    MemberPage,
    MemberProfile,
    MemberSearchResult,
    OrderOut,
    PairDecisionIn,
    RecordRef,
    RefundOut,
    SplitIn,
    TimelineEntryOut,
)
from memberops.identity.search import MAX_QUERY_LENGTH, InvalidSearch
from memberops.insight.profile import member_profile
from memberops.settings_versions import SettingsConflict

router = APIRouter(tags=["members"])
AUTH_ERRORS = (AuthenticationFailed, MissingScope)


@router.get("/members", response_model=MemberPage, responses=problem_responses(*AUTH_ERRORS))
def list_members(
    session: SessionDep, caller: Annotated[Caller, Depends(require_scope("read"))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None,
) -> MemberPage:
    members = service.list_members(session, caller.workspace.id, limit=limit, after=cursor)
    return MemberPage(
        items=[MemberOut.model_validate(m) for m in members],
        next_cursor=members[-1].id if len(members) == limit else None,
    )


@router.get("/members/search", response_model=MemberSearchResult,
            responses=problem_responses(*AUTH_ERRORS, InvalidSearch))
def search_members(
    session: SessionDep, context: ContextDep, caller: Annotated[Caller, Depends(require_scope("read"))],
    q: Annotated[str, Query(max_length=MAX_QUERY_LENGTH, description=(
        "a phone (read in the workspace's region, CN by default), an e-mail, a member card number, a member "
        "id, or part of a name"))],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> MemberSearchResult:
    """Members matching ``q``: exact identifier matches first, then names. The query never reaches a log."""
    matches = search.search_members(session, context.warehouse(), caller.workspace.id, q, limit=limit)
    return MemberSearchResult(items=[MemberMatchOut.model_validate(m) for m in matches])


@router.get("/members/{member_id}", response_model=MemberProfile,
            responses=problem_responses(*AUTH_ERRORS, MemberNotFound))
def get_member(
    member_id: str, session: SessionDep, context: ContextDep, response: Response,
    caller: Annotated[Caller, Depends(require_scope("read"))],
) -> MemberProfile:
    """The 360° profile: golden record, identities, traits, tags, RFM, lifecycle, CLV, recent orders,
    refunds and events, identity and trait changes, and a timeline of them all.

    An id a merge absorbed answers with the survivor's profile: ``merged_from`` names the id asked for and
    ``Content-Location`` the survivor's own URL.
    """
    found = member_profile(session, context.warehouse(), caller.workspace.id, member_id)
    if found.merged_from is not None:
        response.headers["Content-Location"] = f"/api/v1/members/{found.member.id}"
    return MemberProfile(
        **MemberOut.model_validate(found.member).model_dump(), golden=found.golden, merged_from=found.merged_from,
        identities=[IdentityOut(channel=r.channel, source_id=r.source_id) for r in found.identities],
        identifier_types=[IdentifierOut(type=k.type, channel=k.channel) for k in found.identifier_types],
        traits=found.traits, tags=found.tags, rfm=found.rfm, lifecycle=found.lifecycle, clv=found.clv,
        loyalty=found.loyalty,
        recent_orders=[OrderOut.model_validate(o) for o in found.recent_orders],
        recent_refunds=[RefundOut.model_validate(r) for r in found.recent_refunds],
        recent_events=[EventOut.model_validate(e) for e in found.recent_events],
        identity_changes=[IdentityChangeOut.model_validate(c) for c in found.identity_changes],
        timeline=[TimelineEntryOut.model_validate(t) for t in found.timeline()],
    )


@router.get("/members/{member_id}/identities", response_model=MemberIdentities,
            responses=problem_responses(*AUTH_ERRORS, MemberNotFound))
def get_member_identities(
    member_id: str, session: SessionDep, caller: Annotated[Caller, Depends(require_scope("read"))]
) -> MemberIdentities:
    member = service.get_member(session, caller.workspace.id, member_id)
    return MemberIdentities(
        member_id=member.id,
        identities=[IdentityOut(channel=link.channel, source_id=link.source_id)
                    for link in service.links_of(session, member.id)],
        identifier_types=[IdentifierOut(type=i.type, channel=i.channel)
                          for i in service.identifiers_of(session, member.id)],
    )


def _decide(session: SessionDep, caller: Caller, kind: str, a: RecordRef, b: RecordRef | None, reason: str) -> DecisionOut:
    decision = decisions.decide(
        session, caller.workspace, kind=kind, record_a=(a.channel, a.source_id),
        record_b=(b.channel, b.source_id) if b else None, reason=reason, actor=caller.actor,
    )
    return DecisionOut.model_validate(decision)


DECISION_ERRORS = problem_responses(*AUTH_ERRORS, decisions.UnknownRecord, decisions.InvalidDecision)


@router.post("/identity/merge", response_model=DecisionOut, status_code=201, tags=["identity"],
             responses=DECISION_ERRORS)
def merge_records(body: PairDecisionIn, session: SessionDep,
                  caller: Annotated[Caller, Depends(require_scope("admin"))]) -> DecisionOut:
    """Two records are one person, whatever their identifiers say (kept on every resolution run)."""
    return _decide(session, caller, "merge", body.a, body.b, body.reason)


@router.post("/identity/split", response_model=DecisionOut, status_code=201, tags=["identity"],
             responses=DECISION_ERRORS)
def split_record(body: SplitIn, session: SessionDep,
                 caller: Annotated[Caller, Depends(require_scope("admin"))]) -> DecisionOut:
    """A record stands alone as its own member (kept on every resolution run)."""
    return _decide(session, caller, "split", body.record, None, body.reason)


@router.post("/identity/pin-apart", response_model=DecisionOut, status_code=201, tags=["identity"],
             responses=DECISION_ERRORS)
def pin_apart(body: PairDecisionIn, session: SessionDep,
              caller: Annotated[Caller, Depends(require_scope("admin"))]) -> DecisionOut:
    """Two records are never one person (kept on every resolution run)."""
    return _decide(session, caller, "pin_apart", body.a, body.b, body.reason)


@router.get("/identity/config", response_model=IdentityConfigOut, tags=["identity"],
            responses=problem_responses(*AUTH_ERRORS))
def get_identity_config(session: SessionDep,
                        caller: Annotated[Caller, Depends(require_scope("read"))]) -> IdentityConfigOut:
    """Which identifier types join records, the guard rails and the match thresholds in force."""
    config, version = identity_config.current(session, caller.workspace.id)
    return IdentityConfigOut(version=version, config=config)


@router.put("/identity/config", response_model=IdentityConfigOut, tags=["identity"],
            responses=problem_responses(*AUTH_ERRORS, InvalidIdentityConfig, SettingsConflict))
def put_identity_config(
    body: IdentityConfig, session: SessionDep, caller: Annotated[Caller, Depends(require_scope("admin"))],
    based_on: Annotated[int | None, Query(ge=0, description="the version these settings were edited from: "
                                          "refused (409 settings_conflict) if another is in force since")] = None,
) -> IdentityConfigOut:
    """Replace the settings (fields left out take their defaults) as a new version; the next resolution run
    and every live customer record from now on follow it."""
    config, version = identity_config.update(session, caller.workspace.id, body.model_dump(mode="json"),
                                             actor=caller.actor, based_on=based_on)
    return IdentityConfigOut(version=version, config=config)
