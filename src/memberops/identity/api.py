from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.api.deps import Caller, ContextDep, SessionDep, require_scope
from memberops.api.errors import problem_responses
from memberops.identity import decisions, service
from memberops.identity.errors import MemberNotFound
from memberops.identity.schemas import (
    DecisionOut,
    IdentifierOut,
    IdentityOut,
    MemberIdentities,
    MemberOut,
    MemberPage,
    MemberProfile,
    PairDecisionIn,
    RecordRef,
    SplitIn,
)

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


@router.get("/members/{member_id}", response_model=MemberProfile,
            responses=problem_responses(*AUTH_ERRORS, MemberNotFound))
def get_member(
    member_id: str, session: SessionDep, context: ContextDep,
    caller: Annotated[Caller, Depends(require_scope("read"))],
) -> MemberProfile:
    """A member (an absorbed id leads to its survivor) with its golden record."""
    member = service.get_member(session, caller.workspace.id, member_id)
    golden = service.golden_record(context.warehouse(), caller.workspace.id, member.id)
    return MemberProfile(**MemberOut.model_validate(member).model_dump(), golden=golden)


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
